"""End-to-end sending throughput: publish the sample issue to N readers and send it through
real Celery worker processes to a real SMTP sink; compare with plain smtplib.

    .venv/bin/python bench/send.py                      # 100,000 readers, 2 workers x 2
    .venv/bin/python bench/send.py --readers 10000 --workers 1 --concurrency 4
    .venv/bin/python bench/send.py --readers 1000000 --plan-only
    .venv/bin/python bench/send.py --readers 20000 --profile bench/out/send.prof

Needs PostgreSQL at BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/
bulletin_bench; the database is created if missing and its schema dropped and rebuilt by the
migrations), `redis-server` and Postfix's `smtp-sink` (`apt-get install postfix`). A private
Redis and smtp-sink are started on free loopback ports and stopped at the end, with the
workers, whatever happens.

The run: import webapp/demo/bulletin-2022-08.md, create N active readers with random
non-empty sets of its four sections (seeded), time `publish_issue` + commit (planning), start
the workers, queue `bulletin.dispatch_issue` and time until no delivery is pending or
sending (rendering the digests is inside that time). The ceiling then sends the same N
messages over the same number of SMTP connections (workers x concurrency), one process each,
with smtplib and no database: one real digest per section set, composed once, sent as many
times as readers chose that set, so both runs put the same bytes on the wire.

The last three lines are `rate: N msg/s`, `ceiling: N msg/s` and `ratio: R`.
`--plan-only` stops after planning and prints the process's peak RSS during planning.
`--profile FILE` runs one `--pool solo` worker under cProfile and prints its top costs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from random import Random

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/bulletin_bench"
SAMPLE = ROOT / "webapp" / "demo" / "bulletin-2022-08.md"
SMTP_SINK = "/usr/sbin/smtp-sink"
MAIL_FROM = "工作简报 <bulletin@example.org>"
ENVELOPE_FROM = "bulletin@example.org"
POLL_SECONDS = 0.1
COUNT_EVERY = 100  # a count reads up to N index entries: every 10 s, not every second


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=100_000, help="active readers (100000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children each (2)")
    parser.add_argument("--batch-size", type=int, default=500, help="SEND_BATCH_SIZE (500)")
    parser.add_argument(
        "--flush-every", type=int, default=None, help="SEND_FLUSH_EVERY (the engine's default)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the readers' sections")
    parser.add_argument(
        "--plan-only", action="store_true", help="create readers and time planning only"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="one --pool solo worker under cProfile, stats to FILE"
    )
    parser.add_argument(
        "--stall", type=float, default=180.0, help="seconds without progress before giving up"
    )
    args = parser.parse_args(argv)
    if args.readers < 1 or args.workers < 1 or args.concurrency < 1 or args.batch_size < 1:
        parser.error("--readers, --workers, --concurrency and --batch-size must be positive")
    if args.profile:
        args.workers = args.concurrency = 1
        Path(args.profile).resolve().parent.mkdir(parents=True, exist_ok=True)
    return args


# --- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.05)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Processes:
    """Everything this bench starts, each in its own process group, stopped in `stop()`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None):
        with open(self.folder / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: Ctrl-C does not reach it, killpg does
            )
        self.started.append((name, process))
        return process

    def check_alive(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode}")

    def terminate(self, process: subprocess.Popen, timeout: float) -> None:
        """SIGTERM to the main process (a warm shutdown for a worker), then SIGKILL."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill(process)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def stop(self) -> None:
        for _, process in reversed(self.started):
            self.kill(process)

    def logs_with_tracebacks(self) -> list[Path]:
        return [
            path
            for path in sorted(self.folder.glob("*.log"))
            if "Traceback" in path.read_text(errors="replace")
        ]


def start_redis(processes: Processes) -> str:
    port = free_port()
    processes.start(
        "redis",
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(processes.folder)],
    )  # fmt: skip
    import redis

    def pings() -> bool:
        try:
            with redis.Redis(port=port, socket_connect_timeout=0.2) as client:
                return client.ping()
        except redis.RedisError:
            processes.check_alive()
            return False

    wait_until(pings, 10, "redis-server to start")
    return f"redis://127.0.0.1:{port}/0"


def start_smtp_sink(processes: Processes) -> int:
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    # Backlog 1024: every connection the workers and the ceiling open is accepted at once.
    processes.start("smtp-sink", [SMTP_SINK, *user, f"127.0.0.1:{port}", "1024"])

    def up() -> bool:
        processes.check_alive()
        return accepts(port)

    wait_until(up, 10, "smtp-sink to start")
    return port


def worker_command(index: int, args: argparse.Namespace, queue: str) -> list[str]:
    """The shipped worker, `celery -A tasks.worker worker`, with the bench's queue and pool."""
    pool = ["--pool", "solo"] if args.profile else ["--pool", "prefork"]
    celery = [
        "-A", "tasks.worker", "worker", *pool,
        "--concurrency", str(args.concurrency), "-Q", queue, "-n", f"bench{index}-{queue}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
    ]  # fmt: skip
    boot = ["-m", "celery"]
    if args.profile:
        return [sys.executable, "-m", "cProfile", "-o", str(Path(args.profile).resolve()), *boot,
                *celery]  # fmt: skip
    return [sys.executable, *boot, *celery]


