"""Thousands of rows in one statement, on PostgreSQL and SQLite alike.

A 200,000-row readers import writes some 800,000 rows. psycopg runs an executemany as one
statement per row (pipelined), and parses an `IN (...)` of 2,000 addresses parameter by
parameter: together most of the import's time. On PostgreSQL the rows travel instead as one
JSON document, which the server turns into rows of the table's own type
(`json_populate_recordset`), and a lookup's values as one JSON array; SQLite's executemany
and `IN` are fast already (in-process, in C). bench/import_readers.py measures it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import JSON, ColumnElement, Table, Text, bindparam, cast, func, select, text

from .extensions import db
from .subscriptions import insert_ignoring_conflicts


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def is_in(column, values: Sequence) -> ColumnElement[bool]:
    """`column IN values`, as one parameter on PostgreSQL."""
    if _postgresql():
        # IN (SELECT ...) rather than = ANY(...): the planner then looks each value up in the
        # index, where ANY(...) may scan the whole table once the plan is generic.
        document = bindparam(None, json.dumps(list(values)), type_=Text)
        return column.in_(
            select(cast(func.json_array_elements_text(cast(document, JSON)), column.type))
        )
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
    columns = ", ".join(f'"{name}"' for name in rows[0])
    sql = (
        f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} '
        f'FROM json_populate_recordset(NULL::"{table.name}", CAST(:rows AS json))'
    )
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    db.session.execute(text(sql), {"rows": json.dumps(rows, default=_json_value)})


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


def _json_value(value):
    # Enums are StrEnums (JSON strings already); timestamps go as ISO 8601 with their zone.
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"no JSON form for {value!r}")
