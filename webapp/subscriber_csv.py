"""Readers in and out as CSV: staff imports (`email,name,sections`) and exports.

An import never brings back a reader who left or was erased: the reader's own choice wins
over any list. It reads and checks the whole file before writing anything, then works in chunks
(existing addresses looked up a chunk at a time, new readers inserted a chunk at a time),
so 100,000 rows go in one transaction without one query per row. Like the other domain
modules it flushes and the caller commits, then sends the confirmation emails.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from sqlalchemy import bindparam, insert, or_, select, update

from .errors import BulletinError
from .extensions import db
from .mailer import clean_display_name
from .models import (
    ConsentMethod,
    EventKind,
    EventSource,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Suppression,
    Topic,
    subscriber_topics,
    utcnow,
)
from .spreadsheet import formula_safe, unformula
from .subscriptions import (
    CONFIRMATION_INTERVAL,
    LEFT,
    SubscriptionError,
    hash_normalized,
    insert_ignoring_conflicts,
    normalize_email,
)

COLUMNS = ("email", "name", "sections")
TOPIC_SEPARATORS = re.compile(r"[;|、]")
# Addresses per IN (...) lookup and rows per INSERT: well under SQLite's 32,766 parameters.
CHUNK = 2000


class CsvImportError(BulletinError):
    """A file that cannot be read at all (not UTF-8, empty, no email column: nothing is
    saved), or one row we refuse (reported by its line; the other rows are imported)."""


@dataclass
class CsvImportReport:
    created: int = 0
    updated: int = 0  # readers already here whose record the import changed
    unchanged: int = 0  # readers already here, left as they were
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, merged into line)
    skipped_suppressed: list[int] = field(default_factory=list)  # lines
    skipped_unsubscribed: list[int] = field(default_factory=list)  # lines
    errors: list[tuple[int, BulletinError]] = field(default_factory=list)  # (line, why)
    # Pending readers to email a confirmation, after the commit (consented=False only).
    confirmation_ids: list[int] = field(default_factory=list)


@dataclass
class _Row:
    line: int
    email: str
    name: str
    topic_ids: set[int]


def import_subscribers(data: bytes, *, consented: bool, source: str) -> CsvImportReport:
    """Import readers from CSV with the header `email,name,sections`.

    `sections` names topics by name or slug, separated by `;`, `|` or `、`; empty means every
    active section. Rows that cannot be used are reported by line and skipped; the rest are
    imported. New readers become active (`consented=True`: staff vouch for their consent,
    recorded as imported-consented with `source` as the evidence) or pending with their ids
    in `confirmation_ids`. Readers already here keep their sections and status, except that
    a pending one becomes active when `consented`; departed and suppressed addresses are
    skipped. Raises CsvImportError when the file cannot be read at all.
    """
    report = CsvImportReport()
    db.session.flush()  # our own statements below bypass the ORM's unit of work
    rows = _parse(_decode(data), report)
    suppressed = _suppressed_hashes(rows)
    existing = _existing(rows)
    fresh: list[_Row] = []
    known: list[tuple[_Row, int, SubscriberStatus, str]] = []
    for row in rows.values():
        if hash_normalized(row.email) in suppressed:
            report.skipped_suppressed.append(row.line)
        elif row.email not in existing:
            fresh.append(row)
        elif existing[row.email][1] in LEFT:
            report.skipped_unsubscribed.append(row.line)
        else:
            known.append((row, *existing[row.email]))
    _update_existing(known, report, consented=consented, source=source)
    _insert_new(fresh, report, consented=consented, source=source)
    report.skipped_suppressed.sort()
    report.skipped_unsubscribed.sort()
    report.errors.sort(key=lambda error: error[0])
    db.session.flush()
    return report


def _decode(data: bytes) -> str:
    if not data.strip():
        raise CsvImportError("csv-empty")
    if b"\x00" in data:
        raise CsvImportError("csv-binary")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CsvImportError("csv-not-utf8", line=line) from None


def _parse(text: str, report: CsvImportReport) -> dict[str, _Row]:
    """Rows by address, duplicates merged; invalid rows go to `report.errors`."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip().lower() for cell in next(reader, [])]
    # Spreadsheets sometimes add empty columns at the end; those are ignored.
    unknown = [name for name in header if name and name not in COLUMNS]
    if "email" not in header or unknown:
        found = ",".join(header)
        raise CsvImportError("csv-header", expected=",".join(COLUMNS), found=found)
    topics = _topic_lookup()
    rows: dict[str, _Row] = {}
    line = reader.line_num + 1
    for cells in reader:
        start, line = line, reader.line_num + 1  # a quoted cell may span several lines
        if not any(cell.strip() for cell in cells):
            continue
        try:
            row = _row(start, header, cells, topics)
        except (CsvImportError, SubscriptionError) as exc:
            report.errors.append((start, exc))
            continue
        first = rows.get(row.email)
        if first is None:
            rows[row.email] = row
        else:
            first.name = row.name or first.name
            first.topic_ids |= row.topic_ids
            report.duplicates.append((row.line, first.line))
    return rows


