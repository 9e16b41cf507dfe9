"""CSV cells that staff open in a spreadsheet program (the reader export, delivery logs).

Spreadsheet programs run a cell that starts with one of FORMULA_STARTS as a formula (OWASP,
"CSV Injection"); an export neutralizes it with a leading apostrophe and an import takes
that apostrophe off again, so an exported file imports unchanged.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(cell: str) -> str:
    """The cell made inert: a spreadsheet shows it as text, never runs it."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def unformula(cell: str) -> str:
    """A cell as it was before `formula_safe`."""
    if cell.startswith("'") and cell[1:2] and cell[1] in FORMULA_STARTS:
        return cell[1:]
    return cell
