"""Staff CSV exports written by PostgreSQL: each line built in SQL, streamed through COPY.

Python's csv writer and SQLAlchemy's rows held an export to 12,000-30,000 rows a second
(issue 18); here PostgreSQL writes the lines while Python only joins them, on the other
core. The SQL must write byte for byte what the Python path writes (`csv.writer` with
QUOTE_ALL and "\\r\\n", `spreadsheet.formula_safe`, `datetime.isoformat()`):
tests/test_csv_exports.py compares the two. SQLite keeps the Python path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sqlalchemy import ColumnElement, Select, Text, case, cast, func, literal_column

from .extensions import db
from .spreadsheet import FORMULA_STARTS

_QUOTE = literal_column("'\"'")
_STARTS = [literal_column(str(ord(start))) for start in FORMULA_STARTS]
# psycopg hands back times in the session's TimeZone, and to_char writes them in it too.
# (Offsets with seconds, the local mean times before about 1900, would differ: TZM stops at
# minutes.)
_ISOFORMAT = literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM'""")

# COPY's text format ends each row with "\n" and writes these characters of a value as
# backslash sequences (it never writes octal or hex ones).
_COPY_ESCAPES = {b"\\": b"\\", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f",
                 b"v": b"\v"}  # fmt: skip
_COPY_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def text_cell(text: ColumnElement[str]) -> ColumnElement[str]:
    """A text cell as the Python path writes it between its quotes (`formula_safe`, quotes
    doubled), for an expression that is never NULL. `text` should be a column: it is
    written out thrice."""
    safe = case((func.ascii(text).in_(_STARTS), literal_column("''''").concat(text)), else_=text)
    return func.replace(safe, _QUOTE, literal_column("'\"\"'"))


def plain_cell(value: ColumnElement) -> ColumnElement[str]:
    """A cell that holds no quote and starts with no formula character (a status, a
    number)."""
    return cast(value, Text)


def time_cell(moment: ColumnElement) -> ColumnElement[str]:
    """A timestamptz as the Python path writes it: `isoformat()`, '' for NULL."""
    # isoformat() leaves out microseconds when there are none; ".000000" can be nothing else
    # (cheaper than asking date_trunc, which converts to the session's zone again).
    written = func.replace(func.to_char(moment, _ISOFORMAT), literal_column("'.000000'"), "")
    return func.coalesce(written, literal_column("''"))


def line(*cells: ColumnElement[str]) -> ColumnElement[str]:
    """Cells (as the functions above give them) quoted and joined by commas: a line
    without its end (COPY adds it). The quotes between two cells are one constant: each
    || copies the line so far."""
    joined = _QUOTE.concat(cells[0])
    for cell in cells[1:]:
        joined = joined.concat(literal_column("'\",\"'")).concat(cell)
    return joined.concat(_QUOTE)


def copy_lines(query: Select, *, rows: int) -> Iterator[str]:
    """The one-column `query` (see `line`) as CSV text, `rows` lines a piece, through COPY
    in the session's transaction: PostgreSQL keeps sending while Python joins, and no
    more than a piece is held."""
    connection = db.session.connection()
    # COPY takes no parameters: the values are written into the statement by SQLAlchemy
    # (as it already writes the search pattern, see directory.filtered_query), and the %
    # it doubles for psycopg's placeholders are single again.
    compiled = query.compile(
        dialect=connection.dialect,
        compile_kwargs={"literal_binds": True, "render_postcompile": True},
    )
    statement = f"COPY ({compiled.string.replace('%%', '%')}) TO STDOUT"
    with connection.connection.driver_connection.cursor() as cursor:
        with cursor.copy(statement) as copy:
            # Each row comes as a view of libpq's buffer: copied out at once, so the buffer
            # goes back straight away (holding a piece's views took twice as long in all).
            piece, held = bytearray(), 0
            for row in copy:
                piece += row
                held += 1
                if held == rows:
                    yield _csv_text(piece)
                    piece, held = bytearray(), 0
            if held:
                yield _csv_text(piece)


def _csv_text(data: bytes | bytearray) -> str:
    # Every "\n" left is a row's end (a value's own are escaped); csv.writer ends lines
    # with "\r\n".
    data = data.replace(b"\n", b"\r\n")
    if b"\\" in data:
        data = _COPY_ESCAPE.sub(lambda match: _COPY_ESCAPES[match[1]], data)
    return data.decode()
