"""The staff newsroom: the list of issues, a blank issue, and writing its articles."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest
from sqlalchemy import select, update

from tests.helpers import csrf_token
from webapp.extensions import db
from webapp.importing import make_lead
from webapp.issues import (
    ArticleDraft,
    ArticleError,
    add_article,
    add_staff_article,
    create_issue,
    ensure_topics,
)
from webapp.models import Article, AuditEntry, Issue, IssueStatus, Topic
from webapp.transactions import transaction

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
BODY = (
    "本报讯 国家市场监管总局近日发布通知，要求各地加强节日期间的食品安全抽检，"
    "重点检查月饼、粽子等节令食品的标签和添加剂使用情况。\n\n第二段。"
)


@pytest.fixture
def draft(app, db_session) -> Issue:
    """A draft with two sections: 质量要闻 (甲, 乙, 丙) and 质量热点 (丁)."""
    news, hot = ensure_topics(["质量要闻", "质量热点"])
    issue = create_issue("2022年第8期", period="2022-08")
    for title in ("甲", "乙", "丙"):
        add_article(issue, news, title, f"{title}的正文。", lead=f"{title}的导语")
    add_article(issue, hot, "丁", "丁的正文。", lead="丁的导语")
    issue.updated_at = LONG_AGO
    db.session.commit()
    return issue


def edited(issue_id: int) -> datetime:
    """The issue's edit time, in UTC: SQLite hands it back without its zone, PostgreSQL
    with it."""
    moment = fresh(issue_id).updated_at
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def fresh(issue_id: int) -> Issue:
    """The issue as the database has it now (requests commit in their own sessions)."""
    db.session.expire_all()
    return db.session.get(Issue, issue_id)


def titles_in_order(issue_id: int) -> list[tuple[str, int]]:
    db.session.expire_all()
    articles = db.session.scalars(
        select(Article).where(Article.issue_id == issue_id).order_by(Article.position)
    )
    return [(a.title, a.position) for a in articles]


def article(title: str) -> Article:
    db.session.expire_all()
    return db.session.scalars(select(Article).where(Article.title == title)).one()


def audit_log(issue_id: int) -> list[tuple[str, str, str]]:
    entries = db.session.scalars(
        select(AuditEntry).where(AuditEntry.issue_id == issue_id).order_by(AuditEntry.id)
    )
    return [(e.action, e.detail, e.staff_email) for e in entries]


def token(client) -> str:
    return csrf_token(client.get("/admin/issues").get_data(as_text=True))


def article_form(client, **fields) -> dict:
    topic = db.session.scalar(select(Topic.id).where(Topic.name == "质量热点"))
    data = {"title": "新文章", "topic_id": topic, "body": BODY, "lead": "", "submit": "保存"}
    data.update(csrf_token=token(client), **fields)
    return data


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags_in(fragment: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(fragment)
    return parser.tags


# --- who may ---------------------------------------------------------------------------------


def test_the_newsroom_is_for_signed_in_staff_only(app, draft):
    client = app.test_client()
    a = article("甲")
    for path in (
        "/admin/issues",
        f"/admin/issues/{draft.id}/articles/new",
        f"/admin/issues/{draft.id}/articles/{a.id}/edit",
    ):
        answer = client.get(path)
        assert answer.status_code == 302 and "/admin/login" in answer.headers["Location"], path


@pytest.mark.parametrize("who", ["staff_client", "editor_client"])
def test_editors_and_admins_add_an_article_and_an_empty_lead_is_made_from_the_body(
    request, draft, who
):
    client = request.getfixturevalue(who)
    answer = client.post(f"/admin/issues/{draft.id}/articles/new", data=article_form(client))
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith(f"/admin/issues/{draft.id}#articles")
    new = article("新文章")
    assert new.lead == make_lead(BODY) and new.lead.startswith("本报讯")
    assert new.topic.name == "质量热点"
    # At the end of its section, and the positions stay 0..n-1 in the order readers see.
    assert titles_in_order(draft.id) == [("甲", 0), ("乙", 1), ("丙", 2), ("丁", 3), ("新文章", 4)]
    assert edited(draft.id) > LONG_AGO
    email = "admin@example.org" if who == "staff_client" else "writer@example.org"
    assert audit_log(draft.id) == [("add-article", "新文章", email)]
    page = client.get(f"/admin/issues/{draft.id}").get_data(as_text=True)
    assert "已保存：新文章" in page


def test_an_article_is_edited_and_a_lead_left_as_generated_follows_the_new_body(
    editor_client, draft
):
    a = article("甲")
    a.lead = make_lead(a.body)  # as if it had been generated
    db.session.commit()
    form = article_form(
        editor_client,
        title="甲（修订）",
        topic_id=a.topic_id,
        body=BODY,
        lead=a.lead,
        source_name="中国质量报",
        source_url="https://www.cqn.com.cn/zgzlb/content/2022-08/31/content_1.htm",
    )
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/{a.id}/edit", data=form)
    assert answer.status_code == 302
    changed = article("甲（修订）")
    assert changed.id == a.id and changed.body == BODY
    assert changed.lead == make_lead(BODY)
    assert changed.source_name == "中国质量报" and changed.source_url.startswith("https://")
    assert edited(draft.id) > LONG_AGO
    assert audit_log(draft.id) == [("edit-article", "甲（修订）", "writer@example.org")]


def test_a_lead_staff_wrote_is_kept_when_the_body_changes(editor_client, draft):
    a = article("乙")
    form = article_form(
        editor_client, title="乙", topic_id=a.topic_id, body=BODY, lead="编辑写的导语"
    )
    editor_client.post(f"/admin/issues/{draft.id}/articles/{a.id}/edit", data=form)
    assert article("乙").lead == "编辑写的导语"


def test_an_article_moved_to_another_section_goes_to_its_end(editor_client, draft):
    a = article("甲")
    form = article_form(editor_client, title="甲", body=a.body, lead=a.lead)  # 质量热点
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/{a.id}/edit", data=form)
    assert answer.status_code == 302
    assert titles_in_order(draft.id) == [("乙", 0), ("丙", 1), ("丁", 2), ("甲", 3)]


def test_deleting_an_article_closes_the_gap(staff_client, draft):
    b = article("乙")
    answer = staff_client.post(
        f"/admin/issues/{draft.id}/articles/{b.id}/delete",
        data={"csrf_token": token(staff_client), "confirm": "yes"},
    )
    assert answer.status_code == 302
    assert titles_in_order(draft.id) == [("甲", 0), ("丙", 1), ("丁", 2)]
    assert edited(draft.id) > LONG_AGO
    assert audit_log(draft.id) == [("delete-article", "乙", "admin@example.org")]


def test_moving_an_article_up_and_down_within_its_section(editor_client, draft):
    c = article("丙")
    move = f"/admin/issues/{draft.id}/articles/{c.id}/move"
    t = token(editor_client)
    answer = editor_client.post(move, data={"csrf_token": t, "direction": "up"})
    assert answer.status_code == 302
    assert titles_in_order(draft.id) == [("甲", 0), ("丙", 1), ("乙", 2), ("丁", 3)]
    editor_client.post(move, data={"csrf_token": t, "direction": "up"})
    assert titles_in_order(draft.id) == [("丙", 0), ("甲", 1), ("乙", 2), ("丁", 3)]
    editor_client.post(move, data={"csrf_token": t, "direction": "down"})
    assert titles_in_order(draft.id) == [("甲", 0), ("丙", 1), ("乙", 2), ("丁", 3)]
    assert edited(draft.id) > LONG_AGO
    assert [entry[:2] for entry in audit_log(draft.id)] == [("move-article", "丙")] * 3
    sideways = editor_client.post(move, data={"csrf_token": t, "direction": "left"})
    assert sideways.status_code == 400


def test_the_first_of_a_section_does_not_move_up_past_another_section(editor_client, draft):
    d = article("丁")  # the only article of 质量热点, after the three of 质量要闻
    answer = editor_client.post(
        f"/admin/issues/{draft.id}/articles/{d.id}/move",
        data={"csrf_token": token(editor_client), "direction": "up"},
        follow_redirects=True,
    )
    assert "《丁》已在本栏目最前。" in answer.get_data(as_text=True)
    assert titles_in_order(draft.id) == [("甲", 0), ("乙", 1), ("丙", 2), ("丁", 3)]
    assert edited(draft.id) == LONG_AGO
    assert audit_log(draft.id) == []


def test_an_edit_shows_in_the_next_preview(staff_client, draft):
    """Previews are cached by the issue's edit time, so an edit must move it."""
    hot = article("丁").topic_id
    frame = f"/admin/issues/{draft.id}/preview.html?topics={hot}"
    assert "丁" in staff_client.get(frame).get_data(as_text=True)
    d = article("丁")
    form = article_form(staff_client, title="丁：改过的标题", body=d.body, lead=d.lead)
    staff_client.post(f"/admin/issues/{draft.id}/articles/{d.id}/edit", data=form)
    assert "丁：改过的标题" in staff_client.get(frame).get_data(as_text=True)


