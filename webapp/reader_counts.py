"""How many readers are in each status and in each section, without counting the tables.

Database triggers (migration 0022) record every change to a reader's status or sections as
change rows in `reader_count_changes`, in the same transaction as the change, whichever path
made it: one reader's form, the set-based `*_many` functions, the CSV import's bulk writes,
an erasure's cascade. A count is its `reader_counts` row plus its change rows; `fold()`
(the sweeper, every SWEEP_SECONDS) adds the change rows into `reader_counts` so they stay few.

Why counters kept by triggers rather than a cache: the counts are exact and consistent with
what staff just did (a cache is stale until its TTL passes, or has to be invalidated on every
path), and a trigger cannot be forgotten by a new path. Why change rows rather than updating
the counter rows in the triggers: every sign-up would then lock the same few hot rows, and
transactions that touch statuses and sections in different orders could deadlock on them;
inserting change rows takes no lock another writer waits for.
"""

from __future__ import annotations

from sqlalchemy import text

from .extensions import db

ALL_READERS = 0  # the topic_id of a status's total

_CURRENT = text(
    "SELECT status, topic_id, SUM(readers) FROM ("
    " SELECT status, topic_id, readers FROM reader_counts"
    " UNION ALL SELECT status, topic_id, change FROM reader_count_changes"
    ") AS counted GROUP BY status, topic_id"
)

# One statement on PostgreSQL: the rows it deletes are exactly the rows it adds in, even
# while writers insert more. Counter rows are updated in key order, so two folds running at
# once wait for each other instead of deadlocking.
_FOLD_POSTGRESQL = text(
    "WITH moved AS (DELETE FROM reader_count_changes RETURNING status, topic_id, change) "
    "INSERT INTO reader_counts (status, topic_id, readers) "
    "SELECT status, topic_id, SUM(change) FROM moved "
    "GROUP BY status, topic_id ORDER BY status, topic_id "
    "ON CONFLICT (status, topic_id) DO UPDATE SET readers = reader_counts.readers + "
    "excluded.readers"
)
# SQLite writes one transaction at a time, so the two statements see the same change rows.
_FOLD_SQLITE = (
    text(
        "INSERT INTO reader_counts (status, topic_id, readers) "
        "SELECT status, topic_id, SUM(change) FROM reader_count_changes WHERE id <= :upto "
        "GROUP BY status, topic_id "
        "ON CONFLICT (status, topic_id) DO UPDATE SET readers = readers + excluded.readers"
    ),
    text("DELETE FROM reader_count_changes WHERE id <= :upto"),
)


def current() -> dict[tuple[str, int], int]:
    """{(status, topic_id): readers}; topic_id ALL_READERS is the status's total."""
    return {(status, topic): int(n) for status, topic, n in db.session.execute(_CURRENT)}


def fold() -> None:
    """Add the change rows into the counters (the caller commits)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(_FOLD_POSTGRESQL)
        return
    upto = db.session.scalar(text("SELECT MAX(id) FROM reader_count_changes"))
    if upto is not None:
        for statement in _FOLD_SQLITE:
            db.session.execute(statement, {"upto": upto})
