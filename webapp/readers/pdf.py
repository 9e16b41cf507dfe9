"""A PDF's text layer -> the intermediate document (pypdfium2: PDFium, BSD/Apache licensed).

Why PDFium and not pdfminer.six or pdfplumber (which is built on pdfminer.six): reading the
31-page printed sample took 13 s with pdfminer.six and 14 s with pypdf, both parsing the
content streams in Python; PDFium, the PDF engine inside Chromium, reads it in 1.5-2.5 s
including the whole import (``bench/import_documents.py``). No AGPL code is involved
(PyMuPDF is AGPL).

What an office PDF gives us is lines of positioned characters in fonts. From them:

- page furniture: a line near the top or bottom edge that recurs on most pages (digits
  aside), or that is a page number ("第 3 页 / 共 9 页", "- 3 -", "3"), is dropped and
  listed once in the report;
- headings: lines larger than the body text, or bold body-size lines that stand alone
  (bold only when the PDF says so: a font weight, or "Bold"/"Hei" in the font's name);
  consecutive heading lines in the same size and weight are one title that wrapped;
- paragraphs: a line starts a new paragraph when it is indented, follows a gap, follows a
  short line that ended a sentence, or starts with a list marker (①, •); other lines are
  joined to the one before, with no space between Chinese characters;
- a page ends every paragraph: the importer core joins paragraphs a page break cut
  mid-sentence, the same way for every format, and says so in the report;
- link annotations become Markdown links on the lines they cover; images are listed.

Pages are read one at a time and only their lines are kept, so memory does not grow with
the characters of the whole document.
"""

from __future__ import annotations

import ctypes
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from ..document import (
    Block,
    Document,
    DocumentError,
    Note,
    escape_markdown,
    normalize_compatibility,
)

# A line in the top or bottom this share of the page may be a running header or footer.
_EDGE_SHARE = 0.12
# A recurring edge line is furniture when it is on at least this share of the pages.
_FURNITURE_SHARE = 0.5
# A bold line at body size is a heading only when it is this short and stands alone.
_BOLD_HEADING_MAX_CHARS = 60
_PAGE_NUMBER = re.compile(
    r"^(?:第\s*\d+\s*页(?:\s*[/／,，]?\s*共\s*\d+\s*页)?|[-–—]?\s*\d{1,4}\s*[-–—]?"
    r"|\d{1,4}\s*/\s*\d{1,4}|page\s*\d+(?:\s*of\s*\d+)?)$",
    re.IGNORECASE,
)
_BOLD_FONT = re.compile(r"bold|black|heavy|semibold|demibold|hei|w[6-9]\b", re.IGNORECASE)
_ITEM_START = re.compile(r"^(?:[\u2460-\u2473\u3251-\u325f\u32b1-\u32bf\u2776-\u2793]|[•●▪■◆·])")
_NUMERAL = "0-9一二三四五六七八九十"
_NUMBERED = re.compile(
    rf"^(?:[(（][{_NUMERAL}]+[)）]|[{_NUMERAL}]+[、.．]|第[{_NUMERAL}]+[章节条篇部])"
)
_BULLET = re.compile(r"^[•●▪■◆·]\s*")
# PDFium is not thread-safe; a web server may read two uploads at once.
_PDFIUM = threading.Lock()


@dataclass
class _Line:
    page: int
    text: str
    x0: float
    x1: float
    top: float  # distance from the top of the page
    bottom: float
    size: float
    bold: bool
    url: str | None = None


@dataclass
class _Page:
    number: int
    height: float
    lines: list[_Line] = field(default_factory=list)
    images: int = 0
    normalized: int = 0  # compatibility characters replaced


