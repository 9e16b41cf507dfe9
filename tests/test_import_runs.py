"""A readers import run again: after its worker died between two commits, and while the run
it replaced still goes on (a stalled worker whose task was delivered again). The import
resumes and reports what the dry run said; the run taken over stops at its next commit and
writes nothing more; nobody is added twice, nobody's confirmation is claimed twice.

The commits are the real ones (`commit_step`), on the test database; a worker's death is an
exception raised right after one of them, and another worker's claim is made between two.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from tests.helpers import add_topics
from webapp import subscriber_csv, subscriber_imports
from webapp.extensions import db
from webapp.models import (
    EventKind,
    ImportStatus,
    Subscriber,
    SubscriberEvent,
    SubscriberImport,
    SubscriberStatus,
)
from webapp.transactions import Step, commit_step

CHUNK = 50  # readers per chunk here, so that 300 rows take six chunks and six commits


class WorkerDied(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs."""


@pytest.fixture
def job_id(app, db_session, monkeypatch) -> int:
    """An import checked by its dry run and started, of 300 rows: 200 new readers, 50 pending
    readers without a name (updated, and their confirmation is due) and 50 readers already
    active (unchanged). Staff chose to send confirmations."""
    [topic] = add_topics(["质量要闻"])
    db.session.add_all(
        Subscriber(email=f"pending{n}@example.com", status=SubscriberStatus.PENDING)
        for n in range(50)
    )
    db.session.add_all(
        Subscriber(
            email=f"active{n}@example.com", name=f"老读者{n}", status=SubscriberStatus.ACTIVE
        )
        for n in range(50)
    )
    db.session.commit()
    rows = [f"new{n}@example.com,新读者{n},{topic.name}" for n in range(200)]
    rows += [f"pending{n}@example.com,待确认{n}," for n in range(50)]
    rows += [f"active{n}@example.com,老读者{n}," for n in range(50)]
    data = ("email,name,sections\n" + "\n".join(rows) + "\n").encode()
    original = subscriber_csv._chunks
    monkeypatch.setattr(subscriber_csv, "_chunks", lambda items, size=CHUNK: original(items, CHUNK))
    monkeypatch.setattr(subscriber_imports, "COMMIT_EVERY", 0)  # a commit after every chunk

    job = subscriber_imports.create_import(
        data, "readers.csv", consented=False, staff_email="admin@example.org"
    )
    db.session.commit()
    subscriber_imports.run(job.id, dry_run=True, send_confirmations=lambda ids: None)
    db.session.commit()
    subscriber_imports.start_import(job.id)
    db.session.commit()
    return job.id


def after_chunks(monkeypatch, chunks: int, then) -> None:
    """Call `then()` right after the commit of the import's `chunks`-th chunk (the first
    progress commit is the reading pass's)."""
    seen = Counter()

    def step(name: Step) -> None:
        commit_step(name)
        if name == Step.IMPORT_PROGRESS:
            seen[name] += 1
            if seen[name] == 1 + chunks:
                then()

    monkeypatch.setattr(subscriber_imports, "commit_step", step)


def report(job_id: int, *, dry_run: bool) -> dict[str, int]:
    db.session.expire_all()
    return subscriber_imports.counts_of(db.session.get(SubscriberImport, job_id), dry_run=dry_run)


def readers() -> int:
    return db.session.scalar(select(func.count()).select_from(Subscriber))


def imported_events() -> Counter:
    query = select(SubscriberEvent.subscriber_id).where(SubscriberEvent.kind == EventKind.IMPORTED)
    return Counter(db.session.scalars(query))


def test_an_import_whose_worker_died_resumes_and_reports_what_the_dry_run_said(job_id, monkeypatch):
    dry = report(job_id, dry_run=True)
    assert (dry["added"], dry["updated"], dry["unchanged"], dry["confirmations"]) == (
        200,
        50,
        50,
        250,
    )
    queued: list[int] = []

    def die() -> None:
        raise WorkerDied

    after_chunks(monkeypatch, 3, die)  # three chunks of six are in: 150 new readers
    with pytest.raises(WorkerDied):
        subscriber_imports.run(job_id, dry_run=False, send_confirmations=queued.extend)
    db.session.rollback()
    assert readers() == 100 + 150 and len(queued) == 150

    # The task is delivered again: the import runs from the start of the file.
    monkeypatch.setattr(subscriber_imports, "commit_step", commit_step)
    subscriber_imports.run(job_id, dry_run=False, send_confirmations=queued.extend)
    db.session.commit()

    assert report(job_id, dry_run=False) == dry
    assert db.session.get(SubscriberImport, job_id).status == ImportStatus.DONE
    assert readers() == 300
    # Every confirmation the import claimed was handed over once: 200 new, 50 pending.
    assert len(queued) == len(set(queued)) == 250
    # One `imported` event for each reader the import added or changed, none twice.
    assert set(imported_events().values()) == {1} and sum(imported_events().values()) == 250


