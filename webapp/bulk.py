"""Thousands of rows in one statement, on PostgreSQL and SQLite alike.

A 200,000-row readers import writes some 600,000 rows. psycopg runs an executemany as one
statement per row (pipelined), and parses an `IN (...)` of 2,000 addresses parameter by
parameter: together most of the import's time. On PostgreSQL each column travels instead
as one array, expanded by `unnest` (and `IN (SELECT unnest(array))` for a lookup); SQLite's
executemany and `IN` are fast already (in-process, in C). bench/import_readers.py measures it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Table, bindparam, func, select, text
from sqlalchemy.dialects import postgresql

from .extensions import db
from .subscriptions import insert_ignoring_conflicts


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def is_in(column, values: Sequence) -> ColumnElement[bool]:
    """`column IN values`, as one array parameter on PostgreSQL."""
    if _postgresql():
        # IN (SELECT unnest(...)) rather than = ANY(...): the planner then looks each value up
        # in the index, where ANY(...) may scan the whole table once the plan is generic.
        array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return column.in_(select(func.unnest(array)))
    return column.in_(values)


def insert_rows(table: Table, rows: list[dict], *, ignore_conflicts: bool = False) -> None:
    """Insert `rows` (dicts with the same keys); with `ignore_conflicts`, rows whose unique
    key is already taken are skipped."""
    if not rows:
        return
    if not _postgresql():
        statement = insert_ignoring_conflicts(table) if ignore_conflicts else table.insert()
        db.session.execute(statement, rows)
        return
    rows = _with_defaults(table, rows)
    names = list(rows[0])
    dialect = db.session.get_bind().dialect
    arrays = ", ".join(
        f"CAST(:c{i} AS {table.c[name].type.compile(dialect)}[])" for i, name in enumerate(names)
    )
    columns = ", ".join(f'"{name}"' for name in names)
    sql = f'INSERT INTO "{table.name}" ({columns}) SELECT * FROM unnest({arrays})'
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    params = {f"c{i}": [_plain(row[name]) for row in rows] for i, name in enumerate(names)}
    db.session.execute(text(sql), params)


def _with_defaults(table: Table, rows: list[dict]) -> list[dict]:
    """The columns' Python-side defaults (a reader's link key...), which SQLAlchemy's own
    INSERT would fill in and a text statement does not."""
    missing = [
        column
        for column in table.columns
        if column.name not in rows[0] and column.default is not None and not column.primary_key
    ]
    if not missing:
        return rows
    filled = []
    for row in rows:
        row = dict(row)
        for column in missing:
            default = column.default
            row[column.name] = default.arg(None) if default.is_callable else default.arg
        filled.append(row)
    return filled


def _plain(value):
    # psycopg would send an Enum's name; the columns store its value.
    return value.value if isinstance(value, enum.Enum) else value
