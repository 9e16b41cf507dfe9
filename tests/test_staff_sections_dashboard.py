"""The staff newsroom: admins manage sections; every staff member sees the dashboard."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select

from tests.helpers import add_topics, csrf_token
from tests.sample_content import sample_content
from webapp import charts, notifications, subscriptions
from webapp.extensions import db
from webapp.labels import LABELS
from webapp.models import (
    AuditEntry,
    EventKind,
    EventSource,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Topic,
)
from webapp.rendering import render_digest
from webapp.subscriber_csv import import_subscribers
from webapp.subscriptions import Consent

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def topics(app, db_session):
    return [t.id for t in add_topics(["质量要闻", "质量热点", "国际动态"])]


def fresh() -> None:
    """End the test's read transaction, so it sees what the requests committed."""
    db.session.rollback()


def in_order() -> list[str]:
    fresh()
    return [t.name for t in db.session.scalars(select(Topic).order_by(Topic.position, Topic.id))]


def audit_actions() -> list[tuple[str, str]]:
    fresh()
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))
    return [(e.action, e.detail) for e in entries]


def post(client, path: str, **data):
    """Submit a form the way a browser does: with the token of the page it came from."""
    page = client.get("/admin/").get_data(as_text=True)
    return client.post(path, data={"csrf_token": csrf_token(page), **data})


def subscribe_form(app) -> str:
    """The public form as a reader sees it. In an app context of its own: requests made in
    the test's context share its `g`, where Flask-Login keeps the signed-in staff member."""
    with app.app_context():
        return app.test_client().get("/subscribe").get_data(as_text=True)


def endpoints(topic_id: int) -> list[tuple[str, dict]]:
    return [
        ("/admin/sections", {"name": "新栏目"}),
        (f"/admin/sections/{topic_id}/rename", {"name": "改过的名字"}),
        (f"/admin/sections/{topic_id}/move", {"direction": "down"}),
        (f"/admin/sections/{topic_id}/archive", {"confirm": "yes"}),
        (f"/admin/sections/{topic_id}/unarchive", {}),
    ]


# --- who may ------------------------------------------------------------------------------


def test_editors_get_403_on_every_sections_endpoint(editor_client, topics):
    assert editor_client.get("/admin/sections").status_code == 403
    for path, data in endpoints(topics[0]):
        assert post(editor_client, path, **data).status_code == 403, path
    assert in_order() == ["质量要闻", "质量热点", "国际动态"]
    assert audit_actions() == []


def test_every_sections_form_needs_a_csrf_token(staff_client, topics):
    for path, data in endpoints(topics[0]):
        assert staff_client.post(path, data=data).status_code == 400, path
        forged = staff_client.post(path, data={**data, "csrf_token": "not-a-real-token"})
        assert forged.status_code == 400, path
    assert in_order() == ["质量要闻", "质量热点", "国际动态"]
    assert audit_actions() == []


def test_the_sections_page_lists_sections_in_order_with_their_readers(staff_client, topics):
    db.session.add_all(
        [
            Subscriber(email="a@example.com", status=SubscriberStatus.ACTIVE),
            Subscriber(email="b@example.com", status=SubscriberStatus.ACTIVE),
            Subscriber(email="c@example.com", status=SubscriberStatus.PENDING),
        ]
    )
    db.session.flush()
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        reader = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
        reader.topics = [db.session.get(Topic, topics[1])]
    db.session.commit()
    page = staff_client.get("/admin/sections")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert re.findall(r'data-section="([^"]+)"', html) == ["质量要闻", "质量热点", "国际动态"]
    row = html.split(f'id="section-{topics[1]}"')[1].split("</li>")[0]
    assert 'data-readers="2"' in row and "另有 1 位待确认" in row


# --- create, rename -----------------------------------------------------------------------


