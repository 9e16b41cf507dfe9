"""Chinese first, English too: every string in the code has an English translation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "webapp" / "translations"


def english():
    with open(CATALOG / "en" / "LC_MESSAGES" / "messages.po", "rb") as f:
        return read_po(f, locale="en")


def test_every_string_in_the_code_has_an_english_translation(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
         str(CATALOG / "babel.cfg"), "-k", "_", "-k", "lazy_gettext", "-o", str(pot), "."],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    with open(pot, "rb") as f:
        wanted = {m.id for m in read_po(f) if m.id}
    translated = {m.id for m in english() if m.id and m.string and not m.fuzzy}
    missing = sorted(str(m) for m in wanted - translated)
    assert not missing, f"run `make translations` and translate: {missing}"


def test_the_compiled_catalog_is_up_to_date():
    with open(CATALOG / "en" / "LC_MESSAGES" / "messages.mo", "rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    source = {m.id: m.string for m in english() if m.id and m.string}
    assert compiled == source, "run `make translations` to compile the .po"


def test_placeholders_survive_translation():
    for message in english():
        if message.id and message.string:
            for placeholder in ("%(name)s", "%(sections)s", "%(count)d", "%(subject)s"):
                assert (placeholder in message.id) == (placeholder in message.string), message.id
