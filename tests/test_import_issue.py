"""Importing a bulletin document from the command line and from the staff site."""

from __future__ import annotations

import io
from pathlib import Path

import lxml.html
import pytest
from sqlalchemy import func, select

from tests.helpers import csrf_token
from webapp.extensions import db
from webapp.models import Article, Issue, IssueStatus, Topic

SAMPLE = Path(__file__).parents[1] / "webapp" / "demo" / "bulletin-2022-08.md"
SECTIONS = ["质量要闻", "质量热点", "权威观点", "国际动态"]

NO_CONTENTS = "# 工作简报\n\n## 一篇文章\n\n正文。\n"
UNMATCHED = "# 工作简报\n\n### —— 质量要闻\n\n- ① 不存在的标题\n\n## 别的标题\n\n正文。\n"
# The document, and what the refusal says in English (the CLI) and in Chinese (the staff page).
BAD_DOCUMENTS = {
    "empty": (b"", "empty", "文件是空的"),
    "no contents block": (NO_CONTENTS.encode(), "No contents found", "没有找到目录"),
    "a title no heading matches": (UNMATCHED.encode(), "不存在的标题", "不存在的标题"),
    "not UTF-8": ("# 工作简报\n\n正文。".encode("gb18030"), "UTF-8", "GBK"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "binary", "二进制"),
}


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_the_cli_imports_the_sample_and_prints_the_report(app, db_session):
    result = app.test_cli_runner().invoke(args=["import-issue", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    issue = db.session.scalars(select(Issue)).one()
    assert f"Created draft issue {issue.id}:" in result.output
    for name in SECTIONS:
        assert f"{name}: " in result.output
    assert "Repaired paragraphs:" in result.output
    assert "Dropped debris: 1" in result.output
    assert issue.status == IssueStatus.DRAFT
    assert [t.name for t in db.session.scalars(select(Topic).order_by(Topic.position))] == SECTIONS
    assert count(Article) == 7


def test_importing_twice_makes_a_second_draft_and_leaves_a_sent_issue_alone(app, db_session):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["import-issue", str(SAMPLE)]).exit_code == 0
    first = db.session.scalars(select(Issue)).one()
    first.status = IssueStatus.SENT
    db.session.commit()
    assert runner.invoke(args=["import-issue", str(SAMPLE)]).exit_code == 0
    db.session.expire_all()
    issues = db.session.scalars(select(Issue).order_by(Issue.id)).all()
    assert [i.status for i in issues] == [IssueStatus.SENT, IssueStatus.DRAFT]
    assert [len(i.articles) for i in issues] == [7, 7]
    assert count(Topic) == 4  # sections are matched by name, not created again


@pytest.mark.parametrize("kind", BAD_DOCUMENTS)
def test_the_cli_refuses_a_bad_document_with_status_1_and_saves_nothing(
    app, db_session, tmp_path, kind
):
    data, words, _chinese = BAD_DOCUMENTS[kind]
    path = tmp_path / "issue.md"
    path.write_bytes(data)
    result = app.test_cli_runner().invoke(args=["import-issue", str(path)])
    assert result.exit_code == 1
    assert str(path) in result.output and words in result.output
    assert "Traceback" not in result.output
    assert count(Issue) == count(Topic) == 0


def test_an_unmatched_title_names_its_line(app, db_session, tmp_path):
    path = tmp_path / "issue.md"
    path.write_text(UNMATCHED)
    result = app.test_cli_runner().invoke(args=["import-issue", str(path)])
    assert "line 5" in result.output


def test_a_missing_file_is_a_clear_error(app, db_session, tmp_path):
    result = app.test_cli_runner().invoke(args=["import-issue", str(tmp_path / "nope.md")])
    assert result.exit_code != 0
    assert "nope.md" in result.output


# --- the staff upload form -----------------------------------------------------------------


def upload(client, data: bytes, filename: str = "bulletin.md", query: str = ""):
    page = client.get("/admin/issues/import").get_data(as_text=True)
    return client.post(
        f"/admin/issues/import{query}",
        data={"csrf_token": csrf_token(page), "document": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def test_staff_see_the_report_before_anything_is_saved_then_save_a_draft(
    app, db_session, staff_client
):
    report = upload(staff_client, SAMPLE.read_bytes())
    assert report.status_code == 200
    page = report.get_data(as_text=True)
    for name in SECTIONS:
        assert name in page
    assert "关于开展2022年全国“质量月”活动的通知" in page
    assert "删去的转换残留（1）" in page
    # What the importer did, in the page's language (issue 14: it used to be English).
    assert "第 44 行：接回了分页截断的句子：“…总局并对外保”+“留牌子，行政…”" in page
    assert "第 337 行：删去了中文文档中的英文段落" in page and "（至第 342 行）" in page
    assert "joined" not in page and "dropped" not in page
    english = upload(staff_client, SAMPLE.read_bytes(), query="?lang=en").get_data(as_text=True)
    assert (
        "line 44: joined a sentence cut by a page break: “…总局并对外保” + “留牌子，行政…”"
        in english
    )
    assert "line 337: dropped English text in a Chinese document" in english
    assert count(Issue) == 0  # checked, not saved

    # Save what the report page carries, as a browser would send it back: a signed ticket
    # for the upload, which stays on the server.
    form = lxml.html.fromstring(page).xpath('//form[contains(@action, "/save")]')[0]
    fields = {i.get("name"): i.get("value") for i in form.xpath(".//input[@name]")}
    assert fields["filename"] == "bulletin.md" and fields["upload"]
    saved = staff_client.post("/admin/issues/import/save", data=fields)
    assert saved.status_code == 302
    issue = db.session.scalars(select(Issue)).one()
    assert saved.headers["Location"].endswith(f"/admin/issues/{issue.id}")
    assert len(issue.articles) == 7
    assert "质量月" in staff_client.get(saved.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize("kind", BAD_DOCUMENTS)
def test_the_upload_form_shows_what_is_wrong_and_saves_nothing(app, db_session, staff_client, kind):
    data, _english, words = BAD_DOCUMENTS[kind]
    answer = upload(staff_client, data, filename="bad.md")
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert 'role="alert"' in page and "bad.md" in page and words in page
    assert count(Issue) == 0


def test_the_upload_form_needs_a_file(app, db_session, staff_client):
    page = staff_client.get("/admin/issues/import").get_data(as_text=True)
    answer = staff_client.post("/admin/issues/import", data={"csrf_token": csrf_token(page)})
    assert answer.status_code == 400
    assert "请选择一个文件" in answer.get_data(as_text=True)


def test_an_anonymous_visitor_cannot_import(app):
    answer = app.test_client().get("/admin/issues/import")
    assert answer.status_code == 302
    assert "/admin/login" in answer.headers["Location"]