def wait_for_workers(celery_app, processes: Processes, count: int, timeout: float = 90) -> None:
    """Until every worker answers a broadcast ping (its pool is up by then)."""
    deadline = time.monotonic() + timeout
    while True:
        processes.check_alive()
        replies = celery_app.control.ping(timeout=0.5) or []
        if len(replies) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(replies)} of {count} workers answered a ping")


# --- memory and CPU ------------------------------------------------------------------------


def proc_status_kb(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    """Set this process's VmHWM to its current RSS (Linux >= 4.0); False when refused."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class WorkerSampler:
    """Peak RSS (VmHWM) and CPU time of every process in the workers' process groups."""

    def __init__(self, groups: list[int]):
        self.groups = set(groups)
        self.peaks: dict[int, tuple[int, int]] = {}  # pid -> (group, kB)
        self.ticks: dict[int, int] = {}  # pid -> user + system clock ticks, last seen
        self.baseline = 0

    def sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            group = int(fields[2])
            if group in self.groups:
                pid = int(entry.name)
                kb = proc_status_kb(pid, "VmHWM")
                self.peaks[pid] = (group, max(kb, self.peaks.get(pid, (group, 0))[1]))
                self.ticks[pid] = int(fields[11]) + int(fields[12])

    def start_cpu_clock(self) -> None:
        """CPU spent from now on is the sending's (not the workers' start-up)."""
        self.sample()
        self.baseline = sum(self.ticks.values())

    def cpu_seconds(self) -> float:
        return (sum(self.ticks.values()) - self.baseline) / os.sysconf("SC_CLK_TCK")

    def largest_mb(self) -> float:
        return max((kb for _, kb in self.peaks.values()), default=0) / 1024

    def per_worker_mb(self) -> float:
        totals: dict[int, int] = {}
        for group, kb in self.peaks.values():
            totals[group] = totals.get(group, 0) + kb
        return max(totals.values(), default=0) / 1024


def cpu_ticks(pids) -> dict[int, int]:
    """User + system clock ticks of each of these processes that this host shows."""
    ticks = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- database ------------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit(f"bench/send.py: BENCH_DATABASE_URL must be PostgreSQL, got {url}")
    if parsed.database in (None, "", "postgres", "test", "template0", "template1"):
        raise SystemExit(f"bench/send.py: refusing to rebuild database {parsed.database!r}")
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)
        ).fetchone()
        if not found:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parsed.database)))


def use_database(database_url: str, **settings: str) -> None:
    """Point the app this process creates at a bench database: a development deployment
    (the site's defaults, no production checks), whatever the shell says about the tests'
    database. `settings` add to or override the environment."""
    os.environ.update(
        {
            "BULLETIN_ENV": "development",
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench-secret-key-not-for-production",
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            **settings,
        }
    )
    os.environ.pop("TEST_DATABASE_URL", None)


def reset_schema() -> None:
    import logging

    from flask_migrate import upgrade
    from sqlalchemy import text

    from webapp.extensions import db

    db.session.remove()
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    logging.disable(logging.INFO)  # Alembic's "Running upgrade ..." lines
    try:
        upgrade()
    finally:
        logging.disable(logging.NOTSET)