def read_pdf(data: bytes) -> Document:
    """Read a PDF with a text layer; raise DocumentError for a scan, an encrypted or a
    damaged file."""
    with _PDFIUM:
        pages = _read_pages(data)
    if not any(page.lines for page in pages):
        raise DocumentError("document-pdf-scan")
    document = Document(format="pdf", blocks=[], pages=len(pages))
    document.normalized = sum(page.normalized for page in pages)
    _drop_furniture(pages, document)
    lines = [line for page in pages for line in page.lines]
    if not lines:
        raise DocumentError("document-pdf-only-furniture")
    body_size = _body_size(lines)
    left = _common([round(ln.x0) for ln in lines if abs(ln.size - body_size) < 0.6])
    right = _common([round(ln.x1) for ln in lines if abs(ln.size - body_size) < 0.6])
    levels = _heading_levels(lines, body_size)
    leading = _leading(pages, body_size)

    runs = _runs(pages, body_size, left, right, leading)
    _emit(runs, document, body_size, levels)
    return document


# --------------------------------------------------------------------------- reading pages


def _read_pages(data: bytes) -> list[_Page]:
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == raw.FPDF_ERR_PASSWORD:
            raise DocumentError("document-pdf-encrypted") from None
        raise DocumentError("document-pdf-damaged", detail=str(exc)) from None
    try:
        pages = []
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                pages.append(_read_page(pdf, page, index + 1))
            finally:
                page.close()
        return pages
    finally:
        pdf.close()


def _read_page(pdf, page, number: int) -> _Page:
    import pypdfium2.raw as raw

    height = page.get_height()
    result = _Page(number, height)
    result.images = _count_images(raw, page.raw)
    links = _links(pdf, page)
    textpage = page.get_textpage()
    try:
        handle = textpage.raw
        left, right = ctypes.c_double(), ctypes.c_double()
        bottom, top = ctypes.c_double(), ctypes.c_double()
        chars: list[tuple[str, float, float, float, float, float, bool]] = []
        for index in range(raw.FPDFText_CountChars(handle)):
            char = chr(raw.FPDFText_GetUnicode(handle, index))
            if char in "\r\n":
                _add_line(result, chars, links)
                chars = []
                continue
            if raw.FPDFText_IsGenerated(handle, index) or char.isspace():
                chars.append((" ", 0, 0, 0, 0, 0, False))
                continue
            raw.FPDFText_GetCharBox(handle, index, left, right, bottom, top)
            chars.append(
                (
                    char,
                    left.value,
                    right.value,
                    height - top.value,
                    height - bottom.value,
                    round(raw.FPDFText_GetFontSize(handle, index), 1),
                    _is_bold(raw, handle, index),
                )
            )
        _add_line(result, chars, links)
    finally:
        textpage.close()
    return result


def _count_images(raw, page_handle) -> int:
    """Image objects on the page, also inside form XObjects (raw calls: the helper objects
    pypdfium2 wraps around each of a page's ~1,000 text objects cost half the reading)."""
    count = 0
    for index in range(raw.FPDFPage_CountObjects(page_handle)):
        count += _image_count(raw, raw.FPDFPage_GetObject(page_handle, index))
    return count


def _image_count(raw, obj) -> int:
    kind = raw.FPDFPageObj_GetType(obj)
    if kind == raw.FPDF_PAGEOBJ_IMAGE:
        return 1
    if kind == raw.FPDF_PAGEOBJ_FORM:
        return sum(
            _image_count(raw, raw.FPDFFormObj_GetObject(obj, i))
            for i in range(raw.FPDFFormObj_CountObjects(obj))
        )
    return 0


def _is_bold(raw, handle, index: int) -> bool:
    """Bold when the PDF tells: a font weight of 600 or more, or a bold font name."""
    if raw.FPDFText_GetFontWeight(handle, index) >= 600:
        return True
    flags = ctypes.c_int()
    size = raw.FPDFText_GetFontInfo(handle, index, None, 0, ctypes.byref(flags))
    if size <= 1:
        return False
    name = ctypes.create_string_buffer(size)
    raw.FPDFText_GetFontInfo(handle, index, name, size, ctypes.byref(flags))
    return bool(_BOLD_FONT.search(name.value.decode("latin-1")))


