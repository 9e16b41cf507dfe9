"""A Word .docx -> the intermediate document (python-docx).

python-docx, not mammoth: mammoth turns a document into clean HTML and in doing so drops
what we need when an office formats titles by hand (run sizes and weights), while
python-docx gives the styles, the runs with their font, the hyperlinks and the tables in
document order, and nothing more; both are maintained, MIT/BSD licensed.

- headings: Word's heading styles ("Heading 1", "标题 1", "Title") and outline levels; a
  paragraph typed in bold and larger than the body text, alone on its paragraph, is a
  heading too (titles formatted by hand);
- list paragraphs (numbering or a List style) become list items; Word's automatic numbers
  are not part of the text, typed markers (①) are kept;
- bold and italic runs become Markdown emphasis, hyperlinks become links;
- tables become tables; pictures are listed as not imported.

Every block's origin is its paragraph number in the document body ("paragraph 12"),
counting tables as one.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter

from ..document import Block, Document, DocumentError, escape_markdown, normalize_compatibility

_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)
_HAND_HEADING_MAX_CHARS = 100
# Word's XML namespace, for the few things python-docx does not expose (outline level,
# pictures inside runs).
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def read_docx(data: bytes) -> Document:
    """Read a .docx; raise DocumentError when it is not a readable Word document."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        word = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, SyntaxError) as exc:
        # SyntaxError: lxml's XMLSyntaxError, for a part that is not well-formed XML.
        raise DocumentError("document-docx-damaged", detail=str(exc)) from None

    styles = _Styles(word)
    body_size = _body_size(word, styles)
    document = Document(format="docx", blocks=[])
    hand_sizes: set[float] = set()
    pending: list[tuple[Block, float]] = []  # hand headings, levelled once all sizes are known
    for number, item in enumerate(word.iter_inner_content(), start=1):
        origin = f"paragraph {number}"
        if isinstance(item, Table):
            rows = [[_cell_text(cell, styles) for cell in row.cells] for row in item.rows]
            if rows:
                document.blocks.append(Block("table", origin=origin, rows=rows))
            continue
        text, pictures = _inline(item, styles)
        document.blocks.extend(Block("image", origin=origin) for _ in range(pictures))
        if not text.strip():
            continue
        level = _heading_level(item, styles)
        if level:
            document.blocks.append(Block("heading", _strip_emphasis(text), origin, level=level))
        elif (size := _hand_heading_size(item, body_size, styles)) is not None:
            block = Block("heading", _strip_emphasis(text), origin)
            document.blocks.append(block)
            pending.append((block, size))
            hand_sizes.add(size)
        elif _is_list_item(item, styles):
            document.blocks.append(Block("item", text, origin))
        else:
            document.blocks.append(Block("paragraph", text, origin))
    document.normalized = styles.replaced
    ranked = sorted(hand_sizes, reverse=True)
    for block, size in pending:
        block.level = min(6, ranked.index(size) + 1)
    return document


# --------------------------------------------------------------------------- styles


class _Styles:
    """Style facts looked up once per style.

    python-docx finds a paragraph's style by scanning every style in the document each
    time (``paragraph.style``); on a 250-paragraph bulletin that was 9 of 10 seconds, so
    styles are indexed by id here and their inherited font size, weight and heading level
    computed once.
    """

    def __init__(self, word) -> None:
        from docx.enum.style import WD_STYLE_TYPE

        self.by_id = {style.style_id: style for style in word.styles}
        self.default = word.styles.default(WD_STYLE_TYPE.PARAGRAPH)
        # Text with no size anywhere in its styles is set in the document default size.
        half_points = word.styles.element.find(f"{_W}docDefaults/{_W}rPrDefault/{_W}rPr/{_W}sz")
        value = half_points.get(f"{_W}val", "") if half_points is not None else ""
        self.default_size = int(value) / 2 if value.isdigit() else 10.5  # 五号
        self._facts: dict[str | None, tuple[int, float, bool, bool]] = {}
        self.replaced = 0  # compatibility characters replaced while reading, for the report

    def facts(self, style_id: str | None) -> tuple[int, float, bool, bool]:
        """(heading level, font size in pt, bold, is a List style) of a paragraph style."""
        if style_id not in self._facts:
            style = self.by_id.get(style_id) if style_id else None
            style = style if style is not None else self.default
            size = _style_attr(style, lambda s: s.font.size)
            self._facts[style_id] = (
                _style_level(style),
                size.pt if size is not None else self.default_size,
                bool(_style_attr(style, lambda s: s.font.bold)),
                ((style.name if style is not None else "") or "").lower().startswith("list"),
            )
        return self._facts[style_id]

    def run_bold(self, run) -> bool | None:
        style_id = run._r.style
        style = self.by_id.get(style_id) if style_id else None
        return style.font.bold if style is not None else None


