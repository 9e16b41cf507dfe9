"""The per-recipient record of an issue's sending, as staff read it: pages and a CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from . import pg_csv
from .directory import address_contains
from .extensions import db
from .models import Delivery, DeliveryStatus, Subscriber
from .spreadsheet import formula_safe

PAGE = 100


@dataclass(frozen=True)
class LogRow:
    id: int
    email: str
    status: DeliveryStatus
    attempts: int
    smtp_reply: str
    updated_at: datetime
    sent_at: datetime | None


CSV_CHUNK = 5000  # rows read and written per piece of the streamed CSV
CSV_COLUMNS = ["email", "status", "attempts", "smtp_reply", "updated_at", "sent_at"]


def _query(issue_id: int, status: DeliveryStatus | None, search: str):
    query = (
        select(
            Delivery.id,
            Subscriber.email,
            Delivery.status,
            Delivery.attempts,
            Delivery.smtp_reply,
            Delivery.updated_at,
            Delivery.sent_at,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue_id)
        .order_by(Delivery.id)
    )
    if status is not None:
        query = query.where(Delivery.status == status)
    if search.strip():
        query = query.where(address_contains(search))
    return query


def page(
    issue_id: int,
    *,
    status: DeliveryStatus | None = None,
    search: str = "",
    after_id: int = 0,
    limit: int = PAGE,
) -> tuple[list[LogRow], int | None]:
    """One page of the log in row order, and the id to continue after (None at the end)."""
    query = _query(issue_id, status, search).where(Delivery.id > after_id).limit(limit + 1)
    rows = [LogRow(*row) for row in db.session.execute(query)]
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


def csv_lines(issue_id: int, *, status: DeliveryStatus | None = None) -> Iterator[str]:
    """The whole log as CSV, streamed a chunk of rows at a time (one piece per row made a
    million pieces for a million-reader issue); cells made safe for spreadsheets."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL).writerow(CSV_COLUMNS)
    yield "\ufeff" + buffer.getvalue()
    # Two ways to the same bytes, as for the readers' export (directory.csv_lines): the
    # database writes the lines on PostgreSQL, Python on SQLite.
    if db.session.get_bind().dialect.name == "postgresql":
        yield from _csv_chunks_in_sql(issue_id, status)
    else:
        yield from _csv_chunks_in_python(issue_id, status)


def _csv_chunks_in_sql(issue_id: int, status: DeliveryStatus | None) -> Iterator[str]:
    line = pg_csv.line(
        pg_csv.text_cell(Subscriber.email),
        pg_csv.plain_cell(Delivery.status),
        pg_csv.plain_cell(Delivery.attempts),
        pg_csv.text_cell(Delivery.smtp_reply),
        pg_csv.time_cell(Delivery.updated_at),
        pg_csv.time_cell(Delivery.sent_at),
    )
    query = _query(issue_id, status, "").with_only_columns(line, maintain_column_froms=True)
    yield from pg_csv.copy_lines(query, rows=CSV_CHUNK)


def _csv_chunks_in_python(issue_id: int, status: DeliveryStatus | None) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    query = _query(issue_id, status, "").execution_options(yield_per=CSV_CHUNK)
    for rows in db.session.execute(query).partitions():
        writer.writerows(
            [formula_safe(row.email), row.status.value, row.attempts,
             formula_safe(row.smtp_reply), row.updated_at.isoformat(),
             row.sent_at.isoformat() if row.sent_at else ""]
            for row in rows
        )  # fmt: skip
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