def _links(pdf, page) -> list[tuple[tuple[float, float, float, float], str]]:
    """(rectangle, url) of the page's web links, in PDF coordinates."""
    import pypdfium2.raw as raw

    found = []
    position = ctypes.c_int(0)
    link = raw.FPDF_LINK()
    while raw.FPDFLink_Enumerate(page.raw, ctypes.byref(position), ctypes.byref(link)):
        action = raw.FPDFLink_GetAction(link)
        if not action:
            continue
        size = raw.FPDFAction_GetURIPath(pdf.raw, action, None, 0)
        if size <= 1:
            continue
        buffer = ctypes.create_string_buffer(size)
        raw.FPDFAction_GetURIPath(pdf.raw, action, buffer, size)
        url = buffer.value.decode("utf-8", "replace").strip()
        rect = raw.FS_RECTF()
        if re.match(r"https?://", url) and raw.FPDFLink_GetAnnotRect(link, ctypes.byref(rect)):
            found.append(((rect.left, rect.bottom, rect.right, rect.top), url))
    return found


def _add_line(page: _Page, chars, links) -> None:
    drawn = [c for c in chars if c[0] != " "]
    if not drawn:
        return
    text, replaced = normalize_compatibility(re.sub(r"\s+", " ", "".join(c[0] for c in chars)))
    text = text.strip()
    page.normalized += replaced
    sizes = Counter(c[5] for c in drawn)
    x0 = min(c[1] for c in drawn)
    x1 = max(c[2] for c in drawn)
    top = min(c[3] for c in drawn)
    bottom = max(c[4] for c in drawn)
    url = None
    for (lx0, ly0, lx1, ly1), target in links:
        link_top, link_bottom = page.height - ly1, page.height - ly0
        overlap = min(bottom, link_bottom) - max(top, link_top)
        if overlap > 0.5 * (bottom - top) and lx0 < x1 and lx1 > x0:
            url = target
            break
    size = sizes.most_common(1)[0][0]
    bold = sum(1 for c in drawn if c[6]) > len(drawn) / 2
    previous = page.lines[-1] if page.lines else None
    if (
        previous is not None
        and abs(previous.top - top) < 0.3 * size
        and x0 >= previous.x1 - 1
        and (previous.size, previous.bold, previous.url) == (size, bold, url)
    ):
        # PDFium breaks a printed line where the text object changes (at a quote mark, a
        # run in another font); on the same baseline, to the right, it is the same line.
        narrow = not _is_wide(previous.text[-1]) and not _is_wide(text[0])
        spaced = narrow and x0 - previous.x1 > 0.15 * size
        previous.text += (" " if spaced else "") + text
        previous.x1 = x1
        previous.bottom = max(previous.bottom, bottom)
        return
    page.lines.append(
        _Line(
            page.number,
            text,
            x0,
            x1,
            top,
            bottom,
            size,
            bold,
            url,
        )
    )


# --------------------------------------------------------------------------- furniture