# --- the form --------------------------------------------------------------------------------


def test_preview_renders_the_markdown_sanitized_and_saves_nothing(editor_client, draft):
    body = (
        "**加粗的一句。**\n\n<script>alert('x')</script>\n\n"
        '<img src=x onerror="alert(1)">\n\n[点这里](javascript:alert(1)) 和 [官网](https://www.samr.gov.cn/)'
    )
    form = article_form(editor_client, body=body, preview="预览")
    del form["submit"]
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/new", data=form)
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    preview = html[
        html.index('id="article-preview"') : html.index(
            "</section>", html.index('id="article-preview"')
        )
    ]
    tags = tags_in(preview)
    assert ("strong", {}) in tags
    assert not [t for t, _ in tags if t in ("script", "img")]
    assert not [a for t, a in tags if any(k.startswith("on") for k in a)]
    links = [a.get("href") for t, a in tags if t == "a"]
    assert "https://www.samr.gov.cn/" in links and not any("javascript" in (h or "") for h in links)
    assert "（自动生成）" in preview  # the lead that saving would make
    # The typed text comes back in the form, to go on editing; nothing is saved.
    assert "&lt;script&gt;alert" in html
    assert titles_in_order(draft.id) == [("甲", 0), ("乙", 1), ("丙", 2), ("丁", 3)]
    assert edited(draft.id) == LONG_AGO
    assert audit_log(draft.id) == []