def test_an_admin_creates_a_section_at_the_end_with_a_unique_slug(staff_client, topics):
    answer = post(staff_client, "/admin/sections", name="  Tech /  News ")
    assert answer.status_code == 302
    post(staff_client, "/admin/sections", name="Tech News")
    assert in_order() == ["质量要闻", "质量热点", "国际动态", "Tech / News", "Tech News"]
    slugs = db.session.scalars(select(Topic.slug).order_by(Topic.position)).all()
    assert slugs[3:] == ["tech-news", "tech-news-2"]
    assert [t.active for t in db.session.scalars(select(Topic))] == [True] * 5
    html = staff_client.get("/admin/sections").get_data(as_text=True)
    assert "已添加栏目“Tech News”" in html
    assert [a for a, _ in audit_actions()] == ["section-create", "section-create"]
    assert "Tech / News (tech-news)" in audit_actions()[0][1]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("质量要闻", "已经有名为“质量要闻”的栏目。请换一个名称。"),
        (" 质量要闻 ", "已经有名为“质量要闻”的栏目。请换一个名称。"),
        ("ZhiLiang", "“ZhiLiang”与已有的栏目“zhiliang”只差大小写、全角半角或空格"),
        ("ｚｈｉｌｉａｎｇ", "与已有的栏目“zhiliang”只差大小写、全角半角或空格"),
    ],
)
def test_a_duplicate_name_is_refused_with_a_clear_message(staff_client, topics, name, message):
    post(staff_client, "/admin/sections", name="zhiliang")
    answer = post(staff_client, "/admin/sections", name=name)
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    assert len(in_order()) == 4
    assert [a for a, _ in audit_actions()] == ["section-create"]


def test_a_name_equal_to_another_sections_slug_is_refused(staff_client, topics):
    post(staff_client, "/admin/sections", name="Tech")
    post(staff_client, f"/admin/sections/{topics[0] + 3}/rename", name="科技")
    answer = post(staff_client, "/admin/sections", name="TECH")
    assert answer.status_code == 400
    assert "与栏目“科技”的标识 tech 相同" in answer.get_data(as_text=True)


def test_an_empty_name_is_refused(staff_client, topics):
    answer = post(staff_client, "/admin/sections", name="   ")
    assert answer.status_code == 400
    assert "请填写栏目名称" in answer.get_data(as_text=True)
    assert len(in_order()) == 3


def test_a_section_gets_an_english_name_for_english_pages_and_emails(staff_client, topics):
    answer = post(
        staff_client,
        f"/admin/sections/{topics[0]}/rename",
        name="质量要闻",
        name_en=" Quality  News ",
    )
    assert answer.status_code == 302
    topic = db.session.get(Topic, topics[0])
    assert (topic.name, topic.name_en) == ("质量要闻", "Quality News")
    assert audit_actions() == [("section-rename", f"#{topics[0]} English: — → Quality News")]
    # A rename that leaves the field out (an older page) keeps the English name.
    post(staff_client, f"/admin/sections/{topics[0]}/rename", name="质量要闻")
    assert db.session.get(Topic, topics[0]).name_en == "Quality News"

    with staff_client.application.app_context():
        english = staff_client.application.test_client().get("/subscribe?lang=en")
        chinese = staff_client.application.test_client().get("/subscribe?lang=zh")
    english, chinese = english.get_data(as_text=True), chinese.get_data(as_text=True)
    assert "Quality News" in english and "质量要闻" not in english
    assert "质量要闻" in chinese and "Quality News" not in chinese
    assert "质量热点" in english  # no English name: the Chinese one

    content = sample_content()
    first = content.sections[0]
    named = replace(content, sections=(replace(first, name_en="Quality News"),))
    in_english = render_digest(named, {first.topic_id}, locale="en")
    in_chinese = render_digest(named, {first.topic_id}, locale="zh")
    assert "Quality News" in in_english.html and "Quality News" in in_english.text
    assert first.name not in in_english.html.replace(named.title, "")
    assert first.name in in_chinese.html and "Quality News" not in in_chinese.html


