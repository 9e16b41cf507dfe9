"""Office documents made from the sample bulletin, the way offices make them.

- ``sample_docx()``: Word with heading styles (python-docx), the contents as list items,
  links as real hyperlinks, bold runs, and the paragraphs exactly as the sample has them.
- ``sample_pdf()``: printed by Chromium (``page.pdf``) with a running header (the bulletin's
  name) and a "第 N 页 / 共 M 页" footer, in a Noto CJK font, so the text layer has the
  page furniture and the compatibility code points real office PDFs have.
- ``html_pdf()``, ``image_pdf()``: a PDF of any HTML, and a scan (a page image, no text).

Documents are cached per test session: printing takes a second or two.
"""

from __future__ import annotations

import base64
import io
import re
from functools import cache
from pathlib import Path

import cmarkgfm

from tests.browsers import find_chromium

SAMPLE = Path(__file__).resolve().parent.parent / "webapp" / "demo" / "bulletin-2022-08.md"
RUNNING_HEADER = "上海交通大学中国质量发展研究院 · 工作简报"
FOOTER = '第 <span class="pageNumber"></span> 页 / 共 <span class="totalPages"></span> 页'

_STYLE = """
body { font-family: 'Noto Serif CJK SC', serif; font-size: 12pt; line-height: 1.6; }
h1 { font-size: 22pt; text-align: center; } h2 { font-size: 18pt; text-align: center; }
h3 { font-size: 15pt; } h4 { font-size: 13pt; }
ul { list-style: none; padding-left: 1em; }
p { text-indent: 2em; margin: 0.4em 0; }
a { color: #000; text-decoration: none; }
"""


def chromium_path() -> str:
    """The Chromium the browser tests use, found the same way (tests/browsers.py)."""
    return find_chromium(say=lambda line: None)


def sample_markdown() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def html_pdf(body_html: str, *, furniture: bool = True, css: str = _STYLE) -> bytes:
    """Print ``body_html`` to A4 PDF with Chromium, with header and footer when asked."""
    from playwright.sync_api import sync_playwright

    html = f"<!doctype html><html lang=zh-CN><meta charset=utf-8><style>{css}</style>{body_html}"
    options = {"format": "A4", "print_background": True}
    if furniture:
        font = "font-family: 'Noto Serif CJK SC'; font-size: 9pt; width: 100%; text-align: center;"
        options.update(
            display_header_footer=True,
            header_template=f'<div style="{font}">{RUNNING_HEADER}</div>',
            footer_template=f'<div style="{font}">{FOOTER}</div>',
            margin={"top": "25mm", "bottom": "25mm", "left": "25mm", "right": "25mm"},
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_content(html, wait_until="load")
            return page.pdf(**options)
        finally:
            browser.close()


@cache
def sample_pdf() -> bytes:
    """The sample printed as an office prints it (header, footer, CJK font)."""
    # The Markdown escapes brackets in link texts; the printed page shows them plain.
    return html_pdf(cmarkgfm.markdown_to_html(sample_markdown()))


@cache
def narrow_pdf() -> bytes:
    """The sample printed in a 9 cm column: contents items and titles wrap, one title
    across a page break."""
    css = _STYLE + " body { width: 9cm; } h1 { font-size: 20pt; }"
    return html_pdf(cmarkgfm.markdown_to_html(sample_markdown()), css=css)


@cache
def image_pdf() -> bytes:
    """A scan: one page that is only a picture of text (a PNG drawn by Chromium)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 600, "height": 300})
            page.set_content("<h1 style='font-family: Noto Serif CJK SC'>工作简报 扫描件</h1>")
            png = page.screenshot()
        finally:
            browser.close()
    image = base64.b64encode(png).decode()
    return html_pdf(f"<img src='data:image/png;base64,{image}' width=500>", furniture=False)


def encrypt_pdf(data: bytes, password: str = "secret") -> bytes:
    """The same PDF, encrypted with a user password (pypdf, a test-only dependency)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --------------------------------------------------------------------------- Word

_LINK = re.compile(r"\[((?:\\.|[^\]\\])*)\]\(([^)\s]*)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _add_hyperlink(paragraph, text: str, url: str) -> None:
    """python-docx has no public API for hyperlinks: add the relationship and w:hyperlink."""
    from docx.opc.constants import RELATIONSHIP_TYPE
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    rel = paragraph.part.relate_to(url, RELATIONSHIP_TYPE.HYPERLINK, is_external=True)
    link = OxmlElement("w:hyperlink")
    link.set(qn("r:id"), rel)
    run = OxmlElement("w:r")
    text_element = OxmlElement("w:t")
    text_element.text = text
    text_element.set(qn("xml:space"), "preserve")
    run.append(text_element)
    link.append(run)
    paragraph._p.append(link)


def _add_inline(paragraph, text: str) -> None:
    """Markdown inline text as runs: links as hyperlinks, **x** as bold, escapes undone."""
    position = 0
    for found in _LINK.finditer(text):
        _add_runs(paragraph, text[position : found.start()])
        label = re.sub(r"\\(.)", r"\1", found.group(1))
        if found.group(2).startswith("http"):
            _add_hyperlink(paragraph, label, found.group(2))
        else:
            paragraph.add_run(label)
        position = found.end()
    _add_runs(paragraph, text[position:])


def _add_runs(paragraph, text: str) -> None:
    text = re.sub(r"\\(.)", r"\1", text)
    position = 0
    for found in _BOLD.finditer(text):
        paragraph.add_run(text[position : found.start()])
        paragraph.add_run(found.group(1)).bold = True
        position = found.end()
    paragraph.add_run(text[position:])


def markdown_docx(markdown: str, *, hand_headings: bool = False) -> bytes:
    """A Word document with the Markdown's structure: Heading N styles, list paragraphs,
    hyperlinks, bold, tables. With ``hand_headings``, headings are typed as bold, larger
    Normal paragraphs instead, as offices that never touch the style gallery do."""
    from docx import Document
    from docx.shared import Pt

    document = Document()
    blocks = re.split(r"\n\s*\n", markdown.strip())
    for block in blocks:
        lines = block.strip().splitlines()
        first = lines[0]
        if heading := re.match(r"^(#{1,6})\s+(.*)$", first):
            level, text = len(heading.group(1)), heading.group(2)
            if hand_headings:
                paragraph = document.add_paragraph()
                run = paragraph.add_run(re.sub(r"\\(.)", r"\1", text))
                run.bold = True
                run.font.size = Pt(24 - 2 * level)
            else:
                paragraph = document.add_heading(level=level)
                _add_inline(paragraph, text)
        elif re.match(r"^[-*_]{3,}$", first):
            continue
        elif first.startswith("|"):
            rows = [
                [cell.strip() for cell in line.strip().strip("|").split("|")]
                for line in lines
                if not re.match(r"^\|[\s:|-]+\|$", line.strip())
            ]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
        elif re.match(r"^\s*[-*+]\s", first):
            for line in lines:
                paragraph = document.add_paragraph(style="List Bullet")
                _add_inline(paragraph, re.sub(r"^\s*[-*+]\s+", "", line))
        elif first.startswith("!["):
            continue  # the sample's image has no file: nothing to embed
        else:
            paragraph = document.add_paragraph()
            _add_inline(paragraph, "".join(line.strip() for line in lines))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@cache
def sample_docx(hand_headings: bool = False) -> bytes:
    return markdown_docx(sample_markdown(), hand_headings=hand_headings)
