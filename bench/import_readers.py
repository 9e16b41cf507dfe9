"""How long a readers CSV import takes: the upload, the dry run and the import itself.

    .venv/bin/python bench/import_readers.py                  # 200,000 rows
    .venv/bin/python bench/import_readers.py --rows 1000000

Needs PostgreSQL at BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/
bulletin_bench; created if missing, its schema dropped and rebuilt by the migrations).

The file: N rows `email,name,sections` with Chinese names and one to three of four sections
(seeded); one row in 1,000 has a bad address and one in 500 an unknown section beside a known
one. Before it, a tenth of its addresses are already readers (half active, half pending with
no name), so the import adds, updates and leaves readers unchanged. Each phase runs in this
process exactly as the worker's task runs it (`subscriber_imports.run`, committing a chunk
at a time); the web request's part is storing the file and its job row.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from random import Random

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from send import DEFAULT_DATABASE, ensure_database, reset_schema, use_database  # noqa: E402

SECTIONS = ["质量要闻", "质量热点", "权威观点", "国际动态"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"


def make_file(rows: int, seed: int) -> bytes:
    rng = Random(seed)
    lines = ["email,name,sections"]
    for n in range(rows):
        address = f"reader{n}@example.com" if n % 1000 != 999 else f"reader{n}.example.com"
        chosen = ";".join(rng.sample(SECTIONS, rng.randint(1, 3)))
        if n % 500 == 7:
            chosen += ";已停刊的栏目"
        lines.append(f"{address},{rng.choice(SURNAMES)}{n},{chosen}")
    return ("\n".join(lines) + "\n").encode()


def add_existing(rows: int) -> int:
    """A tenth of the file's addresses are readers already: half active, half pending."""
    from sqlalchemy import insert

    from webapp.extensions import db
    from webapp.models import Subscriber, SubscriberStatus, new_link_key, utcnow

    now = utcnow()
    values = [
        {
            "email": f"reader{n}@example.com",
            "name": "",
            "link_key": new_link_key(),
            "status": SubscriberStatus.ACTIVE if n % 20 == 0 else SubscriberStatus.PENDING,
            "locale": "zh",
            "created_at": now,
            "updated_at": now,
            "soft_bounces": 0,
        }
        for n in range(0, rows, 10)
    ]
    db.session.execute(insert(Subscriber.__table__), values)
    db.session.commit()
    return len(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the file (200000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--statements", action="store_true", help="print the SQL statements' time by kind"
    )
    args = parser.parse_args(argv)

    database_url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE
    ensure_database(database_url)
    use_database(database_url, BASE_URL="https://bulletin.example.org")

    from webapp import create_app, subscriber_imports
    from webapp.extensions import db
    from webapp.models import SubscriberImport
    from webapp.topics import create_topic
    from webapp.transactions import transaction

    app = create_app()
    with app.app_context():
        reset_schema()
        if args.statements:
            spent = time_statements(db.engine)
        with transaction():
            for name in SECTIONS:
                create_topic(name)
        data = make_file(args.rows, args.seed)
        existing = add_existing(args.rows)
        print(
            f"file: {args.rows:,} rows, {len(data) / 1024 / 1024:.1f} MB; "
            f"{existing:,} of its addresses already readers"
        )

        start = time.perf_counter()
        with transaction():
            job = subscriber_imports.create_import(
                data, "bench.csv", consented=True, staff_email="bench@example.org"
            )
        job_id = job.id
        print(f"upload: file and job row stored in {time.perf_counter() - start:.2f} s")

        timings = {}
        for phase, dry_run in (("dry run", True), ("import", False)):
            if not dry_run:
                with transaction():
                    subscriber_imports.start_import(job_id)
            db.session.remove()
            backends = backend_cpu_seconds()
            python = time.process_time()
            start = time.perf_counter()
            with transaction():
                subscriber_imports.run(job_id, dry_run=dry_run, send_confirmations=print)
            timings[phase] = time.perf_counter() - start
            python = time.process_time() - python
            after = backend_cpu_seconds()
            database = sum(seconds - backends.get(pid, 0.0) for pid, seconds in after.items())
            job = db.session.get(SubscriberImport, job_id)
            counts = subscriber_imports.counts_of(job, dry_run=dry_run)
            print(
                f"{phase}: {timings[phase]:.1f} s, {args.rows / timings[phase]:,.0f} rows/s "
                f"(CPU: {python:.1f} s here, {database:.1f} s in PostgreSQL); "
                + ", ".join(f"{name} {value:,}" for name, value in counts.items())
            )
        dry = subscriber_imports.counts_of(job, dry_run=True)
        same = "the same as" if dry == subscriber_imports.counts_of(job, dry_run=False) else "NOT"
        print(f"the import's counts are {same} the dry run's")
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"total: {sum(timings.values()):.1f} s for dry run + import; load average {load}")
        if args.statements:
            for kind, (count, seconds) in sorted(spent.items(), key=lambda kv: -kv[1][1])[:12]:
                print(f"  {seconds:7.2f} s {count:6,} x {kind}")
    return 0


def backend_cpu_seconds() -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend serving the bench database (when
    the server runs on this machine): with the bench's own CPU time, the work an import
    costs, whatever else the machine is doing."""
    from sqlalchemy import text

    from webapp.extensions import db

    query = text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    pids = db.session.scalars(query).all()
    db.session.commit()
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended, or the server is on another machine
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return found


def time_statements(engine) -> dict[str, list]:
    """Seconds spent per kind of statement (its first words), filled as they run."""
    from sqlalchemy import event

    spent: dict[str, list] = {}

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench.start"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _stop(conn, cursor, statement, parameters, context, executemany):
        kind = " ".join(statement.split()[:6])[:70]
        entry = spent.setdefault(kind, [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - conn.info.pop("bench.start")

    return spent


if __name__ == "__main__":
    raise SystemExit(main())
