"""Staff preview and test send; the public web version of sent issues."""

from __future__ import annotations

import re
from itertools import combinations

import pytest
from premailer import Premailer
from sqlalchemy import select, update

from tests.helpers import csrf_token, wait_for
from tests.sample_content import SAMPLE_DOCUMENT
from webapp import identity, site_settings
from webapp.digests import digest_content, render_content
from webapp.extensions import db
from webapp.issues import ArticleDraft, edit_article, import_document, issue_topic_ids
from webapp.models import (
    Article,
    AuditEntry,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    Topic,
)


@pytest.fixture
def sample_issue(app, db_session) -> Issue:
    issue, _ = import_document(SAMPLE_DOCUMENT.read_bytes())
    db.session.commit()
    return issue


def topic_id(name: str) -> int:
    return db.session.scalar(select(Topic.id).where(Topic.name == name))


def test_staff_preview_one_section_shows_subject_size_and_only_that_section(
    staff_client, sample_issue
):
    hot = topic_id("质量热点")
    page = staff_client.get(f"/admin/issues/{sample_issue.id}/preview?topics={hot}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert sample_issue.title in html
    size = re.search(r'id="html-size">([\d,]+) 字节', html).group(1)
    assert 10_000 < int(size.replace(",", "")) < 90 * 1024
    assert "List-Unsubscribe-Post" in html
    frame = staff_client.get(f"/admin/issues/{sample_issue.id}/preview.html?topics={hot}")
    assert "sandbox" in frame.headers["Content-Security-Policy"]
    body = frame.get_data(as_text=True)
    assert "质量热点" in body and "国际动态" not in body
    assert len(body.encode()) == int(size.replace(",", ""))


def test_unticking_every_section_is_an_error_not_every_section(staff_client, sample_issue):
    page = staff_client.get(f"/admin/issues/{sample_issue.id}/preview?chosen=1&locale=zh")
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    assert "请至少选择一个栏目。" in html and 'id="html-size"' not in html
    assert not [
        m for m in re.finditer(r'<input type="checkbox"[^>]*>', html) if "checked" in m.group(0)
    ]
    # A link with nothing chosen (the first visit) still shows the whole issue.
    for link in ("", "?locale=en"):
        assert staff_client.get(f"/admin/issues/{sample_issue.id}/preview{link}").status_code == 200


def test_the_size_shown_is_the_one_in_the_sizes_table(staff_client, sample_issue):
    hot, news = topic_id("质量热点"), topic_id("质量要闻")
    for chosen in ([hot], [hot, news], None):
        query = "&".join(f"topics={t}" for t in chosen) if chosen else ""
        html = staff_client.get(f"/admin/issues/{sample_issue.id}/preview?{query}").get_data(
            as_text=True
        )
        shown = re.search(r'id="html-size">([\d,]+) 字节', html).group(1)
        every = {int(t) for t in re.findall(r'name="topics" value="(\d+)"', html)}
        key = ",".join(str(t) for t in sorted(chosen or every))
        row = re.search(rf'<tr data-topics="{key}"[^>]*><td>[^<]*</td><td>([\d,]+)</td>', html)
        assert row and row.group(1) == shown, (chosen, shown)
        assert "HTML 部分的字节数" in html  # the page says what the figure measures


def test_the_preview_lists_the_size_of_every_section_set(staff_client, sample_issue):
    html = staff_client.get(f"/admin/issues/{sample_issue.id}/preview").get_data(as_text=True)
    table = html[html.index("各栏目组合的大小") :]
    assert table.count("<tr") == 1 + 15  # header + every non-empty set of 4 sections
    assert "质量要闻、质量热点、权威观点、国际动态" in table
    assert 'class="over"' not in table  # auto mode keeps every set under the budget


def sizes_table(html: str) -> dict[str, str]:
    """The sizes table of a preview page: {topic ids "1,2": HTML size}."""
    rows = re.findall(r'<tr data-topics="([\d,]+)"[^>]*><td>[^<]*</td><td>([\d,]+)</td>', html)
    return dict(rows)


def test_the_first_preview_inlines_each_set_once_and_the_next_preview_nothing(
    app, staff_client, sample_issue, monkeypatch
):
    runs = []
    transform = Premailer.transform

    def counted(self, *args, **kwargs):  # calls the real premailer; only counts
        runs.append(1)
        return transform(self, *args, **kwargs)

    monkeypatch.setattr(Premailer, "transform", counted)
    with app.test_request_context():
        content = digest_content(sample_issue, identity.current())
        for chosen in (
            c for n in range(1, 5) for c in combinations(issue_topic_ids(sample_issue.id), n)
        ):
            render_content(content, frozenset(chosen), "zh", identity.current())
    alone = len(runs)  # the 15 sets rendered one by one: 15, and more for those over budget
    runs.clear()
    first = staff_client.get(f"/admin/issues/{sample_issue.id}/preview").get_data(as_text=True)
    assert len(sizes_table(first)) == 15
    # The chosen set (every section) is one of the table's: nothing is inlined twice.
    assert len(runs) == alone
    runs.clear()
    again = staff_client.get(f"/admin/issues/{sample_issue.id}/preview").get_data(as_text=True)
    assert len(runs) == 0
    assert sizes_table(again) == sizes_table(first)
    assert again.count('id="html-size"') == 1


def test_an_edited_article_shows_in_the_next_preview_and_its_sizes(staff_client, sample_issue):
    hot = topic_id("质量热点")
    url = f"/admin/issues/{sample_issue.id}/preview"
    before = sizes_table(staff_client.get(url).get_data(as_text=True))
    assert "补记：新增的一段" not in staff_client.get(f"{url}.html?topics={hot}").get_data(
        as_text=True
    )
    article = next(a for a in sample_issue.articles if a.topic_id == hot)
    draft = ArticleDraft(
        topic_id=hot,
        title=article.title,
        body=article.body + "\n\n补记：新增的一段。",
        lead=article.lead,
        source_name=article.source_name,
        source_url=article.source_url,
    )
    edit_article(article, draft)
    db.session.commit()

    after = sizes_table(staff_client.get(url).get_data(as_text=True))
    assert "补记：新增的一段" in staff_client.get(f"{url}.html?topics={hot}").get_data(as_text=True)
    grown = {key for key in before if after[key] != before[key]}
    assert grown and all(str(hot) in key.split(",") for key in grown)


def test_staff_preview_as_a_named_subscriber_uses_their_sections_and_language(
    staff_client, sample_issue
):
    world = db.session.get(Topic, topic_id("国际动态"))
    db.session.add(
        Subscriber(
            email="tom@example.com",
            name="Tom",
            locale="en",
            status=SubscriberStatus.ACTIVE,
            topics=[world],
        )
    )
    db.session.commit()
    url = f"/admin/issues/{sample_issue.id}/preview.html?subscriber=Tom@Example.com"
    body = staff_client.get(url).get_data(as_text=True)
    assert "Dear Tom," in body and "国际动态" in body and "质量要闻" not in body
    # Links that do nothing: a preview must hand nobody the reader's signed credentials.
    assert "/unsubscribe/" not in body and "/preferences/" not in body


def test_preview_of_an_unknown_subscriber_says_so(staff_client, sample_issue):
    page = staff_client.get(f"/admin/issues/{sample_issue.id}/preview?subscriber=x@example.com")
    assert page.status_code == 400
    assert "没有地址为 x@example.com 的读者。" in page.get_data(as_text=True)
    english = staff_client.get(
        f"/admin/issues/{sample_issue.id}/preview?subscriber=x@example.com&lang=en"
    )
    assert "No subscriber has the address x@example.com." in english.get_data(as_text=True)


def test_send_a_test_to_me(app, staff_client, sample_issue, celery_worker, inbox):
    hot = topic_id("质量热点")
    page = staff_client.get(f"/admin/issues/{sample_issue.id}/preview?topics={hot}")
    answer = staff_client.post(
        f"/admin/issues/{sample_issue.id}/test",
        data={"csrf_token": csrf_token(page.get_data(as_text=True)), "topics": hot},
    )
    assert answer.status_code == 302
    [message] = wait_for(lambda: inbox.to("admin@example.org"), what="the test message")
    # The sample states no number: the subject pattern's, with the suggested one.
    assert message["Subject"] == "[测试] 工作简报 2022年第1期"
    html = message.get_body(("html",)).get_content()
    assert "质量热点" in html and "国际动态" not in html
    assert sample_issue.status == IssueStatus.DRAFT  # a test publishes nothing


def test_a_test_send_needs_the_csrf_token(staff_client, sample_issue):
    answer = staff_client.post(f"/admin/issues/{sample_issue.id}/test", data={})
    assert answer.status_code == 400


def test_previews_are_for_staff_only(app, sample_issue):
    client = app.test_client()
    for path in ("preview", "preview.html"):
        answer = client.get(f"/admin/issues/{sample_issue.id}/{path}")
        assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"]


# --- the web version -----------------------------------------------------------------------


def publish_without_sending(issue: Issue) -> None:
    db.session.execute(update(Issue).where(Issue.id == issue.id).values(status=IssueStatus.SENT))
    db.session.commit()


def test_a_draft_has_no_public_page(app, sample_issue):
    assert app.test_client().get(f"/issues/{sample_issue.id}").status_code == 404


def test_a_sent_issue_and_its_articles_have_public_pages(app, sample_issue):
    publish_without_sending(sample_issue)
    client = app.test_client()
    page = client.get(f"/issues/{sample_issue.id}").get_data(as_text=True)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    for name in ("质量要闻", "质量热点", "权威观点", "国际动态"):
        assert name in page
    article = db.session.scalars(select(Article).where(Article.title.contains("天价"))).one()
    text = client.get(f"/issues/{sample_issue.id}/articles/{article.id}").get_data(as_text=True)
    assert "<strong>本报讯（实习记者 贾润梅）</strong>" in text
    assert "引导节日商品、节日消费回归传统文化本源" in text  # the last sentence


def test_the_web_version_is_sanitized_too(app, sample_issue):
    article = sample_issue.articles[0]
    article.body = (
        '正文<script>alert(1)</script><img src=x onerror="alert(1)">[x](javascript:alert(1))'
    )
    article.source_url = "javascript:alert(2)"
    publish_without_sending(sample_issue)
    html = app.test_client().get(f"/issues/{sample_issue.id}/articles/{article.id}")
    text = html.get_data(as_text=True)
    assert "<script>alert" not in text and "onerror" not in text
    assert 'href="javascript:' not in text


def test_staff_choose_leads_only_and_the_preview_follows(staff_client, sample_issue):
    page = staff_client.get(f"/admin/issues/{sample_issue.id}").get_data(as_text=True)
    answer = staff_client.post(
        f"/admin/issues/{sample_issue.id}/mode",
        data={"csrf_token": csrf_token(page), "mode": "leads"},
    )
    assert answer.status_code == 302
    html = staff_client.get(f"/admin/issues/{sample_issue.id}/preview").get_data(as_text=True)
    assert "0 / 7" in html  # no article in full


def test_an_unknown_content_mode_is_refused(staff_client, sample_issue):
    page = staff_client.get(f"/admin/issues/{sample_issue.id}").get_data(as_text=True)
    answer = staff_client.post(
        f"/admin/issues/{sample_issue.id}/mode",
        data={"csrf_token": csrf_token(page), "mode": "everything"},
    )
    assert answer.status_code == 400
    db.session.refresh(sample_issue)
    assert sample_issue.content_mode == "auto"


def test_the_content_mode_is_an_audited_edit_refused_once_sending_starts(
    staff_client, sample_issue
):
    def choose(mode: str):
        page = staff_client.get(f"/admin/issues/{sample_issue.id}").get_data(as_text=True)
        return staff_client.post(
            f"/admin/issues/{sample_issue.id}/mode",
            data={"csrf_token": csrf_token(page), "mode": mode},
        )

    assert choose("full").status_code == 302
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "content-mode"))
    assert (entry.issue_id, entry.detail) == (sample_issue.id, "full")
    publish_without_sending(sample_issue)
    db.session.commit()
    answer = choose("leads")
    assert answer.status_code == 409
    db.session.refresh(sample_issue)
    assert sample_issue.content_mode == "full"
    page = staff_client.get(f"/admin/issues/{sample_issue.id}").get_data(as_text=True)
    assert "发送开始后，内容以发出的为准，不能再修改。" in page


def test_switching_counted_links_shows_in_the_next_preview(staff_client, sample_issue):
    url = f"/admin/issues/{sample_issue.id}/preview.html?topics={topic_id('质量热点')}"
    for counted in (False, True, False):
        site_settings.set_value("counted_links", counted)
        db.session.commit()
        assert ("/r/" in staff_client.get(url).get_data(as_text=True)) is counted
