"""An issue's subject line, preheader and number: suggested, stated by the document, edited
by staff, and what the reader's inbox shows."""

from __future__ import annotations

import shutil
import subprocess
from email import message_from_bytes, policy
from pathlib import Path

import lxml.html
import pytest
from sqlalchemy import select

from tests.helpers import csrf_token
from webapp import delivery, publishing, site_settings
from webapp.extensions import db
from webapp.issues import import_document
from webapp.models import AuditEntry, Issue, IssueStatus, Subscriber, SubscriberStatus, Topic

SAMPLE = Path(__file__).parents[1] / "webapp" / "demo" / "bulletin-2022-08.md"


def numbered_sample(masthead_line: str) -> str:
    """The sample with one more line in its masthead."""
    text = SAMPLE.read_text(encoding="utf-8")
    return text.replace("## 工作简报\n", f"## 工作简报\n\n{masthead_line}\n", 1)


def send_all(issue_id: int) -> None:
    batches: list[list[int]] = []
    delivery.dispatch_due(issue_id, lambda _, ids: batches.append(ids))
    for ids in batches:
        delivery.send_batch(issue_id, ids)


def test_imported_issues_are_numbered_on_from_the_one_before(app, db_session):
    first, _ = import_document(SAMPLE.read_bytes())
    second, _ = import_document(SAMPLE.read_bytes())
    db.session.commit()
    # The sample states no number: its period gives the year, the count starts at one.
    assert (first.year, first.number, first.total_number) == (2022, 1, 1)
    assert (second.year, second.number, second.total_number) == (2022, 2, 2)


def test_the_number_the_document_states_wins_over_the_suggestion(app, db_session):
    import_document(SAMPLE.read_bytes())
    stated, _ = import_document(numbered_sample("2022年第8期（总第45期）"))
    in_words, _ = import_document(numbered_sample("第十二期"))
    db.session.commit()
    assert (stated.year, stated.number, stated.total_number) == (2022, 8, 45)
    # Only 第N期 stated: the overall number is still suggested, one past the highest.
    assert (in_words.number, in_words.total_number) == (12, 46)


def test_a_new_year_starts_again_at_number_one(app, db_session):
    import_document(numbered_sample("2022年第11期（总第45期）"))
    next_year, _ = import_document(
        SAMPLE.read_text(encoding="utf-8").replace("2022年8月", "2023年1月")
    )
    db.session.commit()
    assert (next_year.year, next_year.number, next_year.total_number) == (2023, 1, 46)


def test_the_subject_follows_the_pattern_until_staff_write_one(app, db_session, staff_client):
    issue, _ = import_document(SAMPLE.read_bytes())
    db.session.commit()
    page = staff_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    # The default pattern: "{name} {year}年第{n}期" with the bulletin's name.
    assert "工作简报 2022年第1期" in page
    assert "2022年第1期 · 总第1期" in page

    answer = staff_client.post(
        f"/admin/issues/{issue.id}/details",
        data={
            "csrf_token": csrf_token(page),
            "title": "工作简报（八月）",
            "period": "2022年8月1日-2022年8月31日",
            "year": "2022",
            "number": "8",
            "total_number": "45",
            "subject": "质量发展研究院工作简报 2022年第8期",
            "preheader": "八月要闻：认证认可检验检测发展规划、质量月",
        },
    )
    assert answer.status_code == 302
    db.session.expire_all()
    saved = db.session.get(Issue, issue.id)
    assert saved.title == "工作简报（八月）" and (saved.number, saved.total_number) == (8, 45)
    assert saved.subject == "质量发展研究院工作简报 2022年第8期"
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "edit-issue")).one()
    assert entry.issue_id == issue.id and entry.staff_email == "admin@example.org"
    page = staff_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert "2022年第8期 · 总第45期" in page


def test_staff_see_what_is_wrong_with_a_number_and_nothing_changes(app, db_session, staff_client):
    issue, _ = import_document(SAMPLE.read_bytes())
    db.session.commit()
    page = staff_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    answer = staff_client.post(
        f"/admin/issues/{issue.id}/details",
        data={"csrf_token": csrf_token(page), "title": "新标题", "number": "-3"},
    )
    assert answer.status_code == 400
    assert "请填写一个正整数。" in answer.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).title != "新标题"


def test_a_sent_issue_keeps_its_subject(app, db_session, staff_client):
    issue, _ = import_document(SAMPLE.read_bytes())
    issue.status = IssueStatus.SENT
    db.session.commit()
    page = staff_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert f"/admin/issues/{issue.id}/details" not in page
    answer = staff_client.post(
        f"/admin/issues/{issue.id}/details",
        data={"csrf_token": csrf_token(page), "title": "改过的标题", "subject": "改过的主题"},
    )
    assert answer.status_code == 409
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).subject == ""


def sent_sample(inbox) -> bytes:
    """The numbered sample with a subject and preheader, as reader@example.com receives it."""
    issue, _ = import_document(numbered_sample("2022年第8期（总第45期）"))
    issue.subject = "质量发展研究院工作简报 2022年第8期"
    issue.preheader = "八月要闻：认证认可检验检测发展规划、质量月"
    topics = list(db.session.scalars(select(Topic)))
    db.session.add(
        Subscriber(email="reader@example.com", status=SubscriberStatus.ACTIVE, topics=topics)
    )
    db.session.commit()
    publishing.publish_issue(issue.id)
    db.session.commit()
    send_all(issue.id)
    [raw] = inbox.raw_to("reader@example.com")
    return raw


