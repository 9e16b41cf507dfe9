"""Exactly once under SIGKILL and stalls, run after run: duplicates and lost per run.

    .venv/bin/python bench/faults.py                 # 10 runs, 10,000 readers, PostgreSQL
    .venv/bin/python bench/faults.py --runs 3 --sqlite
    .venv/bin/python bench/faults.py --lease 20 --sweep 3   # the settings of issue 11

Each run rebuilds the schema (PostgreSQL at FAULTS_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/bulletin_faults, created if missing; or a SQLite file
of its own with --sqlite), empties a private redis-server, creates N readers of one section
and publishes an issue to them, then sends it through a real `celery -A tasks.worker worker
--concurrency 2` and a real `celery beat` that sweeps every --sweep seconds, with
SEND_RATE=250, SEND_BATCH_SIZE=100, SEND_REQUEUE_SECONDS=5, SEND_RETRY_BASE=1 and leases of
--lease seconds. The SMTP sink (aiosmtpd, in this process) counts and logs every accepted
recipient. On a schedule from the first message accepted (with the default 6 s lease): one
prefork child stopped (SIGSTOP) at 3 s for its lease + 8 s, so that its rows are swept and
sent by others before it goes on; both children SIGKILLed at 20 s and 25 s; the whole worker
SIGKILLed at 30 s and started again at 32 s; both children SIGKILLed at 38 s.

Per run it prints the rows by status and `duplicates` (readers the sink accepted more than
once) and `lost` (readers whose row is not final, or `sent` but never accepted); `unknown`
rows (on the wire when their worker died) are counted apart, with how many of them the sink
accepted. Exits 1 if any run had a duplicate or a lost reader.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from send import Processes, ensure_database, free_port, start_redis, wait_until  # noqa: E402

from tests.helpers import add_drill_issue  # noqa: E402

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/bulletin_faults"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs in a row (10)")
    parser.add_argument("--readers", type=int, default=10000, help="readers per run (10000)")
    parser.add_argument("--lease", type=int, default=6, help="SEND_LEASE_SECONDS (6)")
    parser.add_argument("--sweep", type=float, default=1.0, help="SWEEP_SECONDS (1)")
    parser.add_argument("--rate", type=float, default=250.0, help="SEND_RATE (250)")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file, not PostgreSQL")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run (300)")
    return parser.parse_args()


class Sink:
    """aiosmtpd that accepts everything, counting and logging each accepted recipient."""

    def __init__(self, log: Path):
        self.received: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.log = open(log, "a", buffering=1)  # noqa: SIM115 (closed with the bench)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        with self.lock:
            for address in envelope.rcpt_tos:
                self.received[address.lower()] += 1
                self.log.write(f"{time.time():.3f} {address.lower()}\n")
        return "250 2.0.0 OK queued"

    def reset(self) -> None:
        with self.lock:
            self.received = Counter()
            self.log.write("--- run\n")


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (the prefork children of a worker)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def signal_children(worker, sig: int, count: int = 2) -> int:
    hit = 0
    for pid in children(worker.pid)[:count]:
        try:
            os.kill(pid, sig)
            hit += 1
        except ProcessLookupError:
            pass
    return hit


def reset_schema(sqlite: bool) -> None:
    import logging

    from flask_migrate import upgrade
    from sqlalchemy import text

    from webapp.extensions import db

    db.session.remove()
    if sqlite:
        db.drop_all()
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    else:
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    logging.disable(logging.INFO)  # Alembic's "Running upgrade ..." lines
    try:
        upgrade()
    finally:
        logging.disable(logging.NOTSET)


def plan_issue(readers: int) -> tuple[int, list[str]]:
    from sqlalchemy import func, select

    from webapp import publishing
    from webapp.extensions import db
    from webapp.models import Issue

    addresses = add_drill_issue(readers)
    issue_id = db.session.scalar(select(func.max(Issue.id)))
    publishing.publish_issue(issue_id)
    db.session.commit()
    return issue_id, addresses


def rows_by_status(issue_id: int) -> dict[str, list[str]]:
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Delivery, Subscriber

    db.session.remove()
    found: dict[str, list[str]] = {}
    for email, status in db.session.execute(
        select(Subscriber.email, Delivery.status)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue_id)
    ):
        found.setdefault(status.value, []).append(email)
    db.session.remove()
    return found


def one_run(number, args, app, processes, sink, redis_url) -> tuple[int, int]:
    import redis

    from webapp.extensions import db
    from webapp.models import Issue, IssueStatus

    redis.Redis.from_url(redis_url).flushall()
    sink.reset()
    with app.app_context():
        reset_schema(args.sqlite)
        issue_id, addresses = plan_issue(args.readers)
    beat = processes.start(
        f"beat{number}",
        [sys.executable, "-m", "celery", "-A", "tasks.worker", "beat", "--loglevel", "WARNING",
         "--schedule", str(processes.folder / f"beat{number}")],
    )  # fmt: skip
    worker_args = [
        sys.executable, "-m", "celery", "-A", "tasks.worker", "worker", "--pool", "prefork",
        "--concurrency", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--loglevel", "WARNING",
    ]  # fmt: skip
    worker = processes.start(f"worker{number}", worker_args)
    with app.app_context():
        app.extensions["celery"].send_task("bulletin.dispatch_issue", args=[issue_id])
    # The schedule counts from the first message accepted, not from the workers' start-up.
    wait_until(lambda: sink.received, 120, "the first message")
    start = time.monotonic()
    schedule = [
        (3, "stop a child"), (11 + args.lease, "continue it"), (14 + args.lease, "kill children"),
        (19 + args.lease, "kill children"), (24 + args.lease, "kill worker"),
        (26 + args.lease, "start worker"), (32 + args.lease, "kill children"),
    ]  # fmt: skip
    stopped: list[int] = []
    events = []

    def finished() -> bool:
        with app.app_context():
            status = db.session.scalar(
                db.select(Issue.status).where(Issue.id == issue_id)
            )  # fmt: skip
            db.session.remove()
        return status == IssueStatus.SENT

    deadline = start + args.timeout
    while time.monotonic() < deadline:
        now = time.monotonic() - start
        while schedule and schedule[0][0] <= now:
            _, action = schedule.pop(0)
            if action in ("kill children", "stop a child") and not children(worker.pid):
                # A worker (re)starting has no children yet: this step waits for them.
                schedule = [(at + 1, later) for at, later in [(now, action), *schedule]]
                break
            if action == "kill children":
                events.append(f"{action} ({signal_children(worker, signal.SIGKILL)})")
            elif action == "kill worker":
                processes.kill(worker)
                events.append(action)
            elif action == "start worker":
                worker = processes.start(f"worker{number}", worker_args)
                events.append(action)
            elif action == "stop a child":
                stopped = children(worker.pid)[:1]
                for pid in stopped:
                    os.kill(pid, signal.SIGSTOP)
                events.append(f"{action} ({len(stopped)})")
            elif action == "continue it":
                for pid in stopped:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
                events.append(action)
        if worker.poll() is not None and not (events and events[-1] == "kill worker"):
            # Children killed while starting make Celery give up ("Could not start worker
            # processes"); a process manager would start it again, and so does this.
            worker = processes.start(f"worker{number}", worker_args)
            events.append("worker exited, started again")
        if not schedule and finished():
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - start
    time.sleep(args.sweep * 3)  # a few sweeps more: none may resend anything
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    processes.kill(worker)
    processes.kill(beat)

    with app.app_context():
        by_status = rows_by_status(issue_id)
    received = sink.received
    duplicates = sum(1 for count in received.values() if count > 1)
    open_rows = len(by_status.get("pending", [])) + len(by_status.get("sending", []))
    sent_not_received = sum(1 for a in by_status.get("sent", []) if received[a] == 0)
    missing = len(addresses) - sum(len(v) for v in by_status.values())
    lost = open_rows + sent_not_received + missing
    unknown = by_status.get("unknown", [])
    counts = ", ".join(f"{status} {len(emails)}" for status, emails in sorted(by_status.items()))
    print(
        f"run {number}: {counts}; unknown received {sum(received[a] for a in unknown)}; "
        f"duplicates {duplicates}, lost {lost}; {elapsed:.0f} s; {', '.join(events)}",
        flush=True,
    )
    return duplicates, lost


def main() -> int:
    args = parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bulletin-faults-"))
    processes = Processes(folder)
    try:
        from aiosmtpd.controller import Controller

        if args.sqlite:
            database_url = f"sqlite:///{folder / 'faults.db'}"
        else:
            database_url = os.environ.get("FAULTS_DATABASE_URL") or DEFAULT_DATABASE
            ensure_database(database_url)
        sink = Sink(folder / "sink.log")
        smtp_port = free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        redis_url = start_redis(processes)
        settings = {
            "BULLETIN_ENV": "development",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CELERY_QUEUE": f"faults-{uuid.uuid4().hex[:8]}",
            "SECRET_KEY": "bench-secret-key-not-for-production",
            "MAIL_FROM": "工作简报 <bulletin@example.org>",
            "BASE_URL": "https://bulletin.example.org",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_TIMEOUT": "5",
            "SEND_RATE": str(args.rate),
            "SEND_BATCH_SIZE": "100",
            "SEND_LEASE_SECONDS": str(args.lease),
            "SWEEP_SECONDS": str(args.sweep),
            # The bench publishes its own issue: it measures sending, not the review step.
            "REVIEW_REQUIRED": "false",
            "SEND_REQUEUE_SECONDS": "5",
            "SEND_RETRY_BASE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(settings)  # this process builds the very app the workers build
        os.environ.pop("TEST_DATABASE_URL", None)
        from webapp import create_app

        app = create_app()
        print(
            f"{args.runs} runs of {args.readers:,} readers on "
            f"{'SQLite' if args.sqlite else 'PostgreSQL'}: SEND_RATE {args.rate:g}, "
            f"SEND_LEASE_SECONDS {args.lease}, SWEEP_SECONDS {args.sweep:g}, logs in {folder}",
            flush=True,
        )
        totals = [0, 0]
        for number in range(1, args.runs + 1):
            duplicates, lost = one_run(number, args, app, processes, sink, redis_url)
            totals[0] += duplicates
            totals[1] += lost
        print(f"total: duplicates {totals[0]}, lost {totals[1]} in {args.runs} runs")
        controller.stop()
        return 1 if any(totals) else 0
    finally:
        processes.stop()


if __name__ == "__main__":
    sys.exit(main())