def test_the_confirmation_email_names_sections_in_the_readers_language(app, topics, inbox):
    db.session.get(Topic, topics[0]).name_en = "Quality News"
    chosen = [db.session.get(Topic, t) for t in topics[:2]]
    english = Subscriber(email="en@example.com", locale="en", topics=chosen)
    chinese = Subscriber(email="zh@example.com", locale="zh", topics=chosen)
    db.session.add_all([english, chinese])
    db.session.commit()
    assert notifications.send_confirmation(english.id)
    assert notifications.send_confirmation(chinese.id)
    [to_english] = inbox.to("en@example.com")
    [to_chinese] = inbox.to("zh@example.com")
    text = to_english.get_body(("plain",)).get_content()
    assert "Quality News" in text and "质量要闻" not in text and "质量热点" in text
    assert "质量要闻" in to_chinese.get_body(("plain",)).get_content()


def test_two_sections_cannot_share_an_english_name(staff_client, topics):
    post(staff_client, f"/admin/sections/{topics[0]}/rename", name="质量要闻", name_en="News")
    answer = post(staff_client, "/admin/sections", name="新栏目", name_en="news")
    assert answer.status_code == 400
    assert "已经有名为“news”的栏目" in answer.get_data(as_text=True)


def test_an_admin_renames_a_section_and_its_slug_stays(staff_client, topics):
    answer = post(staff_client, f"/admin/sections/{topics[2]}/rename", name="国际质量动态")
    assert answer.status_code == 302
    assert in_order() == ["质量要闻", "质量热点", "国际质量动态"]
    assert db.session.get(Topic, topics[2]).slug == "国际动态"
    assert audit_actions() == [("section-rename", f"#{topics[2]} 国际动态 → 国际质量动态")]


def test_renaming_to_another_sections_name_is_refused(staff_client, topics):
    answer = post(staff_client, f"/admin/sections/{topics[2]}/rename", name="质量热点")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert "已经有名为“质量热点”的栏目。请换一个名称。" in html
    field = re.search(rf'<input[^>]*id="name-{topics[2]}"[^>]*>', html).group(0)
    assert 'value="质量热点"' in field  # what the admin typed, to correct
    assert in_order() == ["质量要闻", "质量热点", "国际动态"]
    assert audit_actions() == []


def test_an_unknown_section_is_404(staff_client, topics):
    assert post(staff_client, "/admin/sections/999/rename", name="x").status_code == 404
    assert post(staff_client, "/admin/sections/999/archive").status_code == 404


# --- reorder ------------------------------------------------------------------------------


def test_an_admin_reorders_sections_and_positions_stay_dense(staff_client, topics):
    # Older data may have gaps; the first move closes them.
    for topic_id, position in zip(topics, (5, 10, 40), strict=True):
        db.session.get(Topic, topic_id).position = position
    db.session.commit()
    assert (
        post(staff_client, f"/admin/sections/{topics[0]}/move", direction="down").status_code == 302
    )
    assert in_order() == ["质量热点", "质量要闻", "国际动态"]
    post(staff_client, f"/admin/sections/{topics[2]}/move", direction="up")
    assert in_order() == ["质量热点", "国际动态", "质量要闻"]
    positions = db.session.scalars(select(Topic.position).order_by(Topic.position)).all()
    assert positions == [1, 2, 3]
    assert [a for a, _ in audit_actions()] == ["section-move-down", "section-move-up"]
    assert audit_actions()[1][1] == f"#{topics[2]} 国际动态: 3 → 2"


def test_moving_the_first_section_up_changes_nothing(staff_client, topics):
    answer = post(staff_client, f"/admin/sections/{topics[0]}/move", direction="up")
    assert answer.status_code == 302
    assert in_order() == ["质量要闻", "质量热点", "国际动态"]
    assert audit_actions() == []
    assert (
        post(staff_client, f"/admin/sections/{topics[0]}/move", direction="sideways").status_code
        == 400
    )


# --- archive ------------------------------------------------------------------------------


