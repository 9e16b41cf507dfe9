"""Who commits, and when: the one place that does.

The rule: a request, a CLI command or a task owns its transaction. It runs its work inside
`transaction()`, which commits when the block ends and rolls back if it raises; the domain
functions it calls only flush. Work that needs the commit first (queueing a task that reads
what was written) is handed to `after_commit()`, so rolled-back work queues nothing.

The exception is the send engine (with the readership counters' flush, which the sweeper
runs): it must make some of its work visible while it is still working, since other workers
and the sweeper read the same rows at the same time. It commits in the named steps below
(`commit_step`), and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

from .extensions import db

AFTER_COMMIT = "bulletin.after_commit"


class Step(StrEnum):
    """The send engine's commits in the middle of its work, and why each one is needed."""

    # dispatch_issue: the digests a send needs are stored before its batches are queued, so
    # the workers load them instead of each rendering its own.
    RENDERED = "rendered"
    # dispatch_due: a page of rows is marked queued before its batch task is queued, so a
    # task lost after that is seen (queued long ago, still pending) and queued again.
    QUEUED = "queued"
    # send_batch found the issue paused or cancelled: its rows may be queued again later.
    UNQUEUED = "unqueued"
    # claim: the rows are this batch's (sending, lease, token) before anything goes on the
    # wire; another worker's claim and the sweeper must see that at once.
    CLAIMED = "claimed"
    # A batch's answers so far are final, and the lease of the rest renewed: written before
    # the next message, so that the sweeper never takes back a row that is still ours.
    FLUSHED = "flushed"
    # A batch ends: the rows it never tried are pending again, for another batch.
    RELEASED = "released"
    # The server refused us (5.7.x): the issue is paused now, so other batches stop at once.
    PAUSED = "paused"
    # The sweeper settled one claim's expired rows: written before their journal entries go.
    SETTLED = "settled"
    # Nothing left to send: the issue is marked sent (by the last batch or the sweeper).
    FINISHED = "finished"
    # readership.flush: one batch of counters is written with its ledger row before its
    # Redis key is deleted, so a crash between the two can neither lose nor repeat it.
    COUNTS_WRITTEN = "counts-written"
    # readership.flush: the ledger forgets batches older than any that a crash could leave.
    COUNTS_PRUNED = "counts-pruned"
    # A background readers import (subscriber_imports.run) commits its chunks of readers with
    # its progress about once a second: staff watch the count grow, and 200,000 readers in
    # one transaction would hold SQLite's write lock (sign-ups wait) for the whole import.
    # A dry run commits only its progress. A run that breaks keeps the chunks before: the
    # run that resumes (or importing the file again) finds them already here.
    IMPORT_PROGRESS = "import-progress"
    # A readers import's run claims the job with a fresh token before it writes: a run it
    # takes over from (a task delivered again while the first worker stalled) must see the
    # new token at its next commit and stop.
    IMPORT_CLAIMED = "import-claimed"


def commit_step(step: Step) -> None:
    """Commit the send engine's work at `step` (see `Step` for why each one exists)."""
    _commit()


@contextmanager
def transaction() -> Iterator[None]:
    """The caller's unit of work: commit at the end of the block, roll back if it raises.

    Callbacks registered with `after_commit()` run once the commit has succeeded.
    """
    try:
        yield
    except BaseException:
        rollback()
        raise
    _commit()


def rollback() -> None:
    """Undo the work since the last commit, and forget what was to run after it."""
    db.session.rollback()
    db.session.info.pop(AFTER_COMMIT, None)


def after_commit(callback: Callable[[], object]) -> None:
    """Run `callback` after the current transaction commits (never if it rolls back)."""
    db.session.info.setdefault(AFTER_COMMIT, []).append(callback)


def _commit() -> None:
    db.session.commit()
    for callback in db.session.info.pop(AFTER_COMMIT, []):
        callback()
