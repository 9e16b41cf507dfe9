"""Counted links and the readership report, measured.

    .venv/bin/python bench/clicks.py                       # 1,000,000 readers, 10,000,000 clicks
    .venv/bin/python bench/clicks.py --readers 100000 --clicks 1000000 --duration 10
    .venv/bin/python bench/clicks.py --reuse            # the data the last run left

1. The report: N active readers (random sets of the sample's four sections) in a PostgreSQL
   database of its own (BENCH_CLICKS_DATABASE_URL, default postgresql://postgres@127.0.0.1:
   5432/bulletin_bench_clicks; created if missing, its schema rebuilt by the migrations),
   the sample issue published to them (which records each section's recipients), then
   `--clicks` counted clicks as the sweeper's flush leaves them in `read_counts` (one row per
   article, link kind and hour over 7 days), and unsubscribe events in the week after. Times
   the staff report page and its CSV, rendered in-process (median and worst of 20).
2. The redirect: gunicorn as the Procfile's `web` line starts it serving /r/<token> for
   one article, with Redis private to this run; `wrk` (Debian package `wrk`) with 50
   connections for `--duration` seconds, first alone, then while 2 Celery workers x 2 send
   the issue to Postfix's smtp-sink (under `nice -n 10`, as the Procfile runs them).
   Prints requests/s, p50 and p99 and the web workers' CPU per request, then flushes the
   counters and checks that the database holds exactly what gunicorn counted.

The machine is shared: other processes' load shows in every figure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from random import Random

from honcho.environ import parse_procfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from send import (  # noqa: E402  (the send bench's services and data, reused)
    MAIL_FROM,
    Processes,
    accepts,
    cpu_ticks,
    create_readers,
    ensure_database,
    free_port,
    load_issue,
    reset_schema,
    start_redis,
    start_smtp_sink,
    wait_for_workers,
    wait_until,
    worker_command,
)

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/bulletin_bench_clicks"
DAYS = 7


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=1_000_000, help="active readers")
    parser.add_argument("--clicks", type=int, default=10_000_000, help="counted clicks")
    parser.add_argument("--duration", type=int, default=15, help="seconds of wrk per run (15)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--no-send", action="store_true", help="skip the run during a send")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the data the last run left in the database (it takes "
                             "minutes to build); the send goes on where it stopped")  # fmt: skip
    # What worker_command() reads (the send bench's defaults).
    parser.add_argument("--workers", type=int, default=2, help="Celery workers during the send")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children each")
    parser.add_argument("--worker-nice", type=int, default=10,
                        help="run the Celery workers under nice -n N (10, as the Procfile "
                             "does; 0 to see a send take CPU from the clicks)")  # fmt: skip
    parser.set_defaults(profile=None)
    return parser.parse_args(argv)


def add_clicks(issue_id: int, total: int, published_at, seed: int = 2) -> int:
    """`total` counted clicks as read_counts rows (article x kind x hour), plus page views and
    filtered requests; returns the number of rows."""
    from sqlalchemy import insert, select

    from webapp.extensions import db
    from webapp.models import Article, ReadCount

    rng = Random(seed)
    articles = list(db.session.scalars(select(Article.id).where(Article.issue_id == issue_id)))
    hours = [published_at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=h)
             for h in range(DAYS * 24)]  # fmt: skip
    cells = [(a, kind, h) for a in articles for kind in ("web", "source") for h in hours]
    weights = [rng.random() for _ in cells]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    counts[0] += total - sum(counts)  # exactly `total`
    rows = [
        {"issue_id": issue_id, "article_id": a, "kind": kind, "hour": h, "counted": n,
         "filtered": n // 20}
        for (a, kind, h), n in zip(cells, counts, strict=True)
    ] + [
        {"issue_id": issue_id, "article_id": a, "kind": "page", "hour": h,
         "counted": rng.randint(0, 500), "filtered": rng.randint(0, 20)}
        for a in [0, *articles] for h in hours
    ]  # fmt: skip
    for start in range(0, len(rows), 1000):
        db.session.execute(insert(ReadCount), rows[start : start + 1000])
    db.session.commit()
    return len(rows)


def add_unsubscribes(readers: int, topic_ids: list[int], published_at, seed: int = 3) -> int:
    """Readers stopping a section (1%) or leaving (0.5%) in the week after the issue: their
    events, and the hourly counts of departures that subscriptions.log_event keeps (a
    reader who leaves counts for each section they have)."""
    import json
    from collections import Counter

    from sqlalchemy import insert, select

    from webapp.extensions import db
    from webapp.models import SectionDepartures, SubscriberEvent, subscriber_topics
    from webapp.readership import LEFT_ALTOGETHER

    rng = Random(seed)

    def when():
        return published_at + timedelta(seconds=rng.randint(0, DAYS * 86400))

    rows = [
        {"subscriber_id": n, "kind": "topics_changed", "source": "email-link",
         "detail": json.dumps({"added": [], "removed": [rng.choice(topic_ids)]}),
         "created_at": when()}
        for n in rng.sample(range(1, readers + 1), readers // 100)
    ] + [
        {"subscriber_id": n, "kind": "unsubscribed", "source": "one-click", "detail": "",
         "created_at": when()}
        for n in rng.sample(range(1, readers + 1), readers // 200)
    ]  # fmt: skip
    for start in range(0, len(rows), 5000):
        db.session.execute(insert(SubscriberEvent), rows[start : start + 5000])

    def hour(row):
        return row["created_at"].replace(minute=0, second=0, microsecond=0)

    departures: Counter = Counter()
    left = {}
    for row in rows:
        if row["kind"] == "topics_changed":
            departures[(json.loads(row["detail"])["removed"][0], hour(row))] += 1
        else:
            departures[(LEFT_ALTOGETHER, hour(row))] += 1
            left[row["subscriber_id"]] = hour(row)
    ids = list(left)
    for start in range(0, len(ids), 5000):
        for subscriber_id, topic_id in db.session.execute(
            select(subscriber_topics.c.subscriber_id, subscriber_topics.c.topic_id).where(
                subscriber_topics.c.subscriber_id.in_(ids[start : start + 5000])
            )
        ):
            departures[(topic_id, left[subscriber_id])] += 1
    db.session.execute(
        insert(SectionDepartures),
        [{"topic_id": t, "hour": h, "readers": n} for (t, h), n in departures.items()],
    )
    db.session.commit()
    return len(rows)


def build_data(args: argparse.Namespace) -> int:
    """The readers, the published issue, its clicks and the week's unsubscribes; returns
    the issue's id."""
    from webapp import publishing, readership
    from webapp.extensions import db
    from webapp.models import Issue

    reset_schema()
    issue_id, topic_ids = load_issue()
    start = time.perf_counter()
    create_readers(args.readers, topic_ids, seed=1)
    print(f"readers: {args.readers:,} copied in {time.perf_counter() - start:.1f} s")
    db.session.remove()
    start = time.perf_counter()
    planned = publishing.publish_issue(issue_id)
    db.session.commit()
    print(f"publishing: {planned:,} deliveries planned in {time.perf_counter() - start:.1f} s"
          " (publish_issue + commit, recipients per section included)")  # fmt: skip
    start = time.perf_counter()
    db.session.execute(readership.recipients_query(issue_id, set(topic_ids))).all()
    print(f"  of which recipients per section (the same GROUP BY alone): "
          f"{time.perf_counter() - start:.2f} s")  # fmt: skip
    published_at = db.session.get(Issue, issue_id).published_at
    rows = add_clicks(issue_id, args.clicks, published_at)
    events = add_unsubscribes(args.readers, topic_ids, published_at)
    db.session.execute(db.text("ANALYZE"))
    db.session.commit()
    print(f"bench data: {args.clicks:,} counted clicks in {rows:,} read_counts rows, "
          f"{events:,} unsubscribe events in the week after")  # fmt: skip
    return issue_id


