"""The delivery engine under faults: real worker processes, real Redis, the real database,
and an SMTP server that misbehaves on a schedule (tests/fault_smtp.py).

The workers and the sweeper (celery beat) run as separate processes, configured through
the environment as in production, so a worker can be killed with SIGKILL mid-send and
Redis can be restarted empty. Every test ends with the same audit: every row final, each
`sent` reader received exactly once, nobody missing, duplicates only where a row says
`unknown`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.fault_smtp import Faults, FaultySmtp
from tests.helpers import add_drill_issue, free_port, wait_for
from webapp import localredis, publishing
from webapp.extensions import db
from webapp.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from webapp.subscriptions import email_hash

FINAL = {DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN, DeliveryStatus.SKIPPED}


class RedisServer:
    """A private server (redis-server, or the Valkey pip installed: webapp.localredis), so a
    test can restart it empty without touching anyone else's."""

    def __init__(self, port: int, folder: Path):
        self.port, self.folder, self.process = port, folder, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = localredis.start(self.url, self.folder)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class Processes:
    """Worker and sweeper processes for one test, killed at the end whatever happens."""

    def __init__(self, env: dict[str, str], folder: Path):
        self.env, self.folder = env, folder
        self.workers: list[subprocess.Popen] = []
        self.others: list[subprocess.Popen] = []

    def _start(self, *args: str, log: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks.worker", *args, "--loglevel", "WARNING"],
            env=self.env,
            stdout=open(self.folder / log, "ab"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so SIGKILL reaches the children
        )

    def worker(self) -> subprocess.Popen:
        # Without -Q, as in the Procfile: the queues of CELERY_QUEUE (sends and sweeps).
        process = self._start(
            "worker", "--pool", "prefork", "--concurrency", "2", "--without-gossip",
            "--without-mingle", "--without-heartbeat", log="worker.log",
        )  # fmt: skip
        self.workers.append(process)
        return process

    def sweeper(self) -> subprocess.Popen:
        process = self._start("beat", "--schedule", str(self.folder / "beat"), log="beat.log")
        self.others.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.workers + self.others:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def smtp_port():
    return free_port()


@pytest.fixture
def processes(app, tmp_path, redis_server, smtp_port):
    env = dict(
        os.environ,
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=redis_server.url,
        CELERY_QUEUE=f"faults-{uuid.uuid4().hex[:8]}",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_port),
        SMTP_TIMEOUT="5",
        SEND_BATCH_SIZE="100",
        SEND_FLUSH_EVERY="20",
        SEND_LEASE_SECONDS="4",
        SEND_RETRY_BASE="0.5",
        SEND_REQUEUE_SECONDS="4",
        SWEEP_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("TEST_DATABASE_URL", None)
    running = Processes(env, tmp_path)
    yield running
    running.stop()
    for log in ("worker.log", "beat.log"):
        path = tmp_path / log
        if path.exists() and "Traceback" in path.read_text(errors="replace"):
            print(path.read_text(errors="replace")[-4000:])


def publish() -> int:
    issue_id = db.session.scalar(select(Issue.id))
    publishing.publish_issue(issue_id)
    db.session.commit()  # the sweeper process queues the batches
    return issue_id


def counts(issue_id: int) -> Counter:
    db.session.expire_all()
    return Counter(
        dict(
            db.session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.issue_id == issue_id)
                .group_by(Delivery.status)
            ).all()
        )
    )


def finished(issue_id: int) -> bool:
    now = counts(issue_id)
    return now[DeliveryStatus.PENDING] + now[DeliveryStatus.SENDING] == 0


def audit(issue_id: int, server, addresses: list[str]) -> dict[DeliveryStatus, list[str]]:
    """The never-twice, never-lose checks every fault test ends with."""
    rows = db.session.execute(
        select(Subscriber.email, Delivery.status)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue_id)
    ).all()
    by_status: dict[DeliveryStatus, list[str]] = {}
    for email, status in rows:
        by_status.setdefault(status, []).append(email)
    assert sorted(email for email, _ in rows) == sorted(addresses), "a reader is missing"
    assert {status for _, status in rows} <= FINAL
    for email in by_status.get(DeliveryStatus.SENT, []):
        assert server.count(email) == 1, f"{email} is sent but was received {server.count(email)}x"
    for email in by_status.get(DeliveryStatus.UNKNOWN, []):
        assert server.count(email) <= 1, f"{email} was resent"
    for email in by_status.get(DeliveryStatus.FAILED, []):
        assert server.count(email) == 0

    def marked_sent() -> bool:
        db.session.expire_all()
        return db.session.get(Issue, issue_id).status == IssueStatus.SENT

    # The worker settles the last rows a moment before it marks the issue sent; on a busy
    # machine that moment is long enough for this check to come between the two.
    wait_for(marked_sent, timeout=30, what=f"issue {issue_id} to be marked sent")
    return by_status