def test_an_archived_section_leaves_the_subscribe_form_but_readers_keep_it(
    app, staff_client, topics
):
    reader = Subscriber(
        email="reader@example.com",
        status=SubscriberStatus.ACTIVE,
        topics=[db.session.get(Topic, t) for t in topics],
    )
    db.session.add(reader)
    db.session.commit()
    reader_id = reader.id
    assert "国际动态" in subscribe_form(app)

    assert (
        post(staff_client, f"/admin/sections/{topics[2]}/archive", confirm="yes").status_code == 302
    )
    form = subscribe_form(app)
    assert "国际动态" not in form and "质量要闻" in form
    fresh()
    assert [t.name for t in db.session.get(Subscriber, reader_id).topics] == [
        "质量要闻",
        "质量热点",
        "国际动态",
    ]
    html = staff_client.get("/admin/sections").get_data(as_text=True)
    row = html.split(f'id="section-{topics[2]}"')[1].split("</li>")[0]
    assert "已归档" in row and 'data-readers="1"' in row and "恢复" in row

    assert post(staff_client, f"/admin/sections/{topics[2]}/unarchive").status_code == 302
    assert "国际动态" in subscribe_form(app)
    assert audit_actions() == [
        ("section-archive", f"#{topics[2]} 国际动态"),
        ("section-unarchive", f"#{topics[2]} 国际动态"),
    ]


def test_the_last_open_section_cannot_be_archived(staff_client, topics):
    post(staff_client, f"/admin/sections/{topics[0]}/archive", confirm="yes")
    post(staff_client, f"/admin/sections/{topics[1]}/archive", confirm="yes")
    answer = post(staff_client, f"/admin/sections/{topics[2]}/archive", confirm="yes")
    assert answer.status_code == 400
    assert "最后一个开放的栏目" in answer.get_data(as_text=True)
    fresh()
    assert db.session.get(Topic, topics[2]).active is True
    assert [a for a, _ in audit_actions()] == ["section-archive", "section-archive"]


# --- dashboard ----------------------------------------------------------------------------


def chart(html: str) -> ET.Element:
    """The dashboard's chart, parsed as XML (so it must be well-formed)."""
    match = re.search(r"<svg.*?</svg>", html, re.S)
    assert match, "the dashboard has no inline <svg>"
    return ET.fromstring(match.group(0))


def add_event(kind: EventKind, when: datetime) -> None:
    db.session.add(SubscriberEvent(kind=kind, source="web", created_at=when))


