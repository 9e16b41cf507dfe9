"""Every staff page at a million readers, measured.

    .venv/bin/python bench/staff.py                      # 1,000,000 readers, 10 issues sent
    .venv/bin/python bench/staff.py --reuse              # the data the last run left
    .venv/bin/python bench/staff.py --readers 100000     # a smaller list
    .venv/bin/python bench/staff.py --reuse --only dashboard   # the rows whose label has it

Builds, in a PostgreSQL database of its own (BENCH_STAFF_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/bulletin_bench_staff; created if missing, its schema
rebuilt by the migrations), with SQL set operations (generate_series), not Python loops:
N readers (97 % active, 2 % unsubscribed, 1 % pending; random non-empty sets of the sample's
four sections, half with a name, one sign-up or import event each over the past year),
10 issues each delivered to every reader (10 x N delivery rows; the newest still sending,
60 % sent) and one draft. Then prints the server time of every staff page (Flask's test
client, in-process, warm: p50 and p95 of 20 requests), the first preview (its render cache
emptied before each request), and the two CSV exports' rates (rows/s through the test
client) with the growth of the process's peak resident memory after 100,000 rows and at
the end (flat means the same).

Targets (issue 18): every page p95 under 300 ms, progress.json under 50 ms, the first
preview under 1 s, exports at 100,000 rows/s or more with memory flat. The machine is
shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from send import (  # noqa: E402
    ensure_database,
    load_issue,
    proc_status_kb,
    reset_peak_rss,
    reset_schema,
    use_database,
)

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/bulletin_bench_staff"
ISSUES = 10
SENDING_SHARE = 0.6  # of the newest issue's deliveries sent so far


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def build_data(readers: int) -> None:
    from sqlalchemy import text

    from webapp import readership
    from webapp.extensions import db

    reset_schema()
    issue_ids, topic_ids = [], []
    for _ in range(ISSUES + 1):  # the last stays a draft, for the preview
        issue_id, topic_ids = load_issue()
        issue_ids.append(issue_id)
    start = time.perf_counter()
    db.session.execute(
        text(
            "INSERT INTO subscribers (id, email, name, status, locale, created_at, updated_at,"
            " confirmed_at, consented_at, consent_source, consent_method, soft_bounces,"
            " link_key)"
            " SELECT n, 'reader' || lpad(n::text, 7, '0') || '@example.com',"
            " CASE WHEN n % 2 = 1 THEN '读者' || n ELSE '' END,"
            " CASE WHEN n % 50 = 0 THEN 'unsubscribed' WHEN n % 97 = 0 THEN 'pending'"
            " ELSE 'active' END, 'zh', at, at, at, at, 'bench', 'imported-consented', 0,"
            " md5(n::text)"
            " FROM generate_series(1, :n) AS n,"
            " LATERAL (SELECT now() - (n % 365) * interval '1 day' AS at) AS t"
        ),
        {"n": readers},
    )
    db.session.execute(
        text("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), :n)"), {"n": readers}
    )
    # Sections: a mask of 1..15 over the four sections, spread by a multiplicative hash.
    db.session.execute(
        text(
            "INSERT INTO subscriber_topics (subscriber_id, topic_id)"
            " SELECT n, t.id FROM generate_series(1, :n) AS n"
            " JOIN unnest(CAST(:topics AS integer[])) WITH ORDINALITY AS t(id, j)"
            " ON ((n::bigint * 2654435761 % 15 + 1) >> (j::int - 1)) & 1 = 1"
        ),
        {"n": readers, "topics": topic_ids},
    )
    db.session.execute(
        text(
            "INSERT INTO subscriber_events (subscriber_id, kind, source, detail, created_at)"
            " SELECT id, CASE WHEN id % 3 = 0 THEN 'imported' ELSE 'subscribed' END,"
            " CASE WHEN id % 3 = 0 THEN 'import' WHEN id % 7 = 0 THEN 'api' ELSE 'web' END,"
            " '', created_at FROM subscribers"
        )
    )
    db.session.commit()
    print(f"readers: {readers:,} with sections and events in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    # Indexes built once after the rows, foreign keys not checked row by row (the rows are
    # made to fit them): a bulk load, as pg_restore does it.
    indexes = db.session.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'deliveries'"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint"
            " WHERE conrelid = 'deliveries'::regclass)"
        )
    ).all()
    for name, _ in indexes:
        db.session.execute(text(f'DROP INDEX "{name}"'))
    db.session.execute(text("SET LOCAL session_replication_role = replica"))
    for k, issue_id in enumerate(issue_ids[:ISSUES]):
        newest = k == ISSUES - 1
        db.session.execute(
            text(
                "INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, smtp_reply,"
                " message_id, created_at, updated_at, sent_at)"
                " SELECT :issue, n,"
                " CASE WHEN n > :sent_upto THEN 'pending' WHEN n % 200 = 0 THEN 'failed'"
                " ELSE 'sent' END,"
                " CASE WHEN n > :sent_upto THEN 0 ELSE 1 END,"
                " CASE WHEN n > :sent_upto THEN '' WHEN n % 200 = 0"
                " THEN '550 5.1.1 User unknown' ELSE '250 2.0.0 Ok: queued' END,"
                " CASE WHEN n > :sent_upto THEN '' ELSE '<' || n || '.' || :issue || '@bench>'"
                " END, at, at,"
                # Answers spread as a send at 1,000 messages/s leaves them.
                " CASE WHEN n > :sent_upto THEN NULL ELSE at + n * interval '1 ms' END"
                " FROM generate_series(1, :n) AS n,"
                " LATERAL (SELECT now() - (:days) * interval '7 days' AS at) AS t"
            ),
            {
                "issue": issue_id,
                "n": readers,
                "sent_upto": int(readers * SENDING_SHARE) if newest else readers,
                "days": ISSUES - 1 - k,
            },
        )
        db.session.execute(
            text(
                "UPDATE issues SET status = :status, review_stage = 'approved',"
                " published_at = now() - (:weeks) * interval '7 days',"
                " sent_at = CASE WHEN :sent THEN now() - (:weeks) * interval '7 days' END"
                " WHERE id = :issue"
            ),
            {
                "status": "sending" if newest else "sent",
                "sent": not newest,
                "weeks": ISSUES - 1 - k,
                "issue": issue_id,
            },
        )
        readership.record_recipients(issue_id, set(topic_ids))
    db.session.execute(text("SET LOCAL session_replication_role = origin"))
    # The replica role kept the counters' triggers quiet too: count as migration 0022 does.
    db.session.execute(
        text(
            "INSERT INTO delivery_counts (issue_id, status, deliveries)"
            " SELECT issue_id, status, count(*) FROM deliveries GROUP BY issue_id, status"
        )
    )
    for _, definition in indexes:
        db.session.execute(text(definition))
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    print(
        f"deliveries: {ISSUES * readers:,} for {ISSUES} issues, indexed, in "
        f"{time.perf_counter() - start:.1f} s"
    )


def timed(get, runs: int = 20, before=None) -> tuple[float, float]:
    """p50 and p95 in milliseconds (one warm-up request first, unless `before` empties a
    cache: then every request is a first one)."""
    if before is None:
        get()
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        get()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def export(client, url: str) -> tuple[int, float, int, int]:
    """Rows and seconds for the whole CSV through the test client, streamed, and this
    process's peak resident memory (VmHWM, kB) after 100,000 rows and at the end, counted
    from the RSS it had before the export."""
    base = reset_peak_rss() and proc_status_kb("self", "VmRSS")
    early, rows = 0, 0
    start = time.perf_counter()
    answer = client.get(url, buffered=False)
    assert answer.status_code == 200, (url, answer.status_code)
    for chunk in answer.response:
        rows += chunk.count(b"\r\n")
        if not early and rows >= 100_000:
            early = proc_status_kb("self", "VmHWM") - base
    answer.close()
    seconds = time.perf_counter() - start
    return rows - 1, seconds, early, proc_status_kb("self", "VmHWM") - base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep the data the last run left")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--only", default="", help="measure only the rows whose label contains this text"
    )
    args = parser.parse_args()

    database_url = os.environ.get("BENCH_STAFF_DATABASE_URL") or DEFAULT_DATABASE
    ensure_database(database_url)
    use_database(database_url)

    from sqlalchemy import func, select

    from webapp import create_app, rendering
    from webapp.extensions import db
    from webapp.models import Delivery, Issue, IssueStatus, StaffRole, StaffUser, Subscriber, Topic
    from webapp.staff import create_staff

    app = create_app({"REVIEW_REQUIRED": False})
    with app.app_context():
        have = 0
        if args.reuse:
            try:
                have = db.session.scalar(select(func.max(Subscriber.id))) or 0
                have = have if db.session.scalar(select(func.max(Delivery.id))) else 0
            except Exception:  # no schema yet
                db.session.rollback()
        if have != args.readers:
            if args.reuse:
                print(f"--reuse: no data for {args.readers:,} readers here, building it")
            build_data(args.readers)
        else:
            print(f"reusing {args.readers:,} readers and their deliveries")
        admin = db.session.scalar(select(StaffUser).where(StaffUser.role == StaffRole.ADMIN))
        if admin is None:
            admin, _ = create_staff(
                "bench-admin@example.org", "bench password 123", StaffRole.ADMIN
            )
            db.session.commit()
        sent = db.session.scalar(select(func.max(Issue.id)).where(Issue.status == IssueStatus.SENT))
        sending = db.session.scalar(
            select(func.max(Issue.id)).where(Issue.status == IssueStatus.SENDING)
        )
        draft = db.session.scalar(select(func.max(Issue.id)).where(Issue.status == "draft"))
        topic = db.session.scalar(select(func.min(Topic.id)))
        db.session.rollback()
        client = app.test_client()
        with client.session_transaction() as session:
            session["_user_id"] = admin.get_id()
            session["_fresh"] = True

        print(f"\n{load()} (before the pages)\n")
        print("| page (server time, warm) | p50 ms | p95 ms | target |\n|---|---|---|---|")
        middle = args.readers // 2 + 1
        pages = {
            "dashboard `/admin/`": "/admin/",
            "readers list": "/admin/subscribers",
            "readers list, search a name `读者12345`": "/admin/subscribers?q=读者12345",
            "readers list, filter active + a section": (
                f"/admin/subscribers?status=active&topic={topic}"
            ),
            "readers list, search `读者` + filter": (
                f"/admin/subscribers?q=读者&status=active&topic={topic}"
            ),
            "a reader's page": f"/admin/subscribers/{middle}",
            "sections": "/admin/sections",
            "issues list": "/admin/issues",
            "an issue's page": f"/admin/issues/{sent}",
            "sending page (log, newest first)": f"/admin/issues/{sending}/sending",
            "sending page, log filtered `failed`": f"/admin/issues/{sent}/sending?status=failed",
            "sending page, log searched": f"/admin/issues/{sent}/sending?q=reader0{middle}",
            "`progress.json` (sending)": f"/admin/issues/{sending}/progress.json",
            "readership report": f"/admin/issues/{sent}/readership",
        }
        for label, url in pages.items():
            if args.only not in label:
                continue

            def get(url=url):
                answer = client.get(url)
                assert answer.status_code == 200, (url, answer.status_code)

            p50, p95 = timed(get, args.runs)
            target = 50 if "progress.json" in label else 300
            print(f"| {label} | {p50:.0f} | {p95:.0f} | {target} |")

        def forget_previews():
            cache, _lock = app.extensions.get("bulletin.previews", ({}, None))
            cache.clear()
            # And every article body, as for an issue just imported (an edit re-renders
            # only the edited one).
            rendering._article_body.cache_clear()

        def preview():
            answer = client.get(f"/admin/issues/{draft}/preview")
            assert answer.status_code == 200, answer.status_code

        label = "preview, first time (render and article body caches emptied)"
        if args.only in label:
            p50, p95 = timed(preview, args.runs, before=forget_previews)
            print(f"| {label} | {p50:.0f} | {p95:.0f} | 1000 |")
        print(f"\n{load()} (after the pages)\n")

        exports = {
            "deliveries.csv (one issue)": f"/admin/issues/{sent}/deliveries.csv",
            "export.csv (every reader)": "/admin/subscribers/export.csv",
        }
        exports = {label: url for label, url in exports.items() if args.only in label}
        if not exports:
            return 0
        print(
            "| export | rows | rows/s | memory growth (peak RSS) after 100,000 rows / at the end |"
        )
        print("|---|---|---|---|")
        for label, url in exports.items():
            rows, seconds, early, peak = export(client, url)
            db.session.rollback()
            print(
                f"| {label} | {rows:,} | {rows / seconds:,.0f} | "
                f"{early / 1024:.0f} MB / {peak / 1024:.0f} MB |"
            )
        print(f"\n{load()} (after the exports)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