def test_the_reader_gets_the_subject_preheader_and_number(app, db_session, inbox):
    message = message_from_bytes(sent_sample(inbox), policy=policy.default)
    assert message["Subject"] == "质量发展研究院工作简报 2022年第8期"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    document = lxml.html.fromstring(html)
    [preheader] = document.find_class("preheader")
    # The first text in the body, hidden from view: what inboxes show beside the subject.
    assert preheader.text_content() == "八月要闻：认证认可检验检测发展规划、质量月"
    style = preheader.get("style").replace(" ", "")
    assert "display:none" in style
    # Hidden by display, not by a colour or a tiny font (which spam filters score).
    assert "color" not in style and "font-size" not in style
    assert "2022年第8期 · 总第45期" in document.find_class("masthead")[0].text_content()
    assert "2022年第8期 · 总第45期" in text


@pytest.mark.spamassassin
def test_spamassassin_does_not_score_the_hidden_preheader(app, db_session, inbox):
    """Offline, local rules only. Needs SpamAssassin, so `make test` leaves it out and
    `make spam-check` (run by .ci/run) runs it."""
    if not shutil.which("spamassassin"):
        pytest.fail("no spamassassin here (Debian/Ubuntu: apt-get install spamassassin)")
    report = subprocess.run(
        ["spamassassin", "-L", "-t"],
        input=sent_sample(inbox),
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout.decode("utf-8", "replace")
    assert "X-Spam-Status" in report
    for rule in ("HTML_FONT_LOW_CONTRAST", "T_HTML_FONT_LOW_CONTRAST", "HTML_FONT_SIZE_TINY"):
        assert rule not in report, report[-3000:]


def test_an_admin_sets_the_subject_pattern_once_for_every_issue(app, db_session, staff_client):
    issue, _ = import_document(numbered_sample("2022年第8期（总第45期）"))
    db.session.commit()
    page = staff_client.get("/admin/settings").get_data(as_text=True)
    form = {"csrf_token": csrf_token(page), "counted_links": "y"}
    refused = staff_client.post(
        "/admin/settings", data={**form, "subject_pattern": "{name} 第{number}期"}
    )
    assert refused.status_code == 400
    assert "不认识 {number}" in refused.get_data(as_text=True)

    saved = staff_client.post(
        "/admin/settings",
        data={**form, "subject_pattern": "《{name}》{year}年第{n}期（总第{total}期）"},
    )
    assert saved.status_code == 302
    page = staff_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert "《工作简报》2022年第8期（总第45期）" in page


def test_english_readers_get_the_english_pattern_and_name(app, db_session, staff_client, inbox):
    """Each reader's subject follows the pattern for their language, with the bulletin's
    name in it; a subject staff write for the issue goes to everyone as written."""
    issue, _ = import_document(numbered_sample("2022年第8期（总第45期）"))
    topics = list(db.session.scalars(select(Topic)))
    db.session.add_all(
        Subscriber(email=f"{locale}@example.com", status=SubscriberStatus.ACTIVE, topics=topics,
                   locale=locale)
        for locale in ("zh", "en")
    )  # fmt: skip
    db.session.commit()
    page = staff_client.get("/admin/settings").get_data(as_text=True)
    saved = staff_client.post(
        "/admin/settings",
        data={
            "csrf_token": csrf_token(page),
            "subject_pattern": "{name} {year}年第{n}期",
            "subject_pattern_en": "{name} No. {n} ({total} overall)",
        },
    )
    assert saved.status_code == 302
    site_settings.set_value("bulletin_name_en", "Work Bulletin", actor="admin@example.org")
    db.session.commit()
    # Staff see both before they publish, under the empty subject field.
    page = staff_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert "主题留空时按主题格式生成：工作简报 2022年第8期" in page
    assert "选择英文的读者：Work Bulletin No. 8 (45 overall)" in page
    publishing.publish_issue(issue.id)
    db.session.commit()
    send_all(issue.id)

    def subject(address: str) -> str:
        [raw] = inbox.raw_to(address)
        return message_from_bytes(raw, policy=policy.default)["Subject"]

    assert subject("zh@example.com") == "工作简报 2022年第8期"
    assert subject("en@example.com") == "Work Bulletin No. 8 (45 overall)"


def test_an_english_pattern_is_checked_like_the_chinese_one(app, db_session, staff_client):
    page = staff_client.get("/admin/settings").get_data(as_text=True)
    refused = staff_client.post(
        "/admin/settings",
        data={"csrf_token": csrf_token(page), "subject_pattern_en": "{name} No. {number}"},
    )
    assert refused.status_code == 400
    assert "不认识 {number}" in refused.get_data(as_text=True)
    emptied = staff_client.post(
        "/admin/settings", data={"csrf_token": csrf_token(page), "subject_pattern_en": " "}
    )
    assert emptied.status_code == 302
    assert site_settings.get_value("subject_pattern_en") == app.config["SUBJECT_PATTERN_EN"]