def _style_attr(style, get):
    """The first value ``get`` finds on ``style`` or the styles it is based on."""
    while style is not None:
        value = get(style)
        if value is not None:
            return value
        style = style.base_style
    return None


def _style_level(style) -> int:
    while style is not None:
        if found := _HEADING_STYLE.match(style.name or ""):
            return int(found.group(1))
        if (style.name or "").lower() in ("title", "标题"):
            return 1
        style = style.base_style
    return 0


def _heading_level(paragraph, styles: _Styles) -> int:
    level = styles.facts(paragraph._p.style)[0]
    if level:
        return level
    outline = paragraph._p.find(f"{_W}pPr/{_W}outlineLvl")
    if outline is not None and outline.get(f"{_W}val", "9").isdigit():
        value = int(outline.get(f"{_W}val"))
        if value < 9:  # 9 means body text
            return value + 1
    return 0


def _is_list_item(paragraph, styles: _Styles) -> bool:
    if paragraph._p.find(f"{_W}pPr/{_W}numPr") is not None:
        return True
    return styles.facts(paragraph._p.style)[3]


def _run_size(run, paragraph, styles: _Styles) -> float:
    if run.font.size is not None:
        return run.font.size.pt
    return styles.facts(paragraph._p.style)[1]


def _run_bold(run, paragraph, styles: _Styles) -> bool:
    if run.bold is not None:
        return run.bold
    bold = styles.run_bold(run)
    if bold is not None:
        return bold
    return styles.facts(paragraph._p.style)[2]


def _body_size(word, styles: _Styles) -> float:
    """The size most body text is set in (weighted by characters); 10.5 pt (五号) if unknown."""
    weights: Counter[float] = Counter()
    for paragraph in word.paragraphs:
        if _heading_level(paragraph, styles):
            continue
        for run in paragraph.runs:
            if run.text.strip():
                weights[_run_size(run, paragraph, styles)] += len(run.text)
    return weights.most_common(1)[0][0] if weights else styles.default_size


def _hand_heading_size(paragraph, body_size: float, styles: _Styles) -> float | None:
    """The size of a paragraph typed as a title: short, all bold, larger than the body."""
    runs = [r for r in paragraph.runs if r.text.strip()]
    if not runs or len(paragraph.text.strip()) > _HAND_HEADING_MAX_CHARS:
        return None
    if not all(_run_bold(r, paragraph, styles) for r in runs):
        return None
    sizes = [_run_size(r, paragraph, styles) for r in runs]
    if any(s <= body_size for s in sizes):
        return None
    return max(sizes)


# --------------------------------------------------------------------------- inline


def _inline(paragraph, styles: _Styles) -> tuple[str, int]:
    """The paragraph as Markdown inline text, and how many pictures it holds."""
    from docx.text.hyperlink import Hyperlink

    pieces: list[tuple[str, bool, bool]] = []  # (markdown, bold, italic)
    pictures = 0
    for item in paragraph.iter_inner_content():
        if isinstance(item, Hyperlink):
            label = escape_markdown(_clean(item.text, styles))
            url = item.url or ""
            piece = f"[{label}]({url})" if re.match(r"https?://", url) else label
            pieces.append((piece, False, False))
            continue
        pictures += len(item._r.findall(f".//{_W}drawing")) + len(item._r.findall(f".//{_W}pict"))
        text = _clean(item.text, styles)
        if text:
            bold = _run_bold(item, paragraph, styles)
            pieces.append((escape_markdown(text), bold, bool(item.italic)))
    return _emphasise(pieces), pictures


def _clean(text: str, styles: _Styles) -> str:
    text, replaced = normalize_compatibility(text)
    styles.replaced += replaced
    return text.replace("\t", " ").replace("\n", " ")


def _emphasise(pieces: list[tuple[str, bool, bool]]) -> str:
    """Join runs, wrapping runs of the same emphasis once (Word splits runs freely)."""
    merged: list[list] = []
    for text, bold, italic in pieces:
        if merged and merged[-1][1:] == [bold, italic]:
            merged[-1][0] += text
        else:
            merged.append([text, bold, italic])
    bold_everywhere = all(bold for _, bold, _ in merged)
    out = ""
    for text, bold, italic in merged:
        core = text.strip()
        if not core:
            out += text
            continue
        lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
        if italic:
            core = f"*{core}*"
        if bold and not bold_everywhere:  # a wholly bold paragraph is a style, not emphasis
            core = f"**{core}**"
        out += lead + core + trail
    return out.strip()


def _strip_emphasis(text: str) -> str:
    return re.sub(r"(?<!\\)\*+", "", text).strip()


def _cell_text(cell, styles: _Styles) -> str:
    parts = [_inline(p, styles)[0] for p in cell.paragraphs]
    return " ".join(p for p in parts if p)
