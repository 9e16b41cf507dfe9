"""How long importing the sample takes as Word, as a printed PDF and as Markdown, and how
much memory it holds.

    .venv/bin/python bench/import_documents.py

The documents are made as the tests make them (tests/documents.py: python-docx, Chromium's
page.pdf with a header and footer). For each: pages, the best of five import times, the
peak of Python allocations during one import (tracemalloc), and the process's resident
memory after 1 and after 10 imports (flat means no growth with repetition; PDFium's own
memory is in the RSS, not in tracemalloc).
"""

from __future__ import annotations

import logging
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.documents import narrow_pdf, sample_docx, sample_markdown, sample_pdf  # noqa: E402
from webapp.importing import parse_document  # noqa: E402

logging.disable(logging.WARNING)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4096 / (1024 * 1024)


def measure(name: str, data: bytes) -> None:
    report = parse_document(data)  # warm up: imports, PDFium's first load
    rss_one = rss_mb()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        parse_document(data)
        times.append(time.perf_counter() - start)
    for _ in range(5):
        parse_document(data)
    rss_ten = rss_mb()
    tracemalloc.start()
    parse_document(data)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pages = f"{report.pages} pages" if report.pages else report.format
    print(
        f"{name:<28} {len(data) / 1024:8,.0f} KB  {pages:<9}  best {min(times):5.2f} s  "
        f"median {sorted(times)[2]:5.2f} s  Python peak {peak / 1024 / 1024:5.1f} MB  "
        f"RSS {rss_one:5.0f} -> {rss_ten:5.0f} MB after 10"
    )


def main() -> None:
    documents = {
        "Markdown (the sample)": sample_markdown().encode(),
        "Word .docx": sample_docx(),
        "printed PDF (A4)": sample_pdf(),
        "printed PDF (9 cm column)": narrow_pdf(),
    }
    for name, data in documents.items():
        measure(name, data)


if __name__ == "__main__":
    main()
