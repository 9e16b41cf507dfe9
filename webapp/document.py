"""The intermediate document every reader produces, and the text clean-up readers share.

A Word file, a PDF and a Markdown file become the same thing: a list of blocks (headings
with a level, paragraphs, list items, tables, images), each remembering where it came from
("page 3", "paragraph 12"), with inline links and emphasis written as Markdown. The importer
core (``importing``) reads that once, whatever the format was, so the contents, titles,
sources, page-break repairs and leads are found by one set of rules.

Pure: standard library only, no Flask, no database.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field


class DocumentError(ValueError):
    """A document we refuse.

    ``code`` names the refusal (a key of ``errors.MESSAGES``; pages and the CLI translate it
    with ``errors.describe_document_error``) and ``params`` fill its message. ``line`` is
    the 1-based line it is about, or None when the problem is the whole file; ``where``
    replaces "line N" when the document was not text ("page 3"). ``detail`` is raw text
    from a library (why pdfium or python-docx gave up), shown untranslated.
    """

    def __init__(
        self,
        code: str,
        line: int | None = None,
        *,
        where: str | None = None,
        detail: str = "",
        **params: object,
    ) -> None:
        self.code = code
        self.line = line
        self.where = where or (f"line {line}" if line is not None else "")
        self.detail = detail
        self.params = params
        values = "".join(f" {k}={v!r}" for k, v in params.items())
        text = f"{code}{values}{f' ({detail})' if detail else ''}"
        super().__init__(f"{self.where}: {text}" if self.where else text)


@dataclass
class Note:
    """Something the importer tells the editor about a document: a repair, a drop, a
    warning. ``code`` is a key of ``errors.NOTES``, ``where`` the place ("line 44",
    "page 3", "paragraph 12"; "" for the whole document), ``params`` fill the message;
    a param named ``to`` is a place too (where a dropped passage ends). Translated when
    shown (``errors.describe_note``), so this module stays free of Flask."""

    code: str
    where: str = ""
    params: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        # Logs and test failures; people get errors.describe_note().
        values = " ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.where + ': ' if self.where else ''}{self.code} {values}".rstrip()


def note(code: str, line: int | None = None, **params: object) -> Note:
    """A note about 1-based ``line`` of the document's Markdown lines (None: the whole)."""
    return Note(code, f"line {line}" if line is not None else "", params)


@dataclass
class Block:
    """One unit of a document: what it is, its text as Markdown inline, where it came from."""

    kind: str  # heading, paragraph, item, table, image
    text: str = ""
    origin: str = ""
    level: int = 0  # headings: 1-6
    rows: list[list[str]] = field(default_factory=list)  # tables: cells as Markdown inline


@dataclass
class Document:
    """What a reader hands the importer core, with what it did on the way."""

    format: str  # "markdown", "docx", "pdf"
    blocks: list[Block]
    pages: int | None = None
    furniture: list[Note] = field(default_factory=list)  # running headers, footers, page numbers
    joined: list[Note] = field(default_factory=list)  # headings printed on several lines
    joined_lines: int = 0  # lines joined into paragraphs
    normalized: int = 0  # compatibility characters replaced ("⼯" -> "工")
    warnings: list[Note] = field(default_factory=list)

    def lines(self) -> tuple[list[str], list[str]]:
        """The document as Markdown lines, and the origin of each line (same length).

        Blocks are separated by a blank line, except consecutive list items, which form one
        list. Paragraphs are one line each: the reader has already joined their lines.
        """
        lines: list[str] = []
        origins: list[str] = []
        previous = None
        for block in self.blocks:
            if block.kind == "image":
                continue
            if lines and not (block.kind == "item" and previous == "item"):
                lines.append("")
                origins.append(block.origin)
            for line in _block_lines(block):
                lines.append(line)
                origins.append(block.origin)
            previous = block.kind
        return lines, origins

    @property
    def images(self) -> list[str]:
        return [b.origin for b in self.blocks if b.kind == "image"]


def _block_lines(block: Block) -> list[str]:
    if block.kind == "heading":
        return ["#" * max(1, min(6, block.level)) + " " + block.text]
    if block.kind == "item":
        return ["- " + block.text]
    if block.kind == "table":
        width = max(len(row) for row in block.rows)
        rows = [row + [""] * (width - len(row)) for row in block.rows]
        out = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        out.insert(1, "|" + " --- |" * width)
        return out
    return [_guard_line_start(block.text)]