def time_page(client, url: str, runs: int = 20) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.status_code
    return statistics.median(times), max(times)


def worker_pids(master: int) -> list[int]:
    """Gunicorn's worker processes: the children of its master."""
    path = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def cpu_seconds(pids: list[int]) -> float:
    ticks = cpu_ticks(pids)
    return sum(ticks.values()) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, connections: int, duration: int, web: list[int]) -> dict[str, str]:
    before = cpu_seconds(web)
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    figures = {
        "rate": re.search(r"Requests/sec:\s+([\d.]+)", out).group(1),
        "requests": re.search(r"(\d+) requests in", out).group(1),
        "p50": re.search(r"\s50%\s+(\S+)", out).group(1),
        "p99": re.search(r"\s99%\s+(\S+)", out).group(1),
    }
    non_3xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    # CPU the web workers spent per answered request: the rate a machine with that CPU
    # free for them would reach, whatever else this one is running.
    spent = cpu_seconds(web) - before
    figures["cpu_ms"] = f"{spent * 1000 / max(1, int(figures['requests'])):.2f}"
    figures["bad"] = non_3xx.group(1) if non_3xx else "0"
    figures["errors"] = errors.group(1) if errors else "none"
    return figures


def sent_count(issue_id: int) -> int:
    from sqlalchemy import func, select

    from webapp.extensions import db
    from webapp.models import Delivery, DeliveryStatus

    db.session.remove()
    return db.session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.SENT)
    )


