"""Staff work with readers, measured: search, the reader page, the filtered CSV export and a
bulk change, on a list of N readers in PostgreSQL.

    .venv/bin/python bench/readers.py                     # 100,000 readers
    .venv/bin/python bench/readers.py --readers 1000000

Builds N active readers (random non-empty sets of the sample's sections, half with a name)
in a database of its own (BENCH_READERS_DATABASE_URL, default postgresql://postgres@
127.0.0.1:5432/bulletin_bench_readers; created if missing, its schema rebuilt by the
migrations), then prints, in-process with Flask's test client (server time, warm):
the readers list searched by a rare and a common part of an address or a name (p50 and p95
of 20), one reader's page, the CSV export of every reader (rows/s, and the peak memory the
export allocates for a tenth of the list and for all of it: flat means the same), and a bulk
"remove section" on the readers whose address starts with reader001 (readers/s).

The machine is shared: other processes' load shows in every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from send import (  # noqa: E402
    create_readers,
    ensure_database,
    load_issue,
    reset_schema,
    use_database,
)

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/bulletin_bench_readers"


def timed(fn, runs: int = 20) -> tuple[float, float]:
    """p50 and p95 in milliseconds (one warm-up run first)."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()

    database_url = os.environ.get("BENCH_READERS_DATABASE_URL") or DEFAULT_DATABASE
    ensure_database(database_url)
    use_database(database_url)

    from webapp import bulk, create_app, directory
    from webapp.extensions import db
    from webapp.models import BulkChange, StaffRole
    from webapp.staff import create_staff

    app = create_app({"REVIEW_REQUIRED": False})
    with app.app_context():
        reset_schema()
        _issue_id, topic_ids = load_issue()
        start = time.perf_counter()
        create_readers(args.readers, topic_ids, args.seed)
        print(f"readers: {args.readers:,} active, copied in {time.perf_counter() - start:.1f} s")
        admin, _ = create_staff("bench-admin@example.org", "bench password 123", StaffRole.ADMIN)
        db.session.commit()
        client = app.test_client()
        with client.session_transaction() as session:
            session["_user_id"] = admin.get_id()
            session["_fresh"] = True

        print("\n| page (server time, warm) | p50 ms | p95 ms |\n|---|---|---|")
        pages = {
            "readers list, no filter": "/admin/subscribers",
            "search, rare address part `r0012345@`": "/admin/subscribers?q=r0012345@",
            "search, rare name part `读者12345`": "/admin/subscribers?q=读者12345",
            "search, common `读者` + section": f"/admin/subscribers?q=读者&topic={topic_ids[0]}",
            "search, no match `zzz`": "/admin/subscribers?q=zzz",
            "reader page": "/admin/subscribers/12345",
        }
        for label, url in pages.items():

            def get(url=url):
                answer = client.get(url)
                assert answer.status_code == 200, (url, answer.status_code)

            p50, p95 = timed(get)
            print(f"| {label} | {p50:.0f} | {p95:.0f} |")

        print("\n| the list's query alone (no counts) | p50 ms | p95 ms |\n|---|---|---|")
        for search in ("r0012345@", "读者12345", "读者", "zzz"):
            p50, p95 = timed(lambda search=search: directory.list_subscribers(search=search))
            db.session.rollback()
            print(f"| search `{search}` | {p50:.0f} | {p95:.0f} |")

        def export_peak(filters) -> tuple[int, int, float]:
            tracemalloc.start()
            start = time.perf_counter()
            rows = sum(chunk.count("\r\n") for chunk in directory.csv_lines(filters)) - 1
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            db.session.rollback()
            return rows, peak, seconds

        tenth, tenth_peak, _ = export_peak(directory.Filters(search="reader000"))
        rows, peak, seconds = export_peak(directory.Filters())
        # The export again without tracemalloc, which slows Python down: the rate.
        start = time.perf_counter()
        for _chunk in directory.csv_lines(directory.Filters()):
            pass
        rate_seconds = time.perf_counter() - start
        db.session.rollback()
        print(
            f"\nCSV export: {rows:,} rows in {rate_seconds:.2f} s = "
            f"{rows / rate_seconds:,.0f} rows/s; peak allocated {peak / 1e6:.1f} MB "
            f"(for {tenth:,} rows: {tenth_peak / 1e6:.1f} MB)"
        )

        filters = directory.Filters(search="reader001", topic_id=topic_ids[0])
        with app.test_request_context():
            change = bulk.plan(
                bulk.BulkAction.REMOVE_TOPIC,
                filters,
                topic_id=topic_ids[0],
                staff_email="bench-admin@example.org",
            )
            db.session.commit()
            change_id = change.id
            start = time.perf_counter()
            bulk.run(change_id)
            seconds = time.perf_counter() - start
        change = db.session.get(BulkChange, change_id)
        print(
            f"bulk remove-section: {change.done:,} readers ({change.changed:,} changed) in "
            f"{seconds:.1f} s = {change.done / seconds:,.0f} readers/s, "
            f"chunks of {bulk.CHUNK} per transaction"
        )
        print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