def test_a_worker_killed_three_times_mid_send_loses_and_repeats_nobody(
    app, db_session, processes, smtp_port
):
    addresses = add_drill_issue(5000)
    with FaultySmtp(smtp_port) as server:
        processes.sweeper()
        worker = processes.worker()
        issue_id = publish()
        for mark in (1000, 2500, 4000):
            wait_for(lambda m=mark: sum(server.received.values()) >= m, timeout=120,
                     what=f"{mark} messages")  # fmt: skip
            processes.kill_worker(worker)
            worker = processes.worker()
        wait_for(lambda: finished(issue_id), timeout=180, what="the send to finish")
        wait_for(lambda: db.session.get(Issue, issue_id).status == IssueStatus.SENT, timeout=10)
        by_status = audit(issue_id, server, addresses)
    # Each kill can leave unknown, per child process (two per worker), at most the message
    # on the wire and the one answered just before it (its answer not yet in the journal).
    assert len(by_status.get(DeliveryStatus.UNKNOWN, [])) <= 3 * 2 * 2
    assert len(by_status[DeliveryStatus.SENT]) >= 5000 - 12


def test_greylisting_and_a_server_closed_for_thirty_seconds_end_with_everyone_sent(
    app, db_session, processes, smtp_port
):
    addresses = add_drill_issue(1000)
    faults = Faults(greylist=set(addresses[::10]), closed_until=time.monotonic() + 30)
    with FaultySmtp(smtp_port, faults) as server:
        processes.sweeper()
        processes.worker()
        issue_id = publish()
        wait_for(lambda: finished(issue_id), timeout=150, what="the send to finish")
        wait_for(lambda: db.session.get(Issue, issue_id).status == IssueStatus.SENT, timeout=10)
        by_status = audit(issue_id, server, addresses)
        assert time.monotonic() >= faults.closed_until  # nothing got through while closed
    assert sorted(by_status[DeliveryStatus.SENT]) == addresses
    assert all(server.refusals[a] == 1 for a in addresses[::10])  # greylisted once, then taken


def test_hard_bounces_fail_exactly_those_readers_and_suppress_them(
    app, db_session, processes, smtp_port
):
    addresses = add_drill_issue(500)
    rejected, refused_content = set(addresses[1:100:2]), {addresses[200]}
    faults = Faults(reject=rejected, reject_after_data=refused_content)
    with FaultySmtp(smtp_port, faults) as server:
        processes.sweeper()
        processes.worker()
        issue_id = publish()
        wait_for(lambda: finished(issue_id), timeout=60, what="the send to finish")
        by_status = audit(issue_id, server, addresses)
    assert set(by_status[DeliveryStatus.FAILED]) == rejected | refused_content
    assert len(rejected) == 50
    suppressed = set(db.session.scalars(select(Suppression.email_hash)))
    assert suppressed == {email_hash(a) for a in rejected | refused_content}
    bounced = db.session.scalars(
        select(Subscriber.email).where(Subscriber.status == SubscriberStatus.BOUNCED)
    ).all()
    assert set(bounced) == rejected | refused_content


def test_a_connection_dropped_after_data_is_unknown_and_never_resent(
    app, db_session, processes, smtp_port
):
    addresses = add_drill_issue(500)
    dropped = set(addresses[5:500:25])
    with FaultySmtp(smtp_port, Faults(drop_after_data=dropped)) as server:
        processes.sweeper()
        processes.worker()
        issue_id = publish()
        wait_for(lambda: finished(issue_id), timeout=60, what="the send to finish")
        time.sleep(3)  # a few sweeps more: none of them may resend an unknown row
        by_status = audit(issue_id, server, addresses)
    assert len(dropped) == 20
    assert set(by_status[DeliveryStatus.UNKNOWN]) == dropped
    assert all(server.count(a) == 1 for a in dropped)


def test_redis_restarted_empty_mid_send_the_sweeper_finishes_the_send(
    app, db_session, processes, smtp_port, redis_server
):
    addresses = add_drill_issue(3000)
    with FaultySmtp(smtp_port) as server:
        processes.sweeper()
        processes.worker()
        issue_id = publish()
        wait_for(lambda: sum(server.received.values()) >= 800, timeout=60, what="800 messages")
        redis_server.kill()  # every queued task is gone
        redis_server.start()
        wait_for(lambda: finished(issue_id), timeout=150, what="the send to finish")
        wait_for(lambda: db.session.get(Issue, issue_id).status == IssueStatus.SENT, timeout=10)
        audit(issue_id, server, addresses)


def test_publish_pressed_twice_at_the_same_moment_sends_once(app, db_session):
    add_drill_issue(50)
    issue_id = db.session.scalar(select(Issue.id))
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def press() -> None:
        with app.app_context():
            start.wait()
            try:
                planned = publishing.publish_issue(issue_id)
                db.session.commit()
                outcomes.append(f"planned {planned}")
            except publishing.PublishError as exc:
                db.session.rollback()
                outcomes.append(f"{exc.code} {exc.params['status']}")

    threads = [threading.Thread(target=press) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["issue-status sending", "planned 50"]
    total = db.session.scalar(select(func.count()).select_from(Delivery))
    assert total == 50