def run(args: argparse.Namespace, processes: Processes) -> int:
    if not shutil.which("wrk"):
        raise SystemExit("bench/clicks.py: wrk is not installed (apt-get install wrk)")
    database_url = os.environ.get("BENCH_CLICKS_DATABASE_URL") or DEFAULT_DATABASE
    ensure_database(database_url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    settings = {
        "BULLETIN_ENV": "production",
        "DATABASE_URL": database_url,
        "CELERY_QUEUE": queue,
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "MAIL_FROM": MAIL_FROM,
        "BASE_URL": "https://bulletin.example.org",
        "SEND_BATCH_SIZE": "500",
        "PYTHONUNBUFFERED": "1",
        "REDIS_URL": start_redis(processes),
    }
    if args.reuse:
        # The last run's queued batches died with its Redis: queue its pending rows again.
        settings["SEND_REQUEUE_SECONDS"] = "1"
    smtp_port = start_smtp_sink(processes)
    settings.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
    os.environ.update(settings)
    os.environ.pop("TEST_DATABASE_URL", None)

    from flask_migrate import upgrade
    from sqlalchemy import select

    from webapp import create_app, readership, readership_report
    from webapp.extensions import db
    from webapp.models import Issue, ReadCount, StaffRole
    from webapp.staff import create_staff

    # The bench publishes its own issue: it measures clicks, not the review step.
    app = create_app(
        {"WTF_CSRF_ENABLED": False, "SESSION_COOKIE_SECURE": False, "REVIEW_REQUIRED": False}
    )
    with app.app_context():
        if args.reuse:
            upgrade()  # the schema as this checkout has it; the data as the last run left it
            issue_id = db.session.scalar(select(Issue.id).order_by(Issue.id))
            print(f"bench data: reused from the last run (issue {issue_id})")
        else:
            issue_id = build_data(args)
            create_staff("bench@example.org", "bench-password-123", StaffRole.EDITOR)
            db.session.commit()
        start = time.perf_counter()
        report = readership_report.issue_report(db.session.get(Issue, issue_id))
        print(f"issue_report(): {(time.perf_counter() - start) * 1000:.0f} ms (first call); "
              f"{report.counted:,} counted, {report.filtered:,} filtered")  # fmt: skip
        db.session.remove()
    client = app.test_client()
    client.post("/admin/login", data={"email": "bench@example.org",
                                      "password": "bench-password-123"})  # fmt: skip
    median, worst = time_page(client, f"/admin/issues/{issue_id}/readership")
    print(f"report page: median {median:.0f} ms, worst {worst:.0f} ms (20 renders, in-process; "
          f"load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    median, worst = time_page(client, f"/admin/issues/{issue_id}/readership.csv")
    print(f"report CSV: median {median:.0f} ms, worst {worst:.0f} ms")
    median, worst = time_page(client, "/admin/", runs=5)
    print(f"dashboard (with the 12-issue chart): median {median:.0f} ms, worst {worst:.0f} ms")

    # -- the redirect under wrk ---------------------------------------------------------------
    with app.app_context():
        article_id = db.session.get(Issue, issue_id).articles[0].id
        with app.test_request_context():
            url = readership.counted_url(issue_id, article_id, readership.LinkKind.WEB)
        before = db.session.scalar(db.select(db.func.sum(ReadCount.counted))) or 0
        db.session.remove()
    port = free_port()
    local = url.replace("https://bulletin.example.org", f"http://127.0.0.1:{port}")
    # The Procfile's own `web` line, run by a shell as a process manager would (exec: the
    # shell becomes gunicorn's master, whose children are the workers we measure).
    web_command = parse_procfile((ROOT / "Procfile").read_text()).processes["web"]
    environment = dict(os.environ, PORT=str(port))
    environment["PATH"] = f"{Path(sys.executable).parent}:{environment['PATH']}"
    master = processes.start("gunicorn", ["sh", "-c", f"exec {web_command}"], environment)
    wait_until(lambda: processes.check_alive() or accepts(port), 30, "gunicorn to start")
    subprocess.run(["curl", "-s", "-o", "/dev/null", local], check=False)  # warm both workers
    web = worker_pids(master.pid)
    print(f"redirect: wrk -t2 -c{args.connections} -d{args.duration}s --latency {local}")
    idle = run_wrk(local, args.connections, args.duration, web)
    print(f"  alone: {idle['rate']} req/s, p50 {idle['p50']}, p99 {idle['p99']}, "
          f"non-3xx {idle['bad']}, socket errors {idle['errors']}; gunicorn CPU "
          f"{idle['cpu_ms']} ms per request; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    requests = int(idle["requests"])

    if not args.no_send:
        celery_app = app.extensions["celery"]
        for i in range(args.workers):
            command = worker_command(i, args, queue)
            if args.worker_nice:
                command = ["nice", "-n", str(args.worker_nice), *command]
            processes.start(f"worker{i}", command, dict(os.environ))
        with app.app_context():
            wait_for_workers(celery_app, processes, args.workers)
            # (Counted from what an earlier run sent, with --reuse.)
            going = sent_count(issue_id) + min(5000, args.readers // 20)
            celery_app.send_task("bulletin.dispatch_issue", args=[issue_id], queue=queue)
            wait_until(lambda: sent_count(issue_id) > going, 300, "the send to get going")
            sent_before, start = sent_count(issue_id), time.perf_counter()
            busy = run_wrk(local, args.connections, args.duration, web)
            sending = (sent_count(issue_id) - sent_before) / (time.perf_counter() - start)
        print(f"  during a send: {busy['rate']} req/s, p50 {busy['p50']}, p99 {busy['p99']}, "
              f"non-3xx {busy['bad']}, socket errors {busy['errors']}; gunicorn CPU "
              f"{busy['cpu_ms']} ms per request; the send meanwhile "
              f"{sending:,.0f} msg/s")  # fmt: skip
        requests += int(busy["requests"])
        for name, process in processes.started:
            if name.startswith("worker"):
                processes.kill(process)

    with app.app_context():
        start = time.perf_counter()
        flushed = readership.flush()
        took = time.perf_counter() - start
        after = db.session.scalar(db.select(db.func.sum(ReadCount.counted))) or 0
    print(f"flush: {flushed:,} clicks written in {took * 1000:.0f} ms; counted in the database "
          f"{after - before:,}, wrk's completed requests {requests:,} (wrk does not count the "
          f"requests still open when it stops)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-clicks-"))
    processes = Processes(folder)
    try:
        return run(args, processes)
    finally:
        processes.stop()
        broken = processes.logs_with_tracebacks()
        if broken:
            print(f"tracebacks in: {', '.join(map(str, broken))}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
