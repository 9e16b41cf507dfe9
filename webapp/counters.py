"""Counts staff see on every page, without counting the tables: readers per status and per
(status, section), an issue's deliveries per status, and readers' events per day (the
dashboard's chart; migration 0023).

Database triggers (migration 0022) record every change to a reader's status or sections,
and to a delivery's status, as change rows (`reader_count_changes`, `delivery_count_changes`)
in the same transaction as the change, whichever path made it: one reader's form, the
set-based `*_many` functions, the CSV import's bulk writes, an erasure's cascade, the send
engine's batches. A count is its counter row plus its change rows; `fold()` (the sweeper,
every SWEEP_SECONDS) adds the change rows into the counters so that they stay few.

Why counters kept by triggers rather than a cache: the counts are exact and consistent with
what staff just did (a cache is stale until its TTL passes, or has to be invalidated on every
path), and a trigger cannot be forgotten by a new path. Why change rows rather than updating
the counter rows in the triggers: every sign-up (and every send batch) would then lock the
same few hot rows, and transactions that touch statuses and sections in different orders
could deadlock on them; inserting change rows takes no lock another writer waits for.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import BigInteger, Date, bindparam, column, text

from .extensions import db

ALL_READERS = 0  # the topic_id of a status's total

_READERS = text(
    "SELECT status, topic_id, SUM(readers) FROM ("
    " SELECT status, topic_id, readers FROM reader_counts"
    " UNION ALL SELECT status, topic_id, change FROM reader_count_changes"
    ") AS counted GROUP BY status, topic_id"
)
_DELIVERIES = text(
    "SELECT issue_id, status, SUM(deliveries) FROM ("
    " SELECT issue_id, status, deliveries FROM delivery_counts WHERE issue_id IN :ids"
    " UNION ALL SELECT issue_id, status, change FROM delivery_count_changes"
    " WHERE issue_id IN :ids"
    ") AS counted GROUP BY issue_id, status"
).bindparams(bindparam("ids", expanding=True))

_EVENT_DAYS = text(
    "SELECT day, kind, source, SUM(events) FROM ("
    " SELECT day, kind, source, events FROM event_day_counts WHERE day BETWEEN :first AND :last"
    " UNION ALL SELECT day, kind, source, change FROM event_day_count_changes"
    " WHERE day BETWEEN :first AND :last"
    ") AS counted GROUP BY day, kind, source"
).bindparams(bindparam("first", type_=Date), bindparam("last", type_=Date))
# Typed so that SQLite's days (stored as text) read and compare as dates too.
_EVENT_DAYS = _EVENT_DAYS.columns(
    column("day", Date), column("kind"), column("source"), column("events", BigInteger)
)

# One statement on PostgreSQL: the rows it deletes are exactly the rows it adds in, even
# while writers insert more. Counter rows are updated in key order, so two folds running at
# once wait for each other instead of deadlocking.
_FOLD_POSTGRESQL = [
    text(
        "WITH moved AS (DELETE FROM reader_count_changes RETURNING status, topic_id, change) "
        "INSERT INTO reader_counts (status, topic_id, readers) "
        "SELECT status, topic_id, SUM(change) FROM moved "
        "GROUP BY status, topic_id ORDER BY status, topic_id "
        "ON CONFLICT (status, topic_id) DO UPDATE SET readers = reader_counts.readers + "
        "excluded.readers"
    ),
    text(
        "WITH moved AS (DELETE FROM delivery_count_changes RETURNING issue_id, status, change) "
        "INSERT INTO delivery_counts (issue_id, status, deliveries) "
        "SELECT issue_id, status, SUM(change) FROM moved "
        "GROUP BY issue_id, status ORDER BY issue_id, status "
        "ON CONFLICT (issue_id, status) DO UPDATE SET deliveries = delivery_counts.deliveries "
        "+ excluded.deliveries"
    ),
    text(
        "WITH moved AS (DELETE FROM event_day_count_changes RETURNING day, kind, source, change) "
        "INSERT INTO event_day_counts (day, kind, source, events) "
        "SELECT day, kind, source, SUM(change) FROM moved "
        "GROUP BY day, kind, source ORDER BY day, kind, source "
        "ON CONFLICT (day, kind, source) DO UPDATE SET events = event_day_counts.events "
        "+ excluded.events"
    ),
]
# SQLite writes one transaction at a time, so each pair of statements sees the same rows.
_FOLD_SQLITE = [
    (
        "reader_count_changes",
        text(
            "INSERT INTO reader_counts (status, topic_id, readers) "
            "SELECT status, topic_id, SUM(change) FROM reader_count_changes WHERE id <= :upto "
            "GROUP BY status, topic_id "
            "ON CONFLICT (status, topic_id) DO UPDATE SET readers = readers + excluded.readers"
        ),
    ),
    (
        "delivery_count_changes",
        text(
            "INSERT INTO delivery_counts (issue_id, status, deliveries) "
            "SELECT issue_id, status, SUM(change) FROM delivery_count_changes "
            "WHERE id <= :upto GROUP BY issue_id, status "
            "ON CONFLICT (issue_id, status) DO UPDATE SET deliveries = deliveries + "
            "excluded.deliveries"
        ),
    ),
    (
        "event_day_count_changes",
        text(
            "INSERT INTO event_day_counts (day, kind, source, events) "
            "SELECT day, kind, source, SUM(change) FROM event_day_count_changes "
            "WHERE id <= :upto GROUP BY day, kind, source "
            "ON CONFLICT (day, kind, source) DO UPDATE SET events = events + excluded.events"
        ),
    ),
]


def readers() -> dict[tuple[str, int], int]:
    """{(status, topic_id): readers}; topic_id ALL_READERS is the status's total."""
    return {(status, topic): int(n) for status, topic, n in db.session.execute(_READERS)}


def deliveries(issue_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """{issue_id: {status: deliveries}} for these issues (statuses without any left out)."""
    ids = list(issue_ids)
    counts: dict[int, dict[str, int]] = {issue_id: {} for issue_id in ids}
    if ids:
        for issue_id, status, n in db.session.execute(_DELIVERIES, {"ids": ids}):
            counts[issue_id][status] = int(n)
    return counts


def events_per_day(first: date, last: date) -> dict[tuple[date, str, str], int]:
    """{(UTC day, event kind, source): events} for the days from `first` to `last`, both
    included (days and pairs without any left out)."""
    rows = db.session.execute(_EVENT_DAYS, {"first": first, "last": last})
    return {(day, kind, source): int(n) for day, kind, source, n in rows}


def fold() -> None:
    """Add the change rows into the counters (the caller commits)."""
    if db.session.get_bind().dialect.name == "postgresql":
        for statement in _FOLD_POSTGRESQL:
            db.session.execute(statement)
        return
    for table, add in _FOLD_SQLITE:
        upto = db.session.scalar(text(f"SELECT MAX(id) FROM {table}"))
        if upto is not None:
            db.session.execute(add, {"upto": upto})
            db.session.execute(text(f"DELETE FROM {table} WHERE id <= :upto"), {"upto": upto})