def _topic_lookup() -> dict[str, Topic | None]:
    """Topic by lower-cased name and slug; None for a section that is no longer offered."""
    lookup: dict[str, Topic | None] = {}
    for topic in db.session.scalars(select(Topic).order_by(Topic.position, Topic.id)):
        for key in (topic.name, topic.slug):
            lookup[key.strip().lower()] = topic if topic.active else None
    return lookup


def _row(line: int, header: list[str], cells: list[str], topics: dict) -> _Row:
    if len(cells) < len(header):
        raise CsvImportError("csv-column-missing", column=header[len(cells)])
    if len(cells) > len(header):
        raise CsvImportError("csv-columns-extra", count=len(cells), header=len(header))
    values = {name: unformula(cell).strip() for name, cell in zip(header, cells, strict=True)}
    if not values["email"]:
        raise CsvImportError("csv-email-missing")
    email = normalize_email(values["email"])
    topic_ids = set()
    names = [name.strip() for name in TOPIC_SEPARATORS.split(values.get("sections", ""))]
    for wanted in filter(None, names):
        key = wanted.lower()
        if key not in topics:
            raise CsvImportError("csv-topic-unknown", name=wanted)
        if topics[key] is None:
            raise CsvImportError("csv-topic-closed", name=wanted)
        topic_ids.add(topics[key].id)
    if not topic_ids:
        topic_ids = {t.id for t in topics.values() if t is not None}
    return _Row(line, email, clean_display_name(values.get("name", "")), topic_ids)


def _chunks(items: Iterable, size: int = CHUNK) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _suppressed_hashes(rows: dict[str, _Row]) -> set[str]:
    hashes = [hash_normalized(address) for address in rows]
    found: set[str] = set()
    for chunk in _chunks(hashes):
        found.update(
            db.session.scalars(
                select(Suppression.email_hash).where(Suppression.email_hash.in_(chunk))
            )
        )
    return found


def _existing(rows: dict[str, _Row]) -> dict[str, tuple[int, SubscriberStatus, str]]:
    """(id, status, name) of the readers already here, by address."""
    found = {}
    for chunk in _chunks(rows):
        query = select(Subscriber.email, Subscriber.id, Subscriber.status, Subscriber.name).where(
            Subscriber.email.in_(chunk)
        )
        for email, *values in db.session.execute(query):
            found[email] = tuple(values)
    return found


def _update_existing(
    known: list[tuple[_Row, int, SubscriberStatus, str]],
    report: CsvImportReport,
    *,
    consented: bool,
    source: str,
) -> None:
    """Readers already here: fill in a missing name; make a pending one active if `consented`.

    Their sections are not touched: they chose them (and may have left some on purpose).
    """
    now = utcnow()
    names, activate, pending, events = [], [], [], []
    for row, subscriber_id, status, name in known:
        changed = []
        if not name and row.name:
            names.append({"b_id": subscriber_id, "b_name": row.name})
            changed.append("name")
        if status == SubscriberStatus.PENDING:
            if consented:
                activate.append(subscriber_id)
                changed.append("status")
            else:
                pending.append(subscriber_id)
        if changed:
            report.updated += 1
            events.append(_event(subscriber_id, now, source, updated=changed))
        else:
            report.unchanged += 1
    table = Subscriber.__table__
    if names:
        db.session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.name == "")
            .values(name=bindparam("b_name"), updated_at=now),
            names,
        )
    for chunk in _chunks(activate):
        db.session.execute(
            update(table)
            .where(table.c.id.in_(chunk), table.c.status == SubscriberStatus.PENDING)
            .values(
                status=SubscriberStatus.ACTIVE,
                updated_at=now,
                consented_at=now,
                consent_ip=None,
                consent_user_agent=None,
                consent_source=source[:200],
                consent_method=ConsentMethod.IMPORTED_CONSENTED,
            )
        )
    for chunk in _chunks(pending):
        # The same once-a-day rule as the web form: a re-import does not mail them again.
        claimed = db.session.scalars(
            update(table)
            .where(
                table.c.id.in_(chunk),
                table.c.status == SubscriberStatus.PENDING,
                or_(
                    table.c.confirmation_sent_at.is_(None),
                    table.c.confirmation_sent_at <= now - CONFIRMATION_INTERVAL,
                ),
            )
            .values(confirmation_sent_at=now, updated_at=now)
            .returning(table.c.id)
        )
        report.confirmation_ids.extend(claimed)
    _insert_events(events)
    # The statements above bypass the ORM: readers the session holds must be read again.
    for held in list(db.session.identity_map.values()):
        if isinstance(held, Subscriber):
            db.session.expire(held)


