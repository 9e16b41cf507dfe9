"""One bulk change run twice at once: its task delivered again while the first worker still
works (a stall past the broker's visibility timeout). The two runs share the readers, chunk
by chunk: each chunk goes to one of them, and the counts are the readers'.

PostgreSQL only: two sessions writing at once is what it does in production (SQLite lets
one writer at a time, so there is nothing to share).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import insert, select

from tests.helpers import add_topics
from webapp import bulk, directory
from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    BulkChange,
    BulkChangeStatus,
    EventKind,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    subscriber_topics,
)

READERS = 3000


pytestmark = pytest.mark.postgresql


@pytest.fixture
def change_id(app, db_session, monkeypatch) -> int:
    news, hot = add_topics(["质量要闻", "质量热点"])
    db.session.execute(
        insert(Subscriber),
        [
            {"email": f"r{n}@example.com", "name": "", "status": SubscriberStatus.ACTIVE}
            for n in range(READERS)
        ],
    )
    ids = db.session.scalars(select(Subscriber.id)).all()
    db.session.execute(
        insert(subscriber_topics),
        [{"subscriber_id": i, "topic_id": t} for i in ids for t in (news.id, hot.id)],
    )
    change = bulk.plan(
        bulk.BulkAction.REMOVE_TOPIC,
        directory.Filters(topic_id=news.id),
        topic_id=news.id,
        staff_email="admin@example.org",
    )
    db.session.commit()
    monkeypatch.setattr(bulk, "CHUNK", 100)  # thirty chunks to share
    return change.id


@pytest.fixture
def applied(monkeypatch) -> Counter:
    """How often each reader was handed to a change (each chunk takes a little while, as on
    a loaded machine, so that the two runs overlap)."""
    handed: Counter = Counter()
    apply = bulk._apply

    def slow_apply(change, ids: list[int]) -> int:
        handed.update(ids)
        time.sleep(0.01)
        return apply(change, ids)

    monkeypatch.setattr(bulk, "_apply", slow_apply)
    return handed


def test_two_runs_of_one_bulk_change_share_its_readers(app, change_id, applied):
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def worker() -> None:
        with app.app_context():
            try:
                start.wait()
                bulk.run(change_id)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    # Each chunk went to one run: no reader was handed to the change twice.
    assert len(applied) == READERS and set(applied.values()) == {1}

    db.session.expire_all()
    events = Counter(
        db.session.scalars(
            select(SubscriberEvent.subscriber_id).where(
                SubscriberEvent.kind == EventKind.TOPICS_CHANGED
            )
        )
    )
    assert len(events) == READERS and set(events.values()) == {1}
    change = db.session.get(BulkChange, change_id)
    assert change.status == BulkChangeStatus.DONE
    assert (change.done, change.changed) == (READERS, READERS)
    # One of them finished it: the audit log says so once.
    done = select(AuditEntry).where(AuditEntry.action == "readers-remove-topic-done")
    assert len(db.session.scalars(done).all()) == 1
