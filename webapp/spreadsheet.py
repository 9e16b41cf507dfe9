"""CSV cells that staff open in a spreadsheet program (the reader export, delivery logs).

Spreadsheet programs run a cell that starts with one of FORMULA_STARTS as a formula (OWASP,
"CSV Injection"); an export neutralizes it with a leading apostrophe and an import takes
that apostrophe off again, so an exported file imports unchanged.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, case, func, literal, literal_column

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(cell: str) -> str:
    """The cell made inert: a spreadsheet shows it as text, never runs it."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def unformula(cell: str) -> str:
    """A cell as it was before `formula_safe`."""
    if cell.startswith("'") and cell[1:2] and cell[1] in FORMULA_STARTS:
        return cell[1:]
    return cell


# --- the same cells written by PostgreSQL -----------------------------------------------
# Python's csv writer turns about 12,000 rows a second into text on our machine; PostgreSQL
# builds the same lines several times faster and the export then only joins them. The SQL
# below must write byte for byte what `csv.writer(quoting=QUOTE_ALL)`, `formula_safe` and
# `datetime.isoformat()` write (tests/test_csv_exports.py compares the two); SQLite keeps
# the Python path.

_QUOTE = literal_column("'\"'")
_STARTS = [literal(start, literal_execute=True) for start in FORMULA_STARTS]
_LINE_END = literal_column("E'\\r\\n'")
# isoformat() writes microseconds only when there are some. psycopg hands back times in the
# session's TimeZone, and to_char writes them in it too. (Offsets with seconds, the local
# mean times before about 1900, would differ: TZM stops at minutes.)
_WHOLE_SECOND = 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM'
_FRACTION = 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM'


def sql_formula_safe(cell: ColumnElement[str]) -> ColumnElement[str]:
    """`formula_safe` as SQL, for a text expression that is never NULL."""
    return case((func.left(cell, 1).in_(_STARTS), literal_column("''''").concat(cell)), else_=cell)


def sql_isoformat(moment: ColumnElement) -> ColumnElement[str]:
    """`datetime.isoformat()` of a timestamptz as PostgreSQL writes it; '' for NULL."""
    whole = func.date_trunc("second", moment) == moment
    pattern = case((whole, literal(_WHOLE_SECOND, literal_execute=True)),
                   else_=literal(_FRACTION, literal_execute=True))  # fmt: skip
    return func.coalesce(func.to_char(moment, pattern), literal_column("''"))


def sql_csv_line(*cells: ColumnElement[str]) -> ColumnElement[str]:
    """One CSV line as `csv.writer(quoting=QUOTE_ALL, lineterminator="\\r\\n")` writes it,
    for text expressions that are never NULL."""
    quoted = [_QUOTE.concat(func.replace(cell, _QUOTE, literal_column("'\"\"'"))).concat(_QUOTE)
              for cell in cells]  # fmt: skip
    return func.concat_ws(literal_column("','"), *quoted).concat(_LINE_END)