def load_issue() -> tuple[int, list[int]]:
    from webapp.extensions import db
    from webapp.issues import import_document, issue_topic_ids

    issue, _ = import_document(SAMPLE.read_bytes())
    db.session.commit()
    return issue.id, sorted(issue_topic_ids(issue.id))


def reader_email(n: int) -> str:
    return f"reader{n:07d}@example.com"


def reader_name(n: int) -> str:
    return f"读者{n}" if n % 2 else ""  # half with a (non-ASCII) name, half without


def create_readers(count: int, topic_ids: list[int], seed: int) -> bytearray:
    """`count` active readers with ids 1..count, copied in; returns each one's section mask.

    Bit j of masks[id] means the reader chose topic_ids[j]; every mask is non-empty.
    """
    from sqlalchemy import text

    from webapp.extensions import db
    from webapp.models import new_link_key

    rng = Random(seed)
    top = (1 << len(topic_ids)) - 1
    masks = bytearray(count + 1)
    for n in range(1, count + 1):
        masks[n] = rng.randint(1, top)
    now = datetime.now(UTC).isoformat()
    chunk = 20_000
    raw = db.session.connection().connection.driver_connection  # psycopg, same transaction
    with raw.cursor() as cursor:
        with cursor.copy(
            "COPY subscribers (id, email, name, status, locale, created_at, updated_at,"
            " confirmed_at, consented_at, consent_source, consent_method, soft_bounces, link_key)"
            " FROM STDIN"
        ) as copy:
            for start in range(1, count + 1, chunk):
                copy.write(
                    "".join(
                        f"{n}\t{reader_email(n)}\t{reader_name(n)}\tactive\tzh\t{now}\t{now}"
                        f"\t{now}\t{now}\tbench\timported-consented\t0\t{new_link_key()}\n"
                        for n in range(start, min(start + chunk, count + 1))
                    )
                )
        with cursor.copy("COPY subscriber_topics (subscriber_id, topic_id) FROM STDIN") as copy:
            for start in range(1, count + 1, chunk):
                copy.write(
                    "".join(
                        f"{n}\t{topic}\n"
                        for n in range(start, min(start + chunk, count + 1))
                        for j, topic in enumerate(topic_ids)
                        if masks[n] >> j & 1
                    )
                )
    db.session.execute(
        text("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), :n)"), {"n": count}
    )
    db.session.commit()
    # Statistics as autovacuum would have them on a list this size.
    db.session.execute(text("ANALYZE subscribers, subscriber_topics"))
    db.session.commit()
    return masks


def delivery_counts(issue_id: int) -> dict[str, int]:
    from webapp import publishing

    return publishing.progress(issue_id)


def database_backends() -> list[int]:
    """Server pids of the sessions on this database (their CPU is readable if it is local)."""
    from sqlalchemy import text

    from webapp.extensions import db

    with db.engine.connect() as conn:
        return list(
            conn.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend'"
                )
            )
        )


def issue_status(issue_id: int):
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Issue

    with db.engine.connect() as conn:
        return conn.scalar(select(Issue.status).where(Issue.id == issue_id))


def open_rows(issue_id: int) -> int:
    from sqlalchemy import func, select

    from webapp import publishing
    from webapp.extensions import db
    from webapp.models import Delivery

    with db.engine.connect() as conn:  # no session transaction held open between polls
        return conn.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.issue_id == issue_id, Delivery.status.in_(publishing.OPEN_STATUSES))
        )


def sent_window(issue_id: int) -> tuple[datetime | None, datetime | None]:
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import Delivery

    row = db.session.execute(
        select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
            Delivery.issue_id == issue_id
        )
    ).one()
    db.session.commit()
    return row[0], row[1]


def rendered_digests(issue_id: int) -> int:
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import RenderedDigest

    count = db.session.scalar(
        select(func.count()).select_from(RenderedDigest).where(RenderedDigest.issue_id == issue_id)
    )
    db.session.commit()
    return count


# --- the ceiling ---------------------------------------------------------------------------


