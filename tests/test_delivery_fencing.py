"""A late sweep or a late worker cannot touch a claim that is no longer its own.

Each test holds one party at the worst moment with an event (a sweep between reading the
expired rows and acting on them, a worker in its rate-limit wait), lets the others move on,
then releases it. Everything else is real: the database, Redis, the SMTP server.
"""

from __future__ import annotations

import threading
from datetime import UTC

import pytest
import redis
from sqlalchemy import select

from tests.helpers import TEST_REDIS_URL, wait_for
from webapp import delivery, publishing, sweeper
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.journal import SendRate
from webapp.models import Delivery, DeliveryStatus, Subscriber, SubscriberStatus, utcnow

ADDRESSES = [f"late{n}@example.com" for n in range(5)]


class HeldRate(SendRate):
    """No rate limit, except that the first wait stops until `go` is set: a worker that got
    no CPU (or sat in a long wait) without running anything."""

    def __init__(self) -> None:
        super().__init__(0)
        self.held, self.go, self.calls = threading.Event(), threading.Event(), 0

    def wait(self, before_sleeping=lambda: None) -> None:
        self.calls += 1
        if self.calls == 1:
            self.held.set()
            assert self.go.wait(60)


class HeldRedis(redis.Redis):
    """The real Redis, where the first journal read stops until `go` is set."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.held, self.go, self.calls = threading.Event(), threading.Event(), 0

    def hmget(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            self.held.set()
            assert self.go.wait(60)
        return super().hmget(*args, **kwargs)


@pytest.fixture
def issue_id(app, db_session):
    [topic] = ensure_topics(["质量要闻"])
    db.session.add_all(
        Subscriber(email=a, status=SubscriberStatus.ACTIVE, topics=[topic]) for a in ADDRESSES
    )
    issue = create_issue("迟到的清扫")
    add_article(issue, topic, "文章", "正文。", lead="导语。")
    db.session.flush()
    publishing.publish_issue(issue.id)
    db.session.commit()
    saved = dict(app.config), dict(app.extensions)
    yield issue.id
    app.config.update(saved[0])
    for key in ("bulletin.send_rate", "bulletin.redis"):
        app.extensions.pop(key, None)
        if key in saved[1]:
            app.extensions[key] = saved[1][key]


def delivery_ids(issue_id: int) -> list[int]:
    return list(db.session.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id)))


def rows(issue_id: int) -> list[Delivery]:
    db.session.expire_all()
    return list(
        db.session.scalars(select(Delivery).where(Delivery.issue_id == issue_id).order_by("id"))
    )


def leases_ran_out(issue_id: int) -> bool:
    now = utcnow()
    return all(
        r.lease_expires_at is not None and r.lease_expires_at.replace(tzinfo=UTC) < now
        for r in rows(issue_id)
    )


def in_thread(app, work, outcome: dict) -> threading.Thread:
    """Run `work()` in its own app context (its own database session), like another process."""

    def run() -> None:
        with app.app_context():
            try:
                outcome["result"] = work()
            except Exception as exc:  # noqa: BLE001 (reported by the test)
                outcome["error"] = exc
                db.session.rollback()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def received_once_each(inbox) -> dict[str, str]:
    """Every address received exactly one message; returns address -> its Message-ID."""
    ids = {}
    for address in ADDRESSES:
        messages = inbox.to(address)
        assert len(messages) == 1, f"{address} received {len(messages)} messages"
        ids[address] = messages[0]["Message-ID"]
    return ids


def test_a_late_sweep_takes_nothing_back_from_a_new_claim(app, issue_id, inbox):
    ids = delivery_ids(issue_id)
    # A worker claims the batch and dies: its lease runs out with nothing sent.
    app.config["SEND_LEASE_SECONDS"] = 1
    delivery.claim(issue_id, ids)
    wait_for(lambda: leases_ran_out(issue_id), timeout=10, what="the lease to run out")
    app.config["SEND_LEASE_SECONDS"] = 300

    # Sweep 1 reads the expired rows, then stops before reading the journal.
    held_redis = HeldRedis.from_url(TEST_REDIS_URL)
    app.extensions["bulletin.redis"] = held_redis
    first_sweep: dict = {}
    sweep_thread = in_thread(app, sweeper.recover_expired, first_sweep)
    wait_for(held_redis.held.is_set, what="the first sweep to read the expired rows")

    # Sweep 2 gives the rows back; a new batch claims them and is about to send.
    assert sweeper.recover_expired() == {"pending": 5}
    held_rate = app.extensions["bulletin.send_rate"] = HeldRate()
    new_batch: dict = {}
    batch_thread = in_thread(app, lambda: delivery.send_batch(issue_id, ids), new_batch)
    wait_for(held_rate.held.is_set, what="the new batch to claim the rows")
    assert {r.status for r in rows(issue_id)} == {DeliveryStatus.SENDING}

    # Sweep 1 goes on: the rows are the new batch's, it must leave them alone.
    held_redis.go.set()
    sweep_thread.join(30)
    assert "error" not in first_sweep, first_sweep
    assert [(r.status, r.attempts) for r in rows(issue_id)] == [(DeliveryStatus.SENDING, 1)] * 5
    assert first_sweep["result"] == {}

    held_rate.go.set()
    batch_thread.join(30)
    assert "error" not in new_batch, new_batch
    assert new_batch["result"].sent == 5
    message_ids = received_once_each(inbox)
    assert [(r.status, r.attempts, r.message_id) for r in rows(issue_id)] == [
        (DeliveryStatus.SENT, 1, message_ids[a]) for a in ADDRESSES
    ]


def test_a_worker_stalled_past_its_lease_sends_nothing_and_overwrites_nothing(app, issue_id, inbox):
    ids = delivery_ids(issue_id)
    app.config["SEND_LEASE_SECONDS"] = 1
    held_rate = app.extensions["bulletin.send_rate"] = HeldRate()
    stalled: dict = {}
    stalled_thread = in_thread(app, lambda: delivery.send_batch(issue_id, ids), stalled)
    wait_for(held_rate.held.is_set, what="the first worker to claim its batch")

    # While it is stalled its lease runs out; the sweeper gives its rows back and another
    # worker sends them.
    wait_for(lambda: sweeper.recover_expired().get("pending") == 5, timeout=10,
             what="the sweeper to give the rows back")  # fmt: skip
    app.config["SEND_LEASE_SECONDS"] = 300
    other = delivery.send_batch(issue_id, ids)
    assert other.sent == 5
    message_ids = received_once_each(inbox)

    # The stalled worker wakes up: none of these rows is its own any more.
    held_rate.go.set()
    stalled_thread.join(30)
    assert "error" not in stalled, stalled
    assert stalled["result"].sent == 0
    received_once_each(inbox)
    assert [(r.status, r.attempts, r.message_id) for r in rows(issue_id)] == [
        (DeliveryStatus.SENT, 1, message_ids[a]) for a in ADDRESSES
    ]


def test_a_sweep_started_while_another_runs_does_nothing(app, issue_id):
    ids = delivery_ids(issue_id)
    app.config["SEND_LEASE_SECONDS"] = 1
    delivery.claim(issue_id, ids)
    wait_for(lambda: leases_ran_out(issue_id), timeout=10, what="the lease to run out")
    queued: list[int] = []
    running = redis.Redis.from_url(TEST_REDIS_URL).lock(sweeper.SWEEP_LOCK, timeout=30)
    assert running.acquire(blocking=False)
    try:
        result = sweeper.sweep(lambda _, batch: queued.extend(batch))
    finally:
        running.release()
    assert result.skipped and queued == []
    assert {r.status for r in rows(issue_id)} == {DeliveryStatus.SENDING}
    result = sweeper.sweep(lambda _, batch: queued.extend(batch))
    assert result.recovered == {"pending": 5} and sorted(queued) == ids


def test_a_sweep_longer_than_sweep_seconds_says_so(app, issue_id, caplog):
    app.config["SWEEP_SECONDS"] = 0
    with caplog.at_level("WARNING", logger="webapp.sweeper"):
        sweeper.sweep(lambda _, batch: None)
    assert "longer than SWEEP_SECONDS" in caplog.text