def _insert_new(
    fresh: list[_Row], report: CsvImportReport, *, consented: bool, source: str
) -> None:
    now = utcnow()
    status = SubscriberStatus.ACTIVE if consented else SubscriberStatus.PENDING
    for chunk in _chunks(fresh):
        values = [
            {
                "email": row.email,
                "name": row.name,
                "status": status,
                "locale": "zh",
                "created_at": now,
                "updated_at": now,
                # Pending readers' consent is their confirmation click, recorded by confirm().
                "consented_at": now if consented else None,
                "consent_source": source[:200],
                "consent_method": ConsentMethod.IMPORTED_CONSENTED if consented else None,
                "confirmation_sent_at": None if consented else now,
            }
            for row in chunk
        ]
        # An address that signed up on the web while the import ran keeps its record: the
        # insert skips it, and it has another created_at than the rows stamped with `now`.
        # (A plain executemany, then one SELECT: INSERT ... RETURNING over thousands of rows
        # is several times slower with psycopg.)
        table = Subscriber.__table__
        db.session.execute(insert_ignoring_conflicts(table), values)
        inserted = dict(
            db.session.execute(
                select(table.c.email, table.c.id).where(
                    table.c.email.in_([row.email for row in chunk]), table.c.created_at == now
                )
            ).all()
        )
        report.created += len(inserted)
        report.unchanged += len(chunk) - len(inserted)
        links, events = [], []
        for row in chunk:
            subscriber_id = inserted.get(row.email)
            if subscriber_id is None:
                continue
            links.extend({"subscriber_id": subscriber_id, "topic_id": t} for t in row.topic_ids)
            events.append(_event(subscriber_id, now, source, topics=sorted(row.topic_ids)))
            if not consented:
                report.confirmation_ids.append(subscriber_id)
        if links:
            db.session.execute(insert(subscriber_topics), links)
        _insert_events(events)


def _event(subscriber_id: int, now, source: str, **detail) -> dict:
    detail["by"] = source
    return {
        "subscriber_id": subscriber_id,
        "kind": EventKind.IMPORTED,
        "source": EventSource.IMPORT.value,
        "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True)[:1000],
        "created_at": now,
    }


def _insert_events(events: list[dict]) -> None:
    for chunk in _chunks(events):
        db.session.execute(insert(SubscriberEvent.__table__), list(chunk))


def export_subscribers(
    *, status: SubscriberStatus | None = None, topic_id: int | None = None
) -> str:
    """All readers (or those with this status / section) as CSV:
    `email,name,status,sections,created_at`, every cell quoted and formula-safe."""
    query = select(
        Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.created_at
    ).order_by(Subscriber.id)
    links = (
        select(subscriber_topics.c.subscriber_id, Topic.name)
        .join(Topic, Topic.id == subscriber_topics.c.topic_id)
        .order_by(subscriber_topics.c.subscriber_id, Topic.position, Topic.id)
    )
    if status is not None:
        query = query.where(Subscriber.status == status)
    if topic_id is not None:
        chosen = select(subscriber_topics.c.subscriber_id).where(
            subscriber_topics.c.topic_id == topic_id
        )
        query = query.where(Subscriber.id.in_(chosen))
    topics: dict[int, list[str]] = {}
    for subscriber_id, name in db.session.execute(links):
        topics.setdefault(subscriber_id, []).append(name)
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(["email", "name", "status", "sections", "created_at"])
    for subscriber_id, email, name, row_status, created_at in db.session.execute(query):
        cells = [
            email,
            name,
            row_status.value,
            ";".join(topics.get(subscriber_id, [])),
            created_at.isoformat(),
        ]
        writer.writerow([formula_safe(cell) for cell in cells])
    return out.getvalue()