def test_the_dashboard_shows_readers_and_a_chart_of_the_events(staff_client, topics):
    db.session.add_all(
        [Subscriber(email=f"a{n}@example.com", status=SubscriberStatus.ACTIVE) for n in range(4)]
        + [Subscriber(email="p@example.com", status=SubscriberStatus.PENDING)]
        + [Subscriber(email="u@example.com", status=SubscriberStatus.UNSUBSCRIBED)]
    )
    now = datetime.now(UTC)
    yesterday = (now - timedelta(days=1)).date()
    for _ in range(3):
        add_event(EventKind.SUBSCRIBED, datetime.combine(yesterday, time(12), tzinfo=UTC))
    add_event(EventKind.UNSUBSCRIBED, now)
    add_event(EventKind.CONFIRMED, now)  # neither series
    add_event(EventKind.SUBSCRIBED, now - timedelta(days=120))  # before the window
    db.session.commit()

    page = staff_client.get("/admin/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    counts = dict(re.findall(r'data-status="(\w+)"><dt>[^<]+</dt><dd>(\d+)</dd>', html))
    assert counts == {"pending": "1", "active": "4", "unsubscribed": "1", "bounced": "0",
                      "complained": "0"}  # fmt: skip
    assert "<script" not in html

    svg = chart(html)
    assert svg.get("role") == "img"
    assert svg.get("data-last-day") == now.date().isoformat()
    assert svg.find(f"{SVG}title").text == "近 90 天的新订阅与退订"
    description = svg.find(f"{SVG}desc").text
    assert "新订阅共 3 次，退订共 1 次" in description
    assert f"新订阅最多的一天是 {yesterday.isoformat()}，3 次" in description
    series = {g.get("data-series"): g for g in svg.iter(f"{SVG}g") if g.get("data-series")}
    assert series["signups"].get("data-total") == "3"
    assert series["unsubscribes"].get("data-total") == "1"
    marks = {
        key: [(c.get("data-date"), c.get("data-count")) for c in g.iter(f"{SVG}circle")]
        for key, g in series.items()
    }
    assert marks == {
        "signups": [(yesterday.isoformat(), "3")],
        "unsubscribes": [(now.date().isoformat(), "1")],
    }
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "日期（UTC）" in texts and "次数" in texts and "新订阅" in texts and "退订" in texts
    assert f"<tr><td>{yesterday.isoformat()}</td><td>3</td><td>0</td></tr>" in html


def test_the_dashboard_counts_new_readers_by_where_they_came_from(staff_client, topics):
    ids = list(topics)
    for n in range(3):
        subscriptions.subscribe(f"form{n}@example.com", "", ids)
    subscriptions.subscribe("api@example.com", "", ids, source=EventSource.API)
    subscriptions.add_consented(
        "staff@example.com", "", ids, consent=Consent(source="phone call"), source="staff"
    )
    lines = "".join(f"csv{n}@example.com,,\n" for n in range(5))
    import_subscribers(("email,name,sections\n" + lines).encode(), consented=True, source="x")
    db.session.commit()

    html = staff_client.get("/admin/").get_data(as_text=True)
    cells = dict(re.findall(r'<td data-source="(\w+)">(\d+)</td>', html))
    assert cells == {"form": "3", "import": "5", "staff": "1", "api": "1"}
    assert "近 90 天新读者的来源" in html


def test_every_reader_status_has_a_label_on_the_dashboard():
    assert set(LABELS[SubscriberStatus]) == set(SubscriberStatus)


def test_the_dashboard_is_for_every_staff_member_but_sections_only_for_admins(
    editor_client, topics
):
    html = editor_client.get("/admin/").get_data(as_text=True)
    assert "<svg" in html and "质量热点" in html
    assert "/admin/sections" not in html


def test_daily_counts_group_events_by_utc_day(db_session):
    today = date(2024, 3, 10)
    add_event(EventKind.SUBSCRIBED, datetime(2024, 3, 9, 23, 59, tzinfo=UTC))
    add_event(EventKind.SUBSCRIBED, datetime(2024, 3, 10, 0, 0, tzinfo=UTC))
    add_event(EventKind.SUBSCRIBED, datetime(2024, 3, 10, 0, 30, tzinfo=UTC))
    add_event(EventKind.UNSUBSCRIBED, datetime(2024, 3, 8, 8, 0, tzinfo=UTC))
    add_event(EventKind.SUBSCRIBED, datetime(2024, 3, 7, 23, 59, tzinfo=UTC))  # before
    add_event(EventKind.SUBSCRIBED, datetime(2024, 3, 11, 0, 0, tzinfo=UTC))  # after
    db.session.flush()
    daily = charts.daily_counts(3, today=today)
    assert daily.days == [date(2024, 3, 8), date(2024, 3, 9), date(2024, 3, 10)]
    assert daily.signups == [0, 1, 2]
    assert daily.unsubscribes == [1, 0, 0]


def test_the_chart_escapes_every_text():
    markup = charts.svg_chart(
        [date(2024, 1, 1), date(2024, 1, 2)],
        [charts.Series('a"b', "<i>x</i>", [0, 2], color='red" onload="x')],
        title="<script>alert(1)</script>",
        description="a & b",
        x_label="<x>",
        y_label="<y>",
        chart_id='c"d',
    )
    assert "<script>" not in markup and "<i>" not in markup and 'onload="' not in markup
    svg = ET.fromstring(str(markup))
    assert svg.find(f"{SVG}title").text == "<script>alert(1)</script>"
    assert svg.find(f"{SVG}desc").text == "a & b"
    assert [c.get("data-count") for c in svg.iter(f"{SVG}circle")] == ["2"]