def test_a_run_that_was_taken_over_stops_at_its_next_commit(job_id, monkeypatch):
    dry = report(job_id, dry_run=True)
    queued: list[int] = []
    counted: list[int] = []

    def another_worker_claims() -> None:
        counted.append(readers())
        assert subscriber_imports._claim(job_id, ImportStatus.IMPORTING)

    after_chunks(monkeypatch, 2, another_worker_claims)
    with pytest.raises(subscriber_imports.ImportSuperseded):
        subscriber_imports.run(job_id, dry_run=False, send_confirmations=queued.extend)
    db.session.rollback()
    # The chunk it wrote after the claim was rolled back with its progress.
    assert readers() == counted[0] == 100 + 100
    job = db.session.get(SubscriberImport, job_id)
    assert job.status == ImportStatus.IMPORTING and job.rows_done == 2 * CHUNK

    monkeypatch.setattr(subscriber_imports, "commit_step", commit_step)
    subscriber_imports.run(job_id, dry_run=False, send_confirmations=queued.extend)
    db.session.commit()
    assert report(job_id, dry_run=False) == dry
    assert readers() == 300 and len(queued) == len(set(queued)) == 250


def test_the_task_of_a_run_taken_over_leaves_the_job_to_the_new_run(job_id, monkeypatch):
    from tasks import imports

    def superseded(import_id: int, **_options) -> None:
        raise subscriber_imports.ImportSuperseded(import_id)

    monkeypatch.setattr(subscriber_imports, "run", superseded)
    imports.run_subscriber_import(job_id)  # returns: not a failure
    db.session.expire_all()
    assert db.session.get(SubscriberImport, job_id).status == ImportStatus.IMPORTING


@pytest.mark.postgresql
def test_two_runs_at_once_on_postgresql_one_takes_over_and_nothing_is_done_twice(
    app, job_id, monkeypatch
):
    """The first run still works when the second claims the job: the first stops at its
    next commit (its chunk rolled back, with no reader lost: the second writes them)."""
    dry = report(job_id, dry_run=True)
    queued: list[int] = []
    outcome: dict[str, object] = {}
    two_chunks_in = threading.Event()
    chunk = subscriber_csv._import_chunk

    def slow_chunk(*args) -> None:  # as on a loaded machine, so that the two runs overlap
        time.sleep(0.05)
        chunk(*args)

    def step(name: Step) -> None:
        commit_step(name)
        if threading.current_thread().name == "first" and name == Step.IMPORT_PROGRESS:
            outcome["first commits"] = outcome.get("first commits", 0) + 1
            if outcome["first commits"] == 3:  # the reading pass and two chunks
                two_chunks_in.set()

    monkeypatch.setattr(subscriber_csv, "_import_chunk", slow_chunk)
    monkeypatch.setattr(subscriber_imports, "commit_step", step)

    def run(name: str) -> None:
        with app.app_context():
            try:
                if name == "second":
                    assert two_chunks_in.wait(60)
                subscriber_imports.run(job_id, dry_run=False, send_confirmations=queued.extend)
                db.session.commit()
                outcome[name] = "finished"
            except subscriber_imports.ImportSuperseded:
                db.session.rollback()
                outcome[name] = "superseded"
            except BaseException as exc:  # noqa: BLE001 - reported below
                db.session.rollback()
                outcome[name] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(n,), name=n) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert (outcome["first"], outcome["second"]) == ("superseded", "finished")
    assert report(job_id, dry_run=False) == dry
    assert readers() == 300 and len(queued) == len(set(queued)) == 250
    assert set(imported_events().values()) == {1} and sum(imported_events().values()) == 250