def _furniture_key(text: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", "", text))


def _drop_furniture(pages: list[_Page], document: Document) -> None:
    """Remove running headers, footers and page numbers; note each kind once."""

    def at_edge(page: _Page, line: _Line) -> str | None:
        if line.bottom <= page.height * _EDGE_SHARE:
            return "header"
        if line.top >= page.height * (1 - _EDGE_SHARE):
            return "footer"
        return None

    seen: dict[tuple[str, str], list[int]] = {}
    for page in pages:
        for line in page.lines:
            edge = at_edge(page, line)
            if edge:
                pages_of = seen.setdefault((edge, _furniture_key(line.text)), [])
                if page.number not in pages_of:
                    pages_of.append(page.number)
    needed = max(2, int(len(pages) * _FURNITURE_SHARE + 0.5)) if len(pages) > 1 else 2
    recurring = {key for key, numbers in seen.items() if len(numbers) >= needed}

    dropped: dict[tuple[str, str], tuple[str, list[int]]] = {}
    for page in pages:
        kept = []
        for line in page.lines:
            edge = at_edge(page, line)
            key = (edge, _furniture_key(line.text)) if edge else None
            if key and (key in recurring or _PAGE_NUMBER.match(line.text.strip())):
                numbers = dropped.setdefault(key, (line.text, []))[1]
                if page.number not in numbers:
                    numbers.append(page.number)
            else:
                kept.append(line)
        page.lines = kept
    for (edge, _), (text, numbers) in dropped.items():
        code = "furniture-page-number" if _PAGE_NUMBER.match(text.strip()) else f"furniture-{edge}"
        document.furniture.append(Note(code, _page_span(numbers), {"text": text}))


def _page_span(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"page {numbers[0]}"
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"pages {numbers[0]}–{numbers[-1]}"
    shown = ",".join(map(str, numbers[:5])) + (",…" if len(numbers) > 5 else "")
    return f"pages {shown}"


# --------------------------------------------------------------------------- layout


def _common(values: list):
    return Counter(values).most_common(1)[0][0] if values else 0


def _body_size(lines: list[_Line]) -> float:
    """The size most of the text is set in (weighted by characters)."""
    weights: Counter[float] = Counter()
    for line in lines:
        weights[line.size] += len(line.text)
    return weights.most_common(1)[0][0]


def _leading(pages: list[_Page], body_size: float) -> float:
    """The usual space between two lines of one paragraph (between body lines, the mode)."""
    gaps: Counter[float] = Counter()
    for page in pages:
        for above, below in zip(page.lines, page.lines[1:], strict=False):
            if above.size == below.size == body_size and below.top > above.top:
                gaps[round(below.top - above.bottom, 1)] += 1
    return gaps.most_common(1)[0][0] if gaps else body_size * 0.5


def _is_heading_style(line: _Line, body_size: float) -> bool:
    return line.size >= body_size + 1 or (line.bold and line.size >= body_size - 0.5)


def _heading_levels(lines: list[_Line], body_size: float) -> dict[tuple[float, bool], int]:
    """Heading level by style: larger sizes first, bold at body size last."""
    styles = {(line.size, line.bold) for line in lines if _is_heading_style(line, body_size)}
    ordered = sorted(styles, key=lambda s: (-s[0], not s[1]))
    return {style: min(6, index + 1) for index, style in enumerate(ordered)}


def _join_text(left: str, right: str) -> str:
    """Two lines of one paragraph: a space only between two narrow characters."""
    if not left:
        return right
    if not right:
        return left
    a, b = left[-1], right[0]
    narrow = not _is_wide(a) and not _is_wide(b)
    if narrow and a == "-" and len(left) > 1 and left[-2].isalpha() and b.islower():
        return left[:-1] + right  # a word hyphenated at the line end
    return left + (" " if narrow else "") + right


def _first_word_width(line: _Line) -> float:
    """Roughly how wide the line's first word is: one character if Chinese, else its letters."""
    if _is_wide(line.text[0]):
        return line.size
    word = re.match(r"\S+", line.text)
    return len(word.group()) * line.size * 0.55 if word else line.size


def _is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


@dataclass
class _Run:
    """Lines being gathered into one block."""

    kind: str  # heading, paragraph, item, image
    lines: list[_Line]
    page: int = 0  # images: the page they are on


def _runs(
    pages: list[_Page], body_size: float, left: float, right: float, leading: float
) -> list[_Run]:
    """Gather lines into headings, paragraphs and items; images go after their page's text.

    A page break ends every paragraph (the core repairs those a page cut mid-sentence) but
    not a heading: a title cut by a page break is still one title.
    """
    runs: list[_Run] = []
    for page in pages:
        first_on_page = True
        for line in page.lines:
            previous = runs[-1] if runs and runs[-1].kind != "image" else None
            last = previous.lines[-1] if previous else None
            if _is_heading_style(line, body_size):
                gap = line.top - last.bottom if last and not first_on_page else 0.0
                # A title wraps when its line is full; "二、总体要求" over "（一）指导思想" is
                # two headings in the same style, and a numbered line always starts one.
                same = (
                    previous is not None
                    and previous.kind == "heading"
                    and (last.size, last.bold) == (line.size, line.bold)
                    and gap < line.size * 1.2
                    and last.x1 - last.x0 >= 0.6 * (right - left)
                    and not _NUMBERED.match(line.text)
                )
                if same:
                    previous.lines.append(line)
                else:
                    runs.append(_Run("heading", [line]))
            elif first_on_page or previous is None or previous.kind == "heading":
                runs.append(_Run(_kind_of(line), [line]))
            elif _starts_block(line, last, left, right, leading):
                runs.append(_Run(_kind_of(line), [line]))
            else:
                previous.lines.append(line)
            first_on_page = False
        runs.extend(_Run("image", [], page.number) for _ in range(page.images))
    return runs


def _kind_of(line: _Line) -> str:
    return "item" if _ITEM_START.match(line.text) else "paragraph"


def _starts_block(line: _Line, last: _Line, left: float, right: float, leading: float) -> bool:
    """Whether ``line`` starts a new paragraph or item rather than continuing ``last``."""
    indent = line.size * 0.8
    return (
        bool(_ITEM_START.match(line.text))
        or line.top - last.bottom > leading + line.size * 0.2
        # a first-line indent after an unindented line (a list item's wrapped lines and a
        # one-line paragraph keep their indent, and are told apart otherwise)
        or (line.x0 > left + indent and last.x0 <= left + indent)
        # a line that stops short of the margin, with room for the next line's first word,
        # ends its paragraph (Chinese fills every line of a paragraph but the last)
        or right - last.x1 > _first_word_width(line) + line.size * 0.5
    )


def _emit(
    runs: list[_Run], document: Document, body_size: float, levels: dict[tuple[float, bool], int]
) -> None:
    for run in runs:
        if run.kind == "image":
            document.blocks.append(Block("image", origin=f"page {run.page}"))
            continue
        origin = f"page {run.lines[0].page}"
        text = _run_text(run.lines)
        if run.kind == "heading":
            lone_bold = run.lines[0].size < body_size + 1
            if lone_bold and (len(text) > _BOLD_HEADING_MAX_CHARS or len(run.lines) > 1):
                run.kind = "paragraph"  # a bold paragraph, not a heading
            elif len(run.lines) > 1:
                document.joined.append(
                    Note(
                        "heading-joined",
                        origin,
                        {"lines": len(run.lines), "excerpt": _plain_excerpt(run.lines)},
                    )
                )
        if run.kind == "heading":
            key = (run.lines[0].size, run.lines[0].bold)
            document.blocks.append(Block("heading", text, origin, level=levels.get(key, 6)))
        elif run.kind == "item":
            document.blocks.append(Block("item", _BULLET.sub("", text), origin))
            document.joined_lines += len(run.lines) - 1
        else:
            document.blocks.append(Block("paragraph", text, origin))
            document.joined_lines += len(run.lines) - 1


def _run_text(lines: list[_Line]) -> str:
    """The lines of one block as Markdown inline: escaped text, links where annotated."""
    pieces: list[tuple[str, str | None]] = []
    for line in lines:
        if pieces and pieces[-1][1] == line.url:
            pieces[-1] = (_join_text(pieces[-1][0], line.text), line.url)
        else:
            pieces.append((line.text, line.url))
    out = ""
    for text, url in pieces:
        piece = escape_markdown(text)
        if url:
            piece = f"[{piece}]({url})"
        out = _join_text(out, piece) if out else piece
    return out


def _plain_excerpt(lines: list[_Line], size: int = 40) -> str:
    text = ""
    for line in lines:
        text = _join_text(text, line.text)
    return text if len(text) <= size else text[:size] + "…"
