"""Readers CSV imports in the background, for files of any size.

The upload is stored in the database (so whichever worker machine takes the task can read
it) with a job row, and a worker checks it: the dry run, which classifies every row and
writes nothing. Staff read the report, then start the import, which a worker runs with the
same code, committing a chunk of readers at a time (see `Step.IMPORT_PROGRESS`). The job
row carries the progress the staff page polls, both reports' counts, and the latest run's
outcome for every row. The real run is written to the audit log; every reader it adds or
changes gets an `imported` event naming the import.

A task runs again when its worker dies (acks late), or, stalled past the broker's visibility
timeout, while it still runs. Each run therefore claims the job with a fresh token, and
every commit of its progress checks it: a run that was taken over stops at its next commit,
its last chunk rolled back (`ImportSuperseded`). A real import that resumes after chunks
were committed reads the file again from the start and counts the readers the earlier run
added or updated (their `imported` event names the import) as this import's, so its report
still matches the dry run's.
"""

from __future__ import annotations

import gzip
import json
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

from flask_babel import lazy_gettext
from sqlalchemy import select, update
from sqlalchemy.orm import defer

from . import audit
from .errors import BulletinError
from .extensions import db
from .models import IMPORT_SOURCE_STAFF, ImportStatus, SubscriberImport, utcnow
from .subscriber_csv import (
    CsvImportError,
    CsvImportReport,
    Outcome,
    RowOutcome,
    import_subscribers,
)
from .transactions import Step, after_commit, commit_step

# An uploaded file is kept this long for staff to read the dry run and decide.
KEEP_FILE = timedelta(days=7)
# A running import commits its chunks and progress at most this often (seconds).
COMMIT_EVERY = 1.0

STATUS_LABELS = {
    ImportStatus.CHECKING: lazy_gettext("正在检查（试运行）"),
    ImportStatus.CHECKED: lazy_gettext("检查完毕，尚未导入"),
    ImportStatus.IMPORTING: lazy_gettext("正在导入"),
    ImportStatus.DONE: lazy_gettext("已导入"),
    ImportStatus.FAILED: lazy_gettext("失败"),
}

OUTCOME_LABELS = {
    Outcome.ADDED: lazy_gettext("新增"),
    Outcome.UPDATED: lazy_gettext("更新"),
    Outcome.UNCHANGED: lazy_gettext("已存在，未变"),
    Outcome.ERROR: lazy_gettext("有问题，未导入"),
    Outcome.DUPLICATE: lazy_gettext("重复，已合并"),
    Outcome.SUPPRESSED: lazy_gettext("已屏蔽，跳过"),
    Outcome.UNSUBSCRIBED: lazy_gettext("已退订，跳过"),
}


def create_import(
    data: bytes, filename: str, *, consented: bool, staff_email: str
) -> SubscriberImport:
    """Store an uploaded file as a new import waiting for its dry run (flushed; the caller
    commits, then queues the check). Files of imports older than KEEP_FILE are dropped."""
    db.session.execute(
        update(SubscriberImport)
        .where(
            SubscriberImport.created_at < utcnow() - KEEP_FILE,
            SubscriberImport.data.is_not(None),
        )
        .values(data=None)
    )
    job = SubscriberImport(
        created_by=staff_email,
        filename=filename[:255],
        consented=consented,
        status=ImportStatus.CHECKING,
        data=data,
        size=len(data),
        rows_total=max(data.count(b"\n"), 1),
    )
    db.session.add(job)
    db.session.flush()
    return job


def get(import_id: int, *, with_outcomes: bool = False) -> SubscriberImport | None:
    """An import without its file (and without the per-row outcomes unless asked): the
    progress poll reads this every two seconds, and the file may be 64 MB."""
    deferred = [defer(SubscriberImport.data)]
    if not with_outcomes:
        deferred.append(defer(SubscriberImport.outcomes))
    return db.session.get(SubscriberImport, import_id, options=deferred)


def recent(limit: int = 10) -> list[SubscriberImport]:
    """The latest imports, newest first (without loading their files)."""
    query = (
        select(SubscriberImport)
        .options(defer(SubscriberImport.data), defer(SubscriberImport.outcomes))
        .order_by(SubscriberImport.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))


