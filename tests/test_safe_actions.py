"""Destructive actions ask first, on a second step that works without JavaScript: without
the confirmation nothing changes. A deleted article can be restored while its issue is a
draft."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.helpers import csrf_token, log_in
from webapp import publishing
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import (
    Article,
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    StaffRole,
    Subscriber,
    SubscriberStatus,
    Topic,
)
from webapp.tokens import Purpose, make_token


@pytest.fixture
def draft(app, db_session) -> Issue:
    news, hot = ensure_topics(["质量要闻", "质量热点"])
    db.session.add_all(
        Subscriber(email=f"r{n}@example.com", status=SubscriberStatus.ACTIVE, topics=[news, hot])
        for n in range(12)
    )
    issue = create_issue("第十期")
    add_article(issue, news, "甲", "甲的正文。", lead="甲的导语。")
    add_article(issue, news, "乙", "乙的正文。", lead="乙的导语。")
    add_article(issue, hot, "丙", "丙的正文。", lead="丙的导语。")
    db.session.commit()
    return issue


def token_from(client, path: str) -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def titles(issue: Issue) -> list[str]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Article.title).where(Article.issue_id == issue.id).order_by(Article.position)
        )
    )


def test_deleting_an_article_asks_first_and_can_be_undone(staff_client, draft):
    b = next(a for a in draft.articles if a.title == "乙")
    path = f"/admin/issues/{draft.id}/articles/{b.id}/delete"
    asked = staff_client.post(path, data={"csrf_token": token_from(staff_client, "/admin/")})
    assert asked.status_code == 200
    page = asked.get_data(as_text=True)
    assert "删除《乙》" in page and 'name="confirm" value="yes"' in page
    assert titles(draft) == ["甲", "乙", "丙"]  # nothing changed

    done = staff_client.post(path, data={"csrf_token": csrf_token(page), "confirm": "yes"})
    assert done.status_code == 302 and titles(draft) == ["甲", "丙"]

    issue_page = staff_client.get(f"/admin/issues/{draft.id}").get_data(as_text=True)
    assert "已删除的文章" in issue_page
    restore = issue_page[issue_page.index("/deleted/") :].split('"')[0]
    answer = staff_client.post(
        f"/admin/issues/{draft.id}{restore}", data={"csrf_token": csrf_token(issue_page)}
    )
    assert answer.status_code == 302
    assert titles(draft) == ["甲", "乙", "丙"]  # back in its place


def test_a_deleted_article_stays_deleted_once_the_issue_has_gone_out(staff_client, draft):
    c = next(a for a in draft.articles if a.title == "丙")
    staff_client.post(
        f"/admin/issues/{draft.id}/articles/{c.id}/delete",
        data={"csrf_token": token_from(staff_client, "/admin/"), "confirm": "yes"},
    )
    publishing.publish_issue(draft.id)
    db.session.commit()
    page = staff_client.get(f"/admin/issues/{draft.id}").get_data(as_text=True)
    assert 'id="deleted"' not in page and "/restore" not in page


def test_cancelling_a_send_asks_first_and_says_how_many_readers_miss_out(staff_client, draft):
    publishing.publish_issue(draft.id)
    db.session.commit()
    path = f"/admin/issues/{draft.id}/cancel"
    asked = staff_client.post(path, data={"csrf_token": token_from(staff_client, "/admin/")})
    assert asked.status_code == 200
    assert "取消发送：还有 12 位读者不会收到本期。" in asked.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Issue, draft.id).status == IssueStatus.SENDING
    done = staff_client.post(
        path, data={"csrf_token": csrf_token(asked.get_data(as_text=True)), "confirm": "yes"}
    )
    assert done.status_code == 302
    db.session.expire_all()
    assert db.session.get(Issue, draft.id).status == IssueStatus.CANCELLED
    skipped = db.session.scalar(
        select(func.count()).where(
            Delivery.issue_id == draft.id, Delivery.status == DeliveryStatus.SKIPPED
        )
    )
    assert skipped == 12


def test_archiving_a_section_asks_first(staff_client, draft):
    news = db.session.scalar(select(Topic).where(Topic.name == "质量要闻"))
    path = f"/admin/sections/{news.id}/archive"
    asked = staff_client.post(path, data={"csrf_token": token_from(staff_client, "/admin/")})
    assert asked.status_code == 200
    assert "已订阅的 12 位读者保留它" in asked.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Topic, news.id).active is True
    staff_client.post(
        path, data={"csrf_token": csrf_token(asked.get_data(as_text=True)), "confirm": "yes"}
    )
    db.session.expire_all()
    assert db.session.get(Topic, news.id).active is False


def reader_links(app) -> tuple[int, str]:
    reader = db.session.scalar(select(Subscriber).where(Subscriber.email == "r0@example.com"))
    with app.test_request_context():
        token = make_token(Purpose.PREFERENCES, {"s": reader.id})
    return reader.id, f"/preferences/{token}"


def test_a_readers_unsubscribe_from_everything_asks_first(app, draft):
    reader_id, manage = reader_links(app)
    client = app.test_client()
    asked = client.post(f"{manage}/unsubscribe", data={"csrf_token": token_from(client, manage)})
    assert asked.status_code == 200
    assert "r0@example.com 将不再收到任何栏目的简报" in asked.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Subscriber, reader_id).status == SubscriberStatus.ACTIVE
    client.post(
        f"{manage}/unsubscribe",
        data={"csrf_token": csrf_token(asked.get_data(as_text=True)), "confirm": "yes"},
    )
    db.session.expire_all()
    assert db.session.get(Subscriber, reader_id).status == SubscriberStatus.UNSUBSCRIBED


def test_erasing_a_readers_data_asks_first(app, draft):
    reader_id, manage = reader_links(app)
    client = app.test_client()
    bare = client.post(f"{manage}/erase", data={"csrf_token": token_from(client, manage)})
    assert bare.status_code == 200 and "删除我的数据？" in bare.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Subscriber, reader_id) is not None
    client.post(
        f"{manage}/erase",
        data={"csrf_token": csrf_token(bare.get_data(as_text=True)), "confirm": "yes"},
    )
    db.session.expire_all()
    assert db.session.get(Subscriber, reader_id) is None


def test_an_editor_gets_the_same_second_step(app, draft):
    editor = log_in(app, "bianji@example.org", StaffRole.EDITOR)
    a = next(a for a in draft.articles if a.title == "甲")
    asked = editor.post(
        f"/admin/issues/{draft.id}/articles/{a.id}/delete",
        data={"csrf_token": token_from(editor, "/admin/")},
    )
    assert asked.status_code == 200 and titles(draft) == ["甲", "乙", "丙"]
