"""The staff preview's first request after an edit: time and premailer runs (issue 18).

    .venv/bin/python bench/preview.py                 # 20 first previews of the sample issue
    .venv/bin/python bench/preview.py --runs 50
    .venv/bin/python bench/preview.py --profile bench/out/preview.prof
    .venv/bin/python bench/preview.py --read-only postgresql://postgres@127.0.0.1:5432/bulletin_bench_staff

Loads webapp/demo/bulletin-2022-08.md as a draft into a fresh database (a temporary SQLite
file, or BENCH_PREVIEW_DATABASE_URL: a PostgreSQL database whose schema is dropped and
rebuilt), or with `--read-only URL` takes the newest draft of an existing database such as
bench/staff.py's, in read-only transactions. Then logs a staff member in and requests
`/admin/issues/<id>/preview` through Flask's test client, emptying the render cache before
each request (as bench/staff.py does), so every request renders the chosen set and the
sizes table of all 15 sets afresh. Prints p50 and p95 in ms of wall time and of this
process's CPU time (the machine is shared: CPU time moves less with the load), the
premailer runs per first preview and the load average. `--profile FILE` runs the requests
under cProfile and prints the top costs.
Target: under 1000 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from send import ensure_database, load_issue, reset_schema, use_database  # noqa: E402
from staff import load  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the requests, stats to FILE")
    parser.add_argument(
        "--read-only",
        metavar="URL",
        help="an existing PostgreSQL database (bench/staff.py's), read only: its newest draft",
    )
    args = parser.parse_args()

    folder = tempfile.TemporaryDirectory(prefix="bulletin-bench-preview-")
    if args.read_only:
        # Every transaction read only: the bench cannot change a database it does not own.
        database_url = f"{args.read_only}?options=-c%20default_transaction_read_only%3Don"
    else:
        database_url = os.environ.get("BENCH_PREVIEW_DATABASE_URL") or (
            f"sqlite:///{folder.name}/bench.db"
        )
        if database_url.startswith("postgres"):
            ensure_database(database_url)
    use_database(database_url)

    from flask_migrate import upgrade
    from premailer import Premailer
    from sqlalchemy import func, select

    from webapp import create_app, rendering
    from webapp.extensions import db
    from webapp.models import Issue, IssueStatus, StaffRole, StaffUser
    from webapp.staff import create_staff

    app = create_app({"REVIEW_REQUIRED": False})
    with app.app_context():
        if args.read_only:
            draft = db.session.scalar(
                select(func.max(Issue.id)).where(Issue.status == IssueStatus.DRAFT)
            )
            admin = db.session.scalar(select(StaffUser).where(StaffUser.role == StaffRole.ADMIN))
            if draft is None or admin is None:
                raise SystemExit("bench/preview.py: --read-only needs a draft and an admin there")
        else:
            if database_url.startswith("postgres"):
                reset_schema()
            else:
                logging.disable(logging.INFO)  # Alembic's "Running upgrade ..." lines
                upgrade()
                logging.disable(logging.NOTSET)
            draft, _topics = load_issue()
            admin, _ = create_staff(
                "bench-admin@example.org", "bench password 123", StaffRole.ADMIN
            )
            db.session.commit()
        client = app.test_client()
        with client.session_transaction() as session:
            session["_user_id"] = admin.get_id()
            session["_fresh"] = True

        runs = 0
        transform = Premailer.transform

        def counted(self, *a, **k):  # the real premailer; only counts
            nonlocal runs
            runs += 1
            return transform(self, *a, **k)

        Premailer.transform = counted

        def forget_previews():
            cache, _lock = app.extensions.get("bulletin.previews", ({}, None))
            cache.clear()
            # And every article body, as for an issue just imported (an edit re-renders
            # only the edited one).
            rendering._article_body.cache_clear()

        def preview():
            answer = client.get(f"/admin/issues/{draft}/preview")
            assert answer.status_code == 200, answer.status_code

        forget_previews()
        preview()  # imports, templates and premailer's own caches warm, as on a live server
        first_runs, runs = runs, 0
        profiler = cProfile.Profile() if args.profile else None

        def first_preview():
            if profiler:
                profiler.enable()
            preview()
            if profiler:
                profiler.disable()

        print(load())
        walls, cpus = [], []
        for _ in range(args.runs):
            forget_previews()
            wall, cpu = time.perf_counter(), time.process_time()
            first_preview()
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
        for label, times in (("wall", walls), ("CPU", cpus)):
            times.sort()
            p50, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
            print(
                f"first preview (render cache emptied), {args.runs} runs, {label} time: "
                f"p50 {p50:.0f} ms, p95 {p95:.0f} ms (target 1000)"
            )
        print(
            f"premailer runs per first preview: {runs / args.runs:g} "
            f"(the very first, cold: {first_runs})"
        )
        print(load())
        if profiler:
            Path(args.profile).parent.mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("cumulative").print_stats(40)
            pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