def _guard_line_start(text: str) -> str:
    """Escape what would make a paragraph's first characters Markdown syntax."""
    if re.match(r"^(?:#{1,6}(?:\s|$)|[-+*>|]\s|\d{1,9}[.)]\s|[-*_]{3,}\s*$)", text):
        number = re.match(r"^\d{1,9}", text)
        if number:
            return number.group() + "\\" + text[number.end() :]
        return "\\" + text
    return text


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>])")


def escape_markdown(text: str) -> str:
    """Text from a Word file or a PDF, made safe to place in Markdown as it is."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


# --------------------------------------------------------------------------- compatibility forms

# CJK fonts draw a Kangxi radical and the ordinary character with one glyph, and a PDF's
# text layer maps the glyph back to whichever code point the font lists first: "⼯作简报",
# "第 1 ⻚". NFKC folds the Kangxi radicals (U+2F00-U+2FD5) and the CJK compatibility
# ideographs (U+F900-U+FAFF, U+2F800-U+2FA1F) to ordinary characters, but almost nothing in
# the CJK Radicals Supplement (U+2E80-U+2EF3), where "⻚" and "⻝" live. This table pairs each
# supplement radical with the ideograph Noto Sans/Serif CJK SC draws with the same glyph
# (read from the fonts' cmaps with fontTools), which is what a PDF printed with those
# fonts means by it.
_SUPPLEMENT_PAIRS = (
    "⺂乛⺃乚⺅亻⺇𠘨⺉刂⺋㔾⺍𭕄⺎兀⺏尣⺐尢⺒巳⺓幺⺔彑⺕彐⺖忄⺘扌⺙攵⺛旡⺞歺⺟母"
    "⺠民⺡氵⺣灬⺤爫⺦丬⺨犭⺩𤣩⺫罒⺭礻⺮𥫗⺯糹⺰纟⺱罓⺲罒⺳㓁⺹耂⺺肀⺽𦥑⺾艹⺿艹"
    "⻁虎⻂衤⻃覀⻄西⻅见⻆角⻇𧢲⻈讠⻉贝⻊𧾷⻋车⻌辶⻍辶⻎辶⻐钅⻑長⻒镸⻓长⻔门⻕𨸏⻖阝"
    "⻘青⻙韦⻚页⻛风⻜飞⻝食⻞𩙿⻟飠⻠饣⻡𩠐⻢马⻣骨⻤鬼⻥鱼⻦鸟⻧卤⻨麦⻩黄⻪黾⻫斉"
    "⻬齐⻭歯⻮齿⻯竜⻰龙⻱龜⻲亀⻳龟"
)
_COMPAT_TABLE: dict[int, str] = {
    ord(_SUPPLEMENT_PAIRS[i]): _SUPPLEMENT_PAIRS[i + 1] for i in range(0, len(_SUPPLEMENT_PAIRS), 2)
}
# Dash variants fonts use for the Chinese dash "——" (two em dashes): U+2E3A is a two-em
# dash, U+2E3B a three-em dash. They have no decomposition at all.
_COMPAT_TABLE.update({0x2E3A: "——", 0x2E3B: "———"})
for _code in [*range(0x2F00, 0x2FD6), *range(0xF900, 0xFB00), *range(0x2F800, 0x2FA20)]:
    # Only these ranges go through NFKC: applied to whole text it would also turn the
    # full-width punctuation the importer relies on ("，", "：", "（１）") into ASCII.
    _folded = unicodedata.normalize("NFKC", chr(_code))
    if _folded != chr(_code):
        _COMPAT_TABLE[_code] = _folded
_COMPAT_CHARS = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_COMPAT_TABLE)) + "]")


def normalize_compatibility(text: str) -> tuple[str, int]:
    """Replace Kangxi radicals, supplement radicals, compatibility ideographs and dash
    variants with the ordinary characters; returns the text and how many were replaced."""
    count = 0

    def replace(found: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return _COMPAT_TABLE[ord(found.group())]

    return _COMPAT_CHARS.sub(replace, text), count