def start_import(import_id: int) -> SubscriberImport:
    """Staff read the dry run and go ahead: the import waits for a worker (flushed)."""
    job = get(import_id)
    if job is None:
        raise CsvImportError("csv-import-missing", id=import_id)
    if job.status != ImportStatus.CHECKED or not _has_file(job):
        raise CsvImportError("csv-import-status", id=import_id)
    job.status = ImportStatus.IMPORTING
    job.rows_read = job.rows_done = job.confirmations_sent = 0
    db.session.flush()
    return job


class ImportSuperseded(Exception):
    """Another run of the same import claimed it: this one stops (the caller rolls back)."""


def run(import_id: int, *, dry_run: bool, send_confirmations: Callable[[list[int]], None]) -> None:
    """The dry run (CHECKING -> CHECKED) or the import (IMPORTING -> DONE) of one upload.

    Claims the job, then commits its progress as it goes (see `Step.IMPORT_PROGRESS`); the
    caller commits the end. A file that cannot be read at all ends the job as FAILED.
    `send_confirmations(ids)` is called after each commit with the pending readers whose
    confirmation email is due. Raises `ImportSuperseded` when another run took the job over.
    """
    job = get(import_id)  # the file is read once, below: each commit would reload it
    wanted = ImportStatus.CHECKING if dry_run else ImportStatus.IMPORTING
    data = db.session.scalar(select(SubscriberImport.data).where(SubscriberImport.id == import_id))
    if job is None or job.status != wanted or data is None:
        return  # a task delivered twice, or a job finished (or dropped) meanwhile
    token = _claim(import_id, wanted)
    if token is None:
        return
    # What earlier runs of this import committed, read after the claim (no earlier run can
    # commit after it): this run resumes after their chunks.
    rows_done, earlier_confirmations = db.session.execute(
        select(SubscriberImport.rows_done, SubscriberImport.confirmations_sent).where(
            SubscriberImport.id == import_id
        )
    ).one()
    resuming = rows_done > 0 and not dry_run
    queued, committed = 0, time.monotonic()

    def progress(stage: str, done: int, total: int, report: CsvImportReport) -> None:
        nonlocal queued, committed
        figures = {"rows_read" if stage == "read" else "rows_done": done, "rows_total": total}
        if not dry_run:  # committed with the chunks that claimed them
            figures["confirmations_sent"] = earlier_confirmations + report.confirmations
        _still_ours(import_id, token, **figures)
        # A commit waits for the disk: once a second is often enough for the progress bar,
        # and keeps SQLite's write lock for about a second at a time.
        if time.monotonic() - committed < COMMIT_EVERY:
            return
        fresh = report.confirmation_ids[queued:]
        if fresh:
            after_commit(lambda: send_confirmations(fresh))
            queued += len(fresh)
        commit_step(Step.IMPORT_PROGRESS)
        committed = time.monotonic()

    source = IMPORT_SOURCE_STAFF + job.created_by
    try:
        report = import_subscribers(
            data,
            consented=job.consented,
            source=source,
            dry_run=dry_run,
            progress=progress,
            job_id=job.id,
            resuming=resuming,
        )
    except CsvImportError as exc:
        _still_ours(import_id, token)
        job.status = ImportStatus.FAILED
        job.error = _stored_error(exc)
        job.finished_at = utcnow()
        return
    _still_ours(import_id, token)  # and locked: no run can claim it before the caller commits
    fresh = report.confirmation_ids[queued:]
    if fresh:  # the rest, after the caller's commit
        after_commit(lambda: send_confirmations(fresh))
    if not dry_run:
        report.confirmations += earlier_confirmations
    counts = report.counts()
    job.outcomes = _pack(report.outcomes)
    if dry_run:
        job.status = ImportStatus.CHECKED
        job.dry_report = json.dumps(counts)
        return
    job.status = ImportStatus.DONE
    job.report = json.dumps(counts)
    job.finished_at = utcnow()
    job.data = None  # a list of addresses need not outlive its import
    audit.record("import-readers", detail=_audit_line(job, counts), who=job.created_by)