def test_the_live_preview_endpoint_renders_like_the_round_trip_and_sanitizes(
    app, editor_client, draft
):
    body = "**加粗的一句。**\n\n<script>alert('x')</script>\n\n[点这里](javascript:alert(1))"
    data = {"title": "新文章", "source_name": "中国质量报", "body": body, "lead": ""}
    answer = editor_client.post(
        "/admin/articles/preview", data={**data, "csrf_token": token(editor_client)}
    )
    assert answer.status_code == 200
    fragment = answer.get_data(as_text=True)
    tags = tags_in(fragment)
    assert ("strong", {}) in tags and "加粗的一句。" in fragment
    assert not [t for t, _ in tags if t == "script"] and "alert('x')" not in fragment
    assert not any("javascript" in (a.get("href") or "") for t, a in tags if t == "a")
    assert "来源：中国质量报" in fragment and "（自动生成）" in fragment
    assert titles_in_order(draft.id) == [("甲", 0), ("乙", 1), ("丙", 2), ("丁", 3)]
    # The same fragment as "预览" after a round trip.
    form = article_form(editor_client, body=body, source_name="中国质量报", preview="预览")
    del form["submit"]
    page = editor_client.post(f"/admin/issues/{draft.id}/articles/new", data=form)
    assert fragment.strip() in page.get_data(as_text=True)
    # No CSRF token: refused. Not signed in: sent to the login page.
    assert editor_client.post("/admin/articles/preview", data=data).status_code == 400
    stranger = app.test_client()
    answer = stranger.post("/admin/articles/preview", data=data)
    assert answer.status_code in (302, 400) and "加粗" not in answer.get_data(as_text=True)


def test_a_javascript_source_url_is_refused_with_a_message(editor_client, draft):
    form = article_form(editor_client, source_name="某网站", source_url="javascript:alert(1)")
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/new", data=form)
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    field = html[html.index('id="source_url"') :]
    assert field.index("来源链接只接受 http:// 或 https:// 开头的网址。") < field.index("<label")
    assert db.session.scalar(select(Article).where(Article.title == "新文章")) is None


def test_a_www_source_gets_https_in_the_form_and_in_the_domain(editor_client, draft):
    form = article_form(editor_client, source_name="市场监管总局", source_url=" www.samr.gov.cn/")
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/new", data=form)
    assert answer.status_code == 302
    assert article("新文章").source_url == "https://www.samr.gov.cn/"
    # Any caller of the domain gets the same: the form is not the only way in.
    topic = db.session.scalar(select(Topic.id).where(Topic.name == "质量要闻"))
    draft_of = ArticleDraft(
        topic_id=topic,
        title="戊",
        body="戊的正文。",
        source_name="某报",
        source_url="WWW.cqn.com.cn",
    )
    with transaction():
        added = add_staff_article(draft.id, draft_of)
    assert added.source_url == "https://WWW.cqn.com.cn"
    # Only "www." is completed: other bare names are still refused.
    with pytest.raises(ArticleError):
        add_staff_article(draft.id, replace(draft_of, source_url="cqn.com.cn"))


