"""Importing the documents offices hold: the sample bulletin as Word and as a printed PDF.

The documents are made here from the sample (see tests/documents.py): Word with heading
styles or hand-formatted titles, a PDF printed by Chromium with a running header and a
"第 N 页 / 共 M 页" footer in a Noto CJK font, a narrow print where titles wrap, a scan, an
encrypted PDF and an old binary .doc.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from functools import cache

import lxml.html
import pytest
from sqlalchemy import func, select

from tests.documents import (
    RUNNING_HEADER,
    encrypt_pdf,
    image_pdf,
    markdown_docx,
    narrow_pdf,
    sample_docx,
    sample_markdown,
    sample_pdf,
)
from tests.helpers import csrf_token
from webapp.document import DocumentError
from webapp.extensions import db
from webapp.importing import normalize_title, parse_document
from webapp.models import Article, Issue, Topic

# The PDFs are printed by Chromium in a CJK font: both are checked before any test runs.
pytestmark = pytest.mark.usefixtures("chromium")

SECTIONS = ["质量要闻", "质量热点", "权威观点", "国际动态"]
# The sentence the converter split at a page break inside the 十四五 plan article.
PAGE_BREAK_REPAIRED = "对外保留牌子，行政监管职能进一步强化"
COMPAT_CODE_POINTS = re.compile("[\u2e80-\u2eff\u2f00-\u2fdf\uf900-\ufaff\u2e3a\u2e3b]")
PAGE_FURNITURE = re.compile(r"第\s*\d+\s*页|共\s*\d+\s*页")


@cache
def markdown_report():
    return parse_document(sample_markdown().encode())


DOCUMENTS = {
    "Word with heading styles": lambda: sample_docx(),
    "Word with titles typed in bold": lambda: sample_docx(hand_headings=True),
    "a printed PDF": sample_pdf,
    "a PDF whose titles wrap": narrow_pdf,
}


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --------------------------------------------------------------------------- the acceptance


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_the_sample_as_an_office_document_imports_like_the_markdown(kind):
    report = parse_document(DOCUMENTS[kind]())
    expected = markdown_report()

    assert [(s.name, len(s.titles)) for s in report.sections] == [
        (s.name, len(s.titles)) for s in expected.sections
    ]
    assert [normalize_title(a.title) for a in report.articles] == [
        normalize_title(a.title) for a in expected.articles
    ]
    assert normalize_title(report.title) == normalize_title(expected.title)
    assert report.period == expected.period
    plan = report.articles[0]
    assert PAGE_BREAK_REPAIRED in plan.body
    for article in report.articles:
        assert article.source_name, article.title
        for text in (article.title, article.body, article.lead):
            assert not PAGE_FURNITURE.search(text), (article.title, PAGE_FURNITURE.search(text))
            assert RUNNING_HEADER not in text
            assert not COMPAT_CODE_POINTS.search(text), article.title
    # The source links survive as links.
    assert plan.source_url.rstrip("/") == "http://samr.gov.cn"


def test_the_printed_pdf_really_carries_kangxi_radicals_and_they_come_out_ordinary():
    """Chromium with Noto CJK maps "工" in "工作简报" to the Kangxi radical ⼯ (U+2F2F) in
    the text layer, as office PDFs do; the import has none of them."""
    from pypdf import PdfReader

    layer = PdfReader(io.BytesIO(sample_pdf())).pages[0].extract_text()
    assert "\u2f2f" in layer  # ⼯作简报
    assert "\u2eda" in layer  # 第 1 ⻚ (a CJK Radicals Supplement form)
    report = parse_document(sample_pdf())
    assert report.title.endswith("工作简报")


def test_the_pdf_report_lists_page_furniture_once_and_where_each_article_is():
    report = parse_document(sample_pdf())
    assert report.format == "pdf" and report.pages and report.pages > 20
    assert len(report.furniture) == 2
    header, footer = report.furniture
    assert header.code == "furniture-header" and header.where == f"pages 1–{report.pages}"
    assert RUNNING_HEADER in header.params["text"]
    assert footer.code == "furniture-page-number" and footer.where == f"pages 1–{report.pages}"
    assert "第 1 页 / 共" in footer.params["text"]
    assert report.articles[0].origin.startswith("pages 1–")
    assert all(re.match(r"^pages? \d+", a.origin) for a in report.articles)
    assert report.joined_lines > 100
    # Notes name pages, not lines of the intermediate text.
    notes = report.repaired + report.dropped + report.warnings
    assert notes and all(re.match(r"^page \d+$", n.where) for n in notes if n.where)
    assert all(re.match(r"^page \d+$", n.params["to"]) for n in notes if "to" in n.params)


def test_a_wrapped_title_is_one_title_even_across_a_page_break():
    report = parse_document(narrow_pdf())
    wrapped = [note for note in report.repaired if note.code == "heading-joined"]
    assert len(wrapped) >= 5
    assert any("罗文在内蒙古" in note.params["excerpt"] for note in wrapped)
    titles = [a.title for a in report.articles]
    assert "罗文在内蒙古自治区调研时强调 压紧压实责任 坚决守住食品安全底线" in titles


def test_compatibility_characters_in_word_text_are_replaced_and_counted():
    markdown = sample_markdown().replace("工作简报", "\u2f2f作简报").replace("页", "\u2eda")
    markdown = markdown.replace("——", "\u2e3a", 1)  # the first section heading's dash
    report = parse_document(markdown_docx(markdown))
    assert report.title.endswith("工作简报")
    assert report.sections[0].name == "质量要闻"
    assert report.normalized >= 3


def test_word_tables_links_bold_and_pictures():
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # one RGB pixel
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    from docx import Document as WordDocument

    word = WordDocument(io.BytesIO(sample_docx()))
    word.add_paragraph("附图：")
    word.add_picture(io.BytesIO(png))
    table = word.add_table(rows=2, cols=2)
    for (r, c), text in {
        (0, 0): "指标",
        (0, 1): "数值",
        (1, 0): "中欧班列",
        (1, 1): "10000",
    }.items():
        table.cell(r, c).text = text
    out = io.BytesIO()
    word.save(out)

    report = parse_document(out.getvalue())
    last = report.articles[-1]
    assert "| 指标 | 数值 |" in last.body and "| 中欧班列 | 10000 |" in last.body
    assert len(report.images) == 1 and report.images[0].startswith("paragraph ")
    bold = next(a for a in report.articles if "天价" in a.title)
    assert "**本报讯（实习记者 贾润梅）**" in bold.body


# --------------------------------------------------------------------------- refusals

REFUSALS = {
    "a scan": (image_pdf, "document-pdf-scan", "This PDF is a scan with no text"),
    "an encrypted PDF": (lambda: encrypt_pdf(sample_pdf()), "document-pdf-encrypted", "encrypted"),
    "an old .doc": (
        lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2048),
        "document-doc",
        "save it as .docx",
    ),
    "a ZIP that is not Word": (
        lambda: _zip({"content.xml": "x"}),
        "document-not-docx",
        "not a Word",
    ),
    "Word without contents": (
        lambda: markdown_docx("# 工作简报\n\n## 一篇文章\n\n正文。"),
        "document-no-contents",
        "No contents found",
    ),
}


def _zip(files: dict[str, str]) -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


@pytest.mark.parametrize("kind", REFUSALS)
def test_each_refusal_is_one_clear_error(kind):
    make, code, words = REFUSALS[kind]
    with pytest.raises(DocumentError) as refused:
        parse_document(make())
    assert refused.value.code == code


@pytest.mark.parametrize("kind", REFUSALS)
def test_the_cli_refuses_with_status_1_one_line_and_nothing_saved(app, db_session, tmp_path, kind):
    make, _code, words = REFUSALS[kind]
    path = tmp_path / "bulletin.bin"
    path.write_bytes(make())
    result = app.test_cli_runner().invoke(args=["import-issue", str(path)])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert str(path) in result.output and words in result.output
    assert "Traceback" not in result.output
    assert count(Issue) == count(Topic) == 0


def test_the_cli_refuses_a_file_over_the_size_limit_unread(app, db_session, tmp_path):
    path = tmp_path / "bulletin.pdf"
    path.write_bytes(sample_pdf())
    limit = app.config["IMPORT_MAX_BYTES"]
    app.config["IMPORT_MAX_BYTES"] = 1024 * 1024
    try:
        result = app.test_cli_runner().invoke(args=["import-issue", str(path)])
    finally:
        app.config["IMPORT_MAX_BYTES"] = limit
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "over 1 MB" in result.output
    assert count(Issue) == 0


@pytest.mark.parametrize("kind", ["Word with heading styles", "a printed PDF"])
def test_the_cli_imports_word_and_pdf_and_reports_where_things_came_from(
    app, db_session, tmp_path, kind
):
    path = tmp_path / "bulletin"  # no extension: the bytes tell the format
    path.write_bytes(DOCUMENTS[kind]())
    result = app.test_cli_runner().invoke(args=["import-issue", str(path)])
    assert result.exit_code == 0, result.output
    assert count(Article) == 7
    assert [t.name for t in db.session.scalars(select(Topic).order_by(Topic.position))] == SECTIONS
    if kind == "a printed PDF":
        assert "Read from: PDF, " in result.output
        assert "Dropped page headers, footers and numbers: 2" in result.output
        assert "from: pages 1–" in result.output
    else:
        assert "Read from: Word (.docx)" in result.output
        assert "from: paragraphs " in result.output


# --------------------------------------------------------------------------- staff upload


def upload(client, data: bytes, filename: str):
    page = client.get("/admin/issues/import").get_data(as_text=True)
    return client.post(
        "/admin/issues/import",
        data={"csrf_token": csrf_token(page), "document": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def save_fields(page: str) -> dict[str, str]:
    form = lxml.html.fromstring(page).xpath('//form[contains(@action, "/save")]')[0]
    return {i.get("name"): i.get("value") for i in form.xpath(".//input[@name]")}


@pytest.mark.parametrize("kind", ["Word with heading styles", "a printed PDF"])
def test_staff_check_then_save_a_word_or_pdf_upload(app, db_session, staff_client, kind):
    report = upload(staff_client, DOCUMENTS[kind](), "简报.bin")
    assert report.status_code == 200
    page = report.get_data(as_text=True)
    for name in SECTIONS:
        assert name in page
    if kind == "a printed PDF":
        assert "读自 PDF，共" in page
        assert "删去的页眉、页脚和页码（2）" in page and RUNNING_HEADER in page
        assert "第 1–21 页" in page  # where the first article is
    else:
        assert "读自 Word 文件（.docx）。" in page
    assert count(Issue) == 0

    saved = staff_client.post("/admin/issues/import/save", data=save_fields(page))
    assert saved.status_code == 302
    issue = db.session.scalars(select(Issue)).one()
    assert len(issue.articles) == 7
    # The held upload is gone once saved: the same ticket cannot save a second draft.
    again = staff_client.post("/admin/issues/import/save", data=save_fields(page))
    assert again.status_code == 302 and again.headers["Location"].endswith("/admin/issues/import")
    assert count(Issue) == 1


def test_the_size_limit_holds_on_both_steps(app, db_session, staff_client):
    limit = app.config["IMPORT_MAX_BYTES"]
    try:
        app.config["IMPORT_MAX_BYTES"] = 1024 * 1024
        refused = upload(staff_client, sample_pdf(), "big.pdf")
        assert refused.status_code == 400
        assert "big.pdf: 文件超过 1 MB，不像是一期简报。" in refused.get_data(as_text=True)

        app.config["IMPORT_MAX_BYTES"] = limit
        page = upload(staff_client, sample_pdf(), "big.pdf").get_data(as_text=True)
        app.config["IMPORT_MAX_BYTES"] = 1024 * 1024  # lowered between the two steps
        saved = staff_client.post("/admin/issues/import/save", data=save_fields(page))
        assert saved.status_code == 400
        assert "文件超过 1 MB" in saved.get_data(as_text=True)
    finally:
        app.config["IMPORT_MAX_BYTES"] = limit
    assert count(Issue) == 0


def test_a_forged_ticket_saves_nothing(app, db_session, staff_client):
    page = upload(staff_client, sample_docx(), "简报.docx").get_data(as_text=True)
    fields = save_fields(page)
    fields["upload"] = fields["upload"][:-4] + "AAAA"
    saved = staff_client.post("/admin/issues/import/save", data=fields)
    assert saved.status_code == 302 and saved.headers["Location"].endswith("/admin/issues/import")
    assert count(Issue) == 0


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("a scan", "这个 PDF 是扫描件，没有文字：请从 Word 重新导出，或先做文字识别（OCR）。"),
        ("an old .doc", "这是旧版 Word 文件（.doc）：请在 Word 中另存为 .docx。"),
        ("an encrypted PDF", "这个 PDF 设有密码"),
    ],
)
def test_the_upload_form_says_what_is_wrong_in_one_line(app, db_session, staff_client, kind, words):
    answer = upload(staff_client, REFUSALS[kind][0](), "bad.bin")
    assert answer.status_code == 400
    alerts = lxml.html.fromstring(answer.get_data(as_text=True)).xpath('//*[@role="alert"]')
    assert [a.text_content() for a in alerts] == [f"bad.bin: {words}"] or (
        len(alerts) == 1 and words in alerts[0].text_content()
    )
    assert count(Issue) == 0