def _claim(import_id: int, status: ImportStatus) -> str | None:
    """Make the job this run's (committed at once, see `Step.IMPORT_CLAIMED`); None when it
    is no longer in `status`."""
    token = secrets.token_hex(16)
    claimed = db.session.execute(
        update(SubscriberImport)
        .where(SubscriberImport.id == import_id, SubscriberImport.status == status)
        .values(run_token=token)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        return None
    commit_step(Step.IMPORT_CLAIMED)
    return token


def _still_ours(import_id: int, token: str, **values) -> None:
    """Write `values` to the job if this run still owns it (the row stays locked until the
    commit); raise `ImportSuperseded` if another run claimed it since."""
    owned = db.session.execute(
        update(SubscriberImport)
        .where(SubscriberImport.id == import_id, SubscriberImport.run_token == token)
        .values(run_token=token, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if owned != 1:
        raise ImportSuperseded(import_id)


def mark_failed(import_id: int) -> None:
    """The task broke (it is logged): the job says so instead of running forever."""
    job = db.session.get(SubscriberImport, import_id)
    if job is not None and job.status in (ImportStatus.CHECKING, ImportStatus.IMPORTING):
        if job.status == ImportStatus.IMPORTING:
            audit.record("import-readers-failed", detail=f"#{job.id}", who=job.created_by)
        job.status = ImportStatus.FAILED
        job.error = _stored_error(CsvImportError("csv-import-failed"))
        job.finished_at = utcnow()


def _has_file(job: SubscriberImport) -> bool:
    query = select(SubscriberImport.id).where(
        SubscriberImport.id == job.id, SubscriberImport.data.is_not(None)
    )
    return db.session.scalar(query) is not None


def has_file(job: SubscriberImport) -> bool:
    """Whether the uploaded file is still kept (dropped after KEEP_FILE or once imported)."""
    return _has_file(job)


def _audit_line(job: SubscriberImport, counts: dict[str, int]) -> str:
    figures = ", ".join(f"{name} {value}" for name, value in counts.items())
    consent = "consented" if job.consented else "confirm by email"
    return f"#{job.id} {job.filename} ({consent}): {figures}"


def _stored_error(error: BulletinError) -> str:
    return json.dumps([error.code, error.params], ensure_ascii=False)


def error_of(job: SubscriberImport) -> BulletinError | None:
    """Why the job failed, to describe() in the reader's language."""
    if not job.error:
        return None
    code, params = json.loads(job.error)
    return BulletinError(code, **params)


def counts_of(job: SubscriberImport, *, dry_run: bool) -> dict[str, int] | None:
    text = job.dry_report if dry_run else job.report
    return json.loads(text) if text else None


def _pack(outcomes: list[RowOutcome]) -> bytes:
    lines = (
        json.dumps(
            [o.line, o.email, o.outcome.value, [[n.code, n.params] for n in o.notes]],
            ensure_ascii=False,
        )
        for o in outcomes
    )
    return gzip.compress("\n".join(lines).encode(), compresslevel=5)


def outcomes(job: SubscriberImport, *, problems_only: bool = False) -> Iterator[RowOutcome]:
    """The latest run's outcome for every row, by line (or only the rows with something to
    say: errors, warnings, duplicates, skipped)."""
    if not job.outcomes:
        return
    for text in gzip.decompress(job.outcomes).decode().splitlines():
        line, email, outcome, notes = json.loads(text)
        if problems_only and not notes and outcome not in _PROBLEMS:
            continue
        errors = [BulletinError(code, **params) for code, params in notes]
        yield RowOutcome(line, email, Outcome(outcome), errors)


_PROBLEMS = {Outcome.ERROR, Outcome.DUPLICATE, Outcome.SUPPRESSED, Outcome.UNSUBSCRIBED}


def percent(job: SubscriberImport) -> int:
    """How far the current run is: reading the file is the first half, writing the second."""
    if job.status not in (ImportStatus.CHECKING, ImportStatus.IMPORTING):
        return 100
    total = max(job.rows_total, 1)
    return min(99, (50 * min(job.rows_read, total) + 50 * min(job.rows_done, total)) // total)