def test_a_source_link_needs_a_name_readers_can_click(editor_client, draft):
    form = article_form(editor_client, source_url="https://www.samr.gov.cn/")
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/new", data=form)
    assert answer.status_code == 400
    assert "也请填写来源名称" in answer.get_data(as_text=True)


def test_title_and_body_are_required_and_say_so_by_their_fields(editor_client, draft):
    form = article_form(editor_client, title="  ", body="")
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/new", data=form)
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert "请填写标题。" in html and "请填写正文。" in html
    assert html.index('id="title"') < html.index("请填写标题。") < html.index('id="topic_id"')
    too_long = article_form(editor_client, title="长" * 301)
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/new", data=too_long)
    assert answer.status_code == 400 and "标题最多 300 个字。" in answer.get_data(as_text=True)
    assert len(titles_in_order(draft.id)) == 4


def test_only_active_sections_are_offered(editor_client, draft):
    archived = Topic(name="旧栏目", slug="old", position=9, active=False)
    db.session.add(archived)
    db.session.commit()
    page = editor_client.get(f"/admin/issues/{draft.id}/articles/new").get_data(as_text=True)
    assert "质量热点" in page and "旧栏目" not in page
    form = article_form(editor_client, topic_id=archived.id)
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/new", data=form)
    assert answer.status_code == 400
    assert "请选择一个在用的栏目。" in answer.get_data(as_text=True)


def test_an_article_keeps_its_section_after_the_section_is_archived(editor_client, draft):
    d = article("丁")
    db.session.execute(update(Topic).where(Topic.id == d.topic_id).values(active=False))
    db.session.commit()
    page = editor_client.get(f"/admin/issues/{draft.id}/articles/{d.id}/edit")
    assert "质量热点（已归档）" in page.get_data(as_text=True)
    form = article_form(editor_client, title="丁（修订）", body=d.body, lead=d.lead)
    answer = editor_client.post(f"/admin/issues/{draft.id}/articles/{d.id}/edit", data=form)
    assert answer.status_code == 302
    assert article("丁（修订）").topic_id == d.topic_id


def test_an_article_of_another_issue_is_not_found(editor_client, draft):
    other = create_issue("另一期")
    db.session.commit()
    a = article("甲")
    assert editor_client.get(f"/admin/issues/{other.id}/articles/{a.id}/edit").status_code == 404


# --- what may not change ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [IssueStatus.SENT, IssueStatus.SENDING, IssueStatus.CANCELLED])
def test_an_issue_that_has_gone_out_refuses_every_edit_and_stays_as_sent(
    editor_client, draft, status
):
    # updated_at too: the ORM's onupdate would move it.
    db.session.execute(
        update(Issue).where(Issue.id == draft.id).values(status=status, updated_at=LONG_AGO)
    )
    db.session.commit()
    before = titles_in_order(draft.id)
    a = article("甲")
    base = f"/admin/issues/{draft.id}/articles"
    t = token(editor_client)
    attempts = [
        editor_client.get(f"{base}/new"),
        editor_client.get(f"{base}/{a.id}/edit"),
        editor_client.post(f"{base}/new", data=article_form(editor_client)),
        editor_client.post(
            f"{base}/{a.id}/edit", data=article_form(editor_client, title="改", topic_id=a.topic_id)
        ),
        editor_client.post(f"{base}/{a.id}/delete", data={"csrf_token": t}),
        editor_client.post(f"{base}/{a.id}/move", data={"csrf_token": t, "direction": "down"}),
    ]
    for answer in attempts:
        assert answer.status_code == 409
        assert "内容以发出的为准，不能再修改" in answer.get_data(as_text=True)
    assert titles_in_order(draft.id) == before
    assert article("甲").body == "甲的正文。"
    assert edited(draft.id) == LONG_AGO
    assert audit_log(draft.id) == []
    page = editor_client.get(f"/admin/issues/{draft.id}").get_data(as_text=True)
    assert "添加文章" not in page and "/move" not in page