def ceiling_messages(issue_id: int, topic_ids: list[int], masks: bytearray) -> dict[int, bytes]:
    """One real digest per section set that readers chose, composed for its first reader."""
    from webapp.digests import Recipient, compose

    messages = {}
    for mask in sorted(set(masks[1:])):
        n = masks.index(mask, 1)
        chosen = frozenset(t for j, t in enumerate(topic_ids) if mask >> j & 1)
        reader = Recipient(0, n, reader_email(n), reader_name(n), "zh", True)
        messages[mask] = compose(issue_id, reader, chosen)[1]
    return messages


def _ceiling_sender(index, procs, count, masks, messages, port, barrier) -> None:
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=60)
    smtp.ehlo()
    barrier.wait()
    for n in range(1 + index, count + 1, procs):
        # What SmtpSession.send does per message: MAIL, RCPT, DATA on a kept connection.
        code, reply = smtp.mail(ENVELOPE_FROM)
        if code == 250:
            code, reply = smtp.rcpt(reader_email(n))
        if code == 250:
            code, reply = smtp.data(messages[masks[n]])
        if code != 250:
            raise RuntimeError(f"smtp-sink answered {code} {reply!r}")
    smtp.quit()


def measure_ceiling(procs: int, count: int, masks, messages, port: int) -> float:
    """Seconds for `procs` processes, one connection each, to send `count` messages.

    Spawned, not forked: a fork would inherit this process's Redis and database sockets
    (kombu's after-fork hook even talks on them), and the senders need none of it.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(procs + 1)
    senders = [
        context.Process(
            target=_ceiling_sender, args=(i, procs, count, masks, messages, port, barrier)
        )
        for i in range(procs)
    ]
    for sender in senders:
        sender.start()
    try:
        barrier.wait(timeout=30)  # all connected and greeted
        start = time.perf_counter()
        for sender in senders:
            sender.join()
        elapsed = time.perf_counter() - start
    finally:
        for sender in senders:
            if sender.is_alive():
                sender.kill()
                sender.join()
    if any(sender.exitcode for sender in senders):
        raise RuntimeError("a ceiling sender failed (see its traceback above)")
    return elapsed


# --- the profile ---------------------------------------------------------------------------


def print_profile(path: str, top: int = 25) -> None:
    import pstats

    stats = pstats.Stats(path)
    total = stats.total_tt
    rows = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():
        rows.append((file, line, name, calls, tottime, cumtime))

    def label(file: str, line: int, name: str) -> str:
        try:
            file = str(Path(file).resolve().relative_to(ROOT))
        except ValueError:
            parts = Path(file).parts
            file = "/".join(parts[-2:]) if len(parts) > 1 else file
        return f"{file}:{line}:{name}"

    print(f"profile of the worker ({path}): {total:.1f} s inside it (wall clock, waits included)")
    print(f"top {top} by own time:")
    for file, line, name, calls, tottime, cumtime in sorted(rows, key=lambda r: -r[4])[:top]:
        print(
            f"  {tottime:7.2f} s {tottime / total:6.1%} {cumtime:7.2f} cum {calls:>9}x "
            f"{label(file, line, name)}"
        )
    print(f"top {top} project functions by cumulative time:")
    ours = [r for r in rows if r[0].startswith((str(ROOT / "webapp"), str(ROOT / "tasks")))]
    for file, line, name, calls, _tottime, cumtime in sorted(ours, key=lambda r: -r[5])[:top]:
        print(f"  {cumtime:7.2f} s {cumtime / total:6.1%} {calls:>9}x {label(file, line, name)}")


# --- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace, processes: Processes) -> int:
    database_url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE
    ensure_database(database_url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    settings = {
        "BULLETIN_ENV": "development",
        "DATABASE_URL": database_url,
        "CELERY_QUEUE": queue,
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "MAIL_FROM": MAIL_FROM,
        "BASE_URL": "https://bulletin.example.org",
        "SEND_BATCH_SIZE": str(args.batch_size),
        "SEND_RATE": "0",
        "PYTHONUNBUFFERED": "1",
    }
    if args.flush_every:
        settings["SEND_FLUSH_EVERY"] = str(args.flush_every)
    if not args.plan_only:
        settings["REDIS_URL"] = start_redis(processes)
        smtp_port = start_smtp_sink(processes)
        settings.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
    os.environ.update(settings)  # this process builds the very app the workers build
    os.environ.pop("TEST_DATABASE_URL", None)

    from webapp import create_app, publishing
    from webapp.extensions import db
    from webapp.models import IssueStatus

    # The bench publishes its own issue: it measures sending, not the review step.
    app = create_app({"REVIEW_REQUIRED": False})
    with app.app_context():
        reset_schema()
        issue_id, topic_ids = load_issue()
        start = time.perf_counter()
        masks = create_readers(args.readers, topic_ids, args.seed)
        created = time.perf_counter() - start
        print(
            f"readers: {args.readers:,} active, random non-empty sets of {len(topic_ids)} "
            f"sections (seed {args.seed}), {len(set(masks[1:]))} distinct sets; "
            f"copied in {created:.1f} s"
        )

        db.session.remove()
        rss_before = proc_status_kb("self", "VmRSS")
        exact = reset_peak_rss()
        start = time.perf_counter()
        planned = publishing.publish_issue(issue_id)
        db.session.commit()
        planning = time.perf_counter() - start
        peak = proc_status_kb("self", "VmHWM")
        print(f"planning: {planned:,} deliveries in {planning:.2f} s (publish_issue + commit)")
        since = "during planning" if exact else "since start (could not reset VmHWM)"
        print(
            f"bench process memory: RSS {rss_before / 1024:.0f} MB before planning, "
            f"peak {peak / 1024:.0f} MB {since}"
        )
        if args.plan_only:
            return 0

        config = app.config
        celery_app = app.extensions["celery"]
        pool = "solo under cProfile" if args.profile else "prefork"
        print(
            f"layout: {args.workers} worker(s) x {args.concurrency} ({pool}), "
            f"SEND_BATCH_SIZE {config['SEND_BATCH_SIZE']}, "
            f"SEND_FLUSH_EVERY {config['SEND_FLUSH_EVERY']}"
        )
        workers = [
            processes.start(f"worker{i}", worker_command(i, args, queue), dict(os.environ))
            for i in range(args.workers)
        ]
        sampler = WorkerSampler([w.pid for w in workers])
        wait_for_workers(celery_app, processes, args.workers)
        sampler.start_cpu_clock()
        backends = cpu_ticks(database_backends())
        services = {name: p.pid for name, p in processes.started if name in ("smtp-sink", "redis")}
        services_before = cpu_ticks(services.values())

        wall_start = time.time()
        start = time.perf_counter()
        celery_app.send_task("bulletin.dispatch_issue", args=[issue_id], queue=queue)
        # Each poll asks only for the issue's status (one row): the engine marks it sent when
        # no delivery is pending or sending. Counting the open rows (an index scan over up to
        # N entries) is done every COUNT_EVERY polls, for progress, and to confirm the end.
        left, last_change, polls = planned, time.monotonic(), 0
        while True:
            time.sleep(POLL_SECONDS)
            polls += 1
            finished = issue_status(issue_id) == IssueStatus.SENT
            if finished or polls % COUNT_EVERY == 0:
                now_left = open_rows(issue_id)
                if finished and not now_left:
                    break
                if now_left != left:
                    left, last_change = now_left, time.monotonic()
                elif time.monotonic() - last_change > args.stall:
                    raise RuntimeError(f"no progress for {args.stall:.0f} s, {left:,} rows open")
                processes.check_alive()
                sampler.sample()
        elapsed = time.perf_counter() - start
        sampler.sample()
        backends_now = cpu_ticks(database_backends())
        database_cpu = sum(t - backends.get(pid, 0) for pid, t in backends_now.items())
        database_cpu /= os.sysconf("SC_CLK_TCK")
        services_after = cpu_ticks(services.values())
        service_cpu = {
            name: (services_after.get(pid, 0) - services_before.get(pid, 0))
            / os.sysconf("SC_CLK_TCK")
            for name, pid in services.items()
        }

        if args.profile:  # a warm shutdown, so that cProfile writes its file
            processes.terminate(workers[0], timeout=60)

        counts = delivery_counts(issue_id)
        first, last = sent_window(issue_id)
        digests = rendered_digests(issue_id)
        sent = counts["sent"]
        ok = sent == planned == args.readers
        print(f"digests rendered: {digests}")
        print(f"elapsed: {elapsed:.1f} s from queueing dispatch_issue to no row pending/sending")
        if first and last and last > first:
            print(
                f"  first answers recorded after {first.timestamp() - wall_start:.1f} s "
                f"(rendering + first flush); {sent / (last - first).total_seconds():,.0f} msg/s "
                f"from first to last recorded answer"
            )
        listed = ", ".join(f"{status} {n:,}" for status, n in counts.items())
        print(f"counts: {listed}: {'OK, all sent' if ok else 'NOT all sent'}")
        print(
            f"peak worker memory: {sampler.largest_mb():.0f} MB per process (largest), "
            f"{sampler.per_worker_mb():.0f} MB per worker (main + children)"
        )
        # On a CPU-bound host (the usual case for one machine running everything), the rate
        # follows from what each message costs in CPU, whatever else the host is doing.
        cpu = {"workers": sampler.cpu_seconds(), "PostgreSQL": database_cpu, **service_cpu}
        if not backends_now:
            del cpu["PostgreSQL"]  # a remote server: its CPU is not visible from here
        listed = ", ".join(f"{name} {seconds / sent * 1000:.2f}" for name, seconds in cpu.items())
        total_ms = sum(cpu.values()) / sent * 1000
        print(
            f"CPU per message: {listed}; total {total_ms:.2f} ms -> at most "
            f"{(os.cpu_count() or 1) / total_ms * 1000:,.0f} msg/s on this host's "
            f"{os.cpu_count()} CPUs"
        )

        messages = ceiling_messages(issue_id, topic_ids, masks)
        db.session.remove()

    connections = args.workers * args.concurrency
    average = sum(len(messages[masks[n]]) for n in range(1, args.readers + 1)) / args.readers
    sink = [services["smtp-sink"]]
    cpu_before, sink_before = children_cpu_seconds(), cpu_ticks(sink)
    ceiling_seconds = measure_ceiling(connections, args.readers, masks, messages, smtp_port)
    ceiling_cpu = children_cpu_seconds() - cpu_before
    sink_cpu = sum(cpu_ticks(sink).values()) - sum(sink_before.values())
    sink_cpu /= os.sysconf("SC_CLK_TCK")
    print(
        f"ceiling: {args.readers:,} messages ({len(messages)} digests, {average / 1024:.0f} KB "
        f"on average) over {connections} smtplib connection(s), one process each, no "
        f"database: {ceiling_seconds:.1f} s; CPU per message: senders "
        f"{ceiling_cpu / args.readers * 1000:.2f}, "
        f"smtp-sink {sink_cpu / args.readers * 1000:.2f} ms"
    )
    if args.profile:
        print_profile(args.profile)

    rate = sent / elapsed
    ceiling = args.readers / ceiling_seconds
    print(f"rate: {rate:.0f} msg/s")
    print(f"ceiling: {ceiling:.0f} msg/s")
    print(f"ratio: {rate / ceiling:.2f}")
    return 0 if ok else 1


def main() -> int:
    args = parse_args()
    if not args.plan_only:
        if not Path(SMTP_SINK).exists():
            raise SystemExit(
                "bench/send.py: smtp-sink not found: apt-get install postfix (then: postfix stop)"
            )
        if shutil.which("redis-server") is None:
            raise SystemExit("bench/send.py: redis-server not found: apt-get install redis-server")
    # Ctrl-C (even when started in the background, where SIGINT comes ignored) and SIGTERM
    # end the run through the finally below, which stops everything this bench started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = Path(tempfile.mkdtemp(prefix="bulletin-bench-"))
    processes = Processes(folder)
    failed = True
    try:
        status = run(args, processes)
        failed = status != 0
        return status
    finally:
        processes.stop()
        broken = processes.logs_with_tracebacks()
        for path in broken:
            print(f"--- {path.name} (last 3000 characters)", file=sys.stderr)
            print(path.read_text(errors="replace")[-3000:], file=sys.stderr)
        if failed or broken:
            print(f"logs kept in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
