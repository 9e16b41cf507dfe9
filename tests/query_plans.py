"""Query plans read from the database under test, PostgreSQL's or SQLite's, in one vocabulary,
for tests that check a query stays cheap however long the list grows."""

from __future__ import annotations

import re

from sqlalchemy.dialects import postgresql

from webapp.extensions import db


def postgres_plan(statement) -> str:
    compiled = statement.compile(
        dialect=postgresql.dialect(), compile_kwargs={"render_postcompile": True}
    )
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            cursor.execute(f"EXPLAIN {compiled}", compiled.params)
            return "\n".join(row[0] for row in cursor.fetchall())


def sqlite_plan(statement) -> str:
    compiled = statement.compile(
        dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    with db.engine.connect() as conn:
        cursor = conn.connection.driver_connection.execute(f"EXPLAIN QUERY PLAN {compiled}", params)
        return "\n".join(row[-1] for row in cursor.fetchall())


def query_plan(statement) -> str:
    """The database's plan; PostgreSQL's and SQLite's say the same things differently."""
    if db.engine.dialect.name == "postgresql":
        return postgres_plan(statement)
    plan = sqlite_plan(statement)
    # In PostgreSQL's words, so one assertion serves both. A rowid table *is* its primary
    # key's B-tree: "SCAN subscribers" reads it in key order, which is an index scan.
    plan = re.sub(r"(?m)^SCAN \w+$", "Index Scan (rowid)", plan)
    return (
        plan.replace("USING INTEGER PRIMARY KEY", "Index")
        .replace("USING INDEX", "Index")
        .replace("USING COVERING INDEX", "Index")
        .replace("USE TEMP B-TREE FOR ORDER BY", "Sort")
    )