def test_a_scheduled_issue_can_be_edited_but_keeps_its_last_article(editor_client, draft):
    db.session.execute(
        update(Issue).where(Issue.id == draft.id).values(status=IssueStatus.SCHEDULED)
    )
    db.session.commit()
    t = token(editor_client)
    for title in ("甲", "乙", "丙"):
        answer = editor_client.post(
            f"/admin/issues/{draft.id}/articles/{article(title).id}/delete",
            data={"csrf_token": t, "confirm": "yes"},
        )
        assert answer.status_code == 302
    last = article("丁")
    answer = editor_client.post(
        f"/admin/issues/{draft.id}/articles/{last.id}/delete",
        data={"csrf_token": t, "confirm": "yes"},
    )
    assert answer.status_code == 409
    assert "请先取消定时" in answer.get_data(as_text=True)
    assert titles_in_order(draft.id) == [("丁", 0)]


def test_every_change_needs_the_csrf_token(editor_client, draft):
    a = article("甲")
    base = f"/admin/issues/{draft.id}/articles"
    form = article_form(editor_client)
    del form["csrf_token"]
    attempts = [
        editor_client.post(f"{base}/new", data=form),
        editor_client.post(f"{base}/{a.id}/edit", data=form),
        editor_client.post(f"{base}/{a.id}/delete", data={}),
        editor_client.post(f"{base}/{a.id}/move", data={"direction": "down"}),
        editor_client.post("/admin/issues/new", data={"title": "无令牌"}),
    ]
    assert [answer.status_code for answer in attempts] == [400] * len(attempts)
    assert titles_in_order(draft.id) == [("甲", 0), ("乙", 1), ("丙", 2), ("丁", 3)]
    assert db.session.scalar(select(Issue).where(Issue.title == "无令牌")) is None
    assert edited(draft.id) == LONG_AGO


# --- the list and a blank issue ----------------------------------------------------------------


def test_the_issues_list_shows_every_issue_newest_first(editor_client, draft):
    older = create_issue("2022年第7期", period="2022-07")
    older.created_at = datetime(2022, 7, 1, tzinfo=UTC)
    older.status = IssueStatus.SENT
    older.published_at = datetime(2022, 7, 2, 1, 0, tzinfo=UTC)
    older.sent_at = datetime(2022, 7, 2, 1, 30, tzinfo=UTC)
    db.session.commit()
    html = editor_client.get("/admin/issues").get_data(as_text=True)
    table = html[html.index('id="issues"') :]
    rows = re.findall(r"<tr>.*?</tr>", table, re.S)[1:]
    assert len(rows) == 2
    assert "2022年第8期" in rows[0] and "2022年第7期" in rows[1]
    assert f'href="/admin/issues/{draft.id}"' in rows[0]
    assert "draft" in rows[0] and "<td>4</td>" in rows[0]
    assert "sent" in rows[1] and "<td>0</td>" in rows[1]
    assert "2022-07-02 09:00" in rows[1] and "2022-07-02 09:30" in rows[1]  # Asia/Shanghai
    assert 'href="/admin/issues/import"' in html


def test_the_blank_issue_form_makes_a_draft(editor_client, app):
    page = editor_client.get("/admin/issues").get_data(as_text=True)
    answer = editor_client.post(
        "/admin/issues/new",
        data={"csrf_token": csrf_token(page), "title": " 2022年第9期 ", "period": "2022-09"},
    )
    assert answer.status_code == 302
    with app.app_context():
        issue = db.session.scalars(select(Issue)).one()
        assert (issue.title, issue.period, issue.status) == ("2022年第9期", "2022-09", "draft")
        assert issue.articles == []
        assert answer.headers["Location"].endswith(f"/admin/issues/{issue.id}")
        entries = db.session.scalars(select(AuditEntry)).all()
        assert [(e.action, e.issue_id, e.detail) for e in entries] == [
            ("create-issue", issue.id, "2022年第9期")
        ]
    page = editor_client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "还没有文章" in page and "添加文章" in page


def test_a_blank_issue_needs_a_title(editor_client, app):
    page = editor_client.get("/admin/issues").get_data(as_text=True)
    answer = editor_client.post(
        "/admin/issues/new", data={"csrf_token": csrf_token(page), "title": ""}
    )
    assert answer.status_code == 400
    assert "请填写标题。" in answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Issue)).all() == []
