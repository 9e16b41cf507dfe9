"""The test suite's own layout: a bare `pytest` from the repository root must collect it."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_tests_take_shared_helpers_from_tests_helpers_not_from_the_conftest():
    # Importing a conftest loads it a second time under another name, and only works when
    # the repository root happens to be on sys.path (python -m pytest, not pytest).
    offenders = [
        path.name
        for path in TESTS.glob("*.py")
        if path.name != "test_layout.py"
        and ("from tests.conftest" in path.read_text() or "import conftest" in path.read_text())
    ]
    assert offenders == [], f"import from tests.helpers instead: {offenders}"
