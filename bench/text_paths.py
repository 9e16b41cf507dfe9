"""Processor time of each text path on a megabyte of adversarial input (issue 13).

Run: .venv/bin/python bench/text_paths.py
Prints one line per input: the path, the input, seconds of processor time.
"""

from __future__ import annotations

import contextlib
import time

from webapp import bounces, importing
from webapp.rendering import markdown_to_html

MEGABYTE = 1_000_000


def megabyte_of(unit: str) -> str:
    return unit * (MEGABYTE // len(unit))


def timed(function, *args) -> float:
    started = time.process_time()
    with contextlib.suppress(importing.DocumentError, bounces.UnreadableMessage):
        function(*args)
    return time.process_time() - started


def main() -> None:
    cases = []
    for unit in ["[a](", "**a ", "[", "![a](", "*_a ", "`a ", "**本（**中", "a\n\n", "a|b\n-|-\n"]:
        cases.append(("markdown", repr(unit), markdown_to_html, megabyte_of(unit)))
    head = "# 质量简报\n\n【2022年8月】\n\n## 质量要闻\n\n"
    for name, text in {
        "heading + blanks": head + "### a" + " \t" * 500_000 + "b\n",
        "title of '[a]('": head + "### " + megabyte_of("[a](") + "\n\n正文。\n",
        "paragraph of '**a '": head + "### t\n\n" + megabyte_of("**a ") + "\n",
    }.items():
        cases.append(("import", name, importing.parse_document, text.encode()))
    for name, raw in {
        "1 MB Subject": b"Subject: " + b"a " * 500_000 + b"\r\n\r\nbody",
        "125,000 headers": b"X-A: b\r\n" * 125_000 + b"\r\nbody",
        "To: '<' x 1 MB": b"To: " + b"<" * MEGABYTE + b"\r\n\r\nbody",
    }.items():
        cases.append(("bounce", name, bounces.read_message, raw))
    for path, name, function, data in cases:
        print(f"{path:9} {name:24} {timed(function, data):6.2f} s")


if __name__ == "__main__":
    main()
