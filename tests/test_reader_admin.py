"""Admins and one reader (the reader page and its actions), search, and bulk changes on a
filtered list: every change waits for its confirmation, and leaves an audit entry and the
reader's own event."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import func, select

from tests.helpers import add_topics, csrf_token, wait_for
from webapp import bulk
from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    BulkChange,
    BulkChangeStatus,
    ConsentMethod,
    Delivery,
    DeliveryStatus,
    EventKind,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Suppression,
)
from webapp.subscriptions import email_hash


@pytest.fixture
def topics(app, db_session):
    return add_topics(["质量要闻", "质量热点", "国际动态"])


def add_reader(email, name, topics, status=SubscriberStatus.ACTIVE, locale="zh") -> int:
    reader = Subscriber(email=email, name=name, status=status, topics=list(topics), locale=locale)
    db.session.add(reader)
    db.session.commit()
    return reader.id


def token(client, path="/admin/subscribers") -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def reader_state(reader_id):
    db.session.expire_all()
    reader = db.session.get(Subscriber, reader_id)
    if reader is None:
        return None
    return reader.status, sorted(t.name for t in reader.topics)


def events_of(reader_id) -> list[tuple[EventKind, str]]:
    query = select(SubscriberEvent.kind, SubscriberEvent.source).where(
        SubscriberEvent.subscriber_id == reader_id
    )
    return [tuple(row) for row in db.session.execute(query.order_by(SubscriberEvent.id))]


def audit_actions() -> list[str]:
    return list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


# --- the reader page -------------------------------------------------------------------------


def test_the_reader_page_shows_status_sections_consent_history_and_deliveries(staff_client, topics):
    from webapp.issues import create_issue

    reader_id = add_reader("wang.fang@example.com", "王芳", topics[:2])
    reader = db.session.get(Subscriber, reader_id)
    reader.consent_method = ConsentMethod.DOUBLE_OPT_IN
    reader.consent_source = "web-form v1"
    reader.consent_ip = "203.0.113.7"
    issue = create_issue("第十二期")
    db.session.flush()
    db.session.add(
        Delivery(
            issue_id=issue.id,
            subscriber_id=reader_id,
            status=DeliveryStatus.FAILED,
            smtp_reply="550 5.1.1 mailbox unknown",
        )
    )
    db.session.add(
        SubscriberEvent(subscriber_id=reader_id, kind=EventKind.CONFIRMED, source="email-link")
    )
    changed = f'{{"added": [{topics[1].id}], "removed": [{topics[2].id}]}}'
    db.session.add(
        SubscriberEvent(
            subscriber_id=reader_id, kind=EventKind.TOPICS_CHANGED, source="staff", detail=changed
        )
    )
    db.session.commit()

    list_page = staff_client.get("/admin/subscribers").get_data(as_text=True)
    assert f'href="/admin/subscribers/{reader_id}"' in list_page  # the row links to the page

    html = staff_client.get(f"/admin/subscribers/{reader_id}").get_data(as_text=True)
    for shown in ("wang.fang@example.com", "王芳", "正在接收", "质量要闻、质量热点", "简体中文"):
        assert shown in html
    for consent in ("读者点击了确认邮件中的链接", "web-form v1", "203.0.113.7"):
        assert consent in html
    assert "第十二期" in html and "失败" in html and "550 5.1.1 mailbox unknown" in html
    assert "已确认订阅" in html and "邮件中的链接" in html
    # A change's details name the sections, not their ids.
    added, removed = topics[1].name, topics[2].name
    assert f"添加的栏目：{added}；移除的栏目：{removed}" in html


def test_an_editor_is_refused_the_reader_page_and_its_actions(editor_client, topics):
    reader_id = add_reader("a@example.com", "甲", topics[:1])
    assert editor_client.get(f"/admin/subscribers/{reader_id}").status_code == 403
    form = {"csrf_token": token(editor_client, "/admin/"), "confirm": "yes"}
    for action in ("topics", "unsubscribe", "resend", "suppress", "erase"):
        answer = editor_client.post(f"/admin/subscribers/{reader_id}/{action}", data=form)
        assert answer.status_code == 403, action
    answer = editor_client.post("/admin/subscribers/bulk", data={**form, "action": "unsubscribe"})
    assert answer.status_code == 403
    assert reader_state(reader_id) == (SubscriberStatus.ACTIVE, ["质量要闻"])


ACTIONS = {
    # action: (extra form fields, what the confirmation page says)
    "topics": ({"topics": "TOPIC"}, "的栏目将改为：国际动态"),
    "unsubscribe": ({}, "将被退订"),
    "resend": ({}, "发送确认订阅的邮件"),
    "suppress": ({}, "停止投递名单"),
    "erase": ({}, "无法恢复"),
}


@pytest.mark.parametrize("action", ACTIONS)
def test_each_action_without_its_confirmation_changes_nothing(staff_client, topics, action):
    reader_id = add_reader("b@example.com", "乙", topics[:1], status=SubscriberStatus.PENDING)
    fields, says = ACTIONS[action]
    fields = {k: str(topics[2].id) if v == "TOPIC" else v for k, v in fields.items()}
    page = staff_client.post(
        f"/admin/subscribers/{reader_id}/{action}",
        data={"csrf_token": token(staff_client), **fields},
    )
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert says in html and 'name="confirm" value="yes"' in html
    assert reader_state(reader_id) == (SubscriberStatus.PENDING, ["质量要闻"])
    assert events_of(reader_id) == [] and audit_actions() == []
    assert db.session.scalar(select(func.count()).select_from(Suppression)) == 0


def confirm(client, reader_id, action, **fields):
    data = {"csrf_token": token(client), "confirm": "yes", **fields}
    return client.post(f"/admin/subscribers/{reader_id}/{action}", data=data)


def test_staff_change_a_readers_sections(staff_client, topics):
    reader_id = add_reader("c@example.com", "丙", topics[:1])
    answer = confirm(staff_client, reader_id, "topics", topics=f"{topics[1].id},{topics[2].id}")
    assert answer.status_code == 302
    assert reader_state(reader_id) == (SubscriberStatus.ACTIVE, ["国际动态", "质量热点"])
    assert events_of(reader_id) == [(EventKind.TOPICS_CHANGED, "staff")]
    assert audit_actions() == ["reader-topics"]

    # None ticked: refused, with the reason, and nothing changes.
    refused = confirm(staff_client, reader_id, "topics")
    assert refused.status_code == 400
    assert "请至少选择一个栏目" in refused.get_data(as_text=True)
    assert reader_state(reader_id) == (SubscriberStatus.ACTIVE, ["国际动态", "质量热点"])


def test_staff_unsubscribe_a_reader(staff_client, topics):
    reader_id = add_reader("d@example.com", "丁", topics[:2])
    assert confirm(staff_client, reader_id, "unsubscribe").status_code == 302
    assert reader_state(reader_id)[0] == SubscriberStatus.UNSUBSCRIBED
    assert events_of(reader_id) == [(EventKind.UNSUBSCRIBED, "staff")]
    assert audit_actions() == ["reader-unsubscribe"]


def test_staff_resend_the_confirmation_to_a_pending_reader(
    staff_client, topics, celery_worker, inbox
):
    reader_id = add_reader("e@example.com", "戊", topics[:1], status=SubscriberStatus.PENDING)
    assert confirm(staff_client, reader_id, "resend").status_code == 302
    [message] = wait_for(lambda: inbox.to("e@example.com"), what="the confirmation email")
    assert "确认" in message["Subject"]
    assert events_of(reader_id) == [(EventKind.CONFIRMATION_SENT, "staff")]
    assert audit_actions() == ["reader-resend-confirmation"]

    # An active reader has nothing to confirm: refused, nothing sent.
    active_id = add_reader("f@example.com", "己", topics[:1])
    refused = confirm(staff_client, active_id, "resend")
    assert refused.status_code == 400 and "待确认" in refused.get_data(as_text=True)
    assert events_of(active_id) == []


def test_staff_suppress_and_erase_a_reader(staff_client, topics):
    reader_id = add_reader("g@example.com", "庚", topics[:1])
    assert confirm(staff_client, reader_id, "suppress").status_code == 302
    assert reader_state(reader_id)[0] == SubscriberStatus.UNSUBSCRIBED
    assert db.session.scalar(select(Suppression.reason).where(
        Suppression.email_hash == email_hash("g@example.com")
    )) == "staff"  # fmt: skip

    answer = confirm(staff_client, reader_id, "erase")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/admin/subscribers")
    assert reader_state(reader_id) is None
    assert audit_actions() == ["reader-suppress", "reader-erase"]
    # The audit log names the reader by id only: it outlives the erased address.
    details = " ".join(db.session.scalars(select(AuditEntry.detail)))
    assert "g@example.com" not in details
    erased = db.session.scalars(select(SubscriberEvent.kind).where(
        SubscriberEvent.kind == EventKind.ERASED
    )).all()  # fmt: skip
    assert erased == [EventKind.ERASED]


# --- search and filters ------------------------------------------------------------------------


def listed(client, **args) -> list[str]:
    html = client.get("/admin/subscribers", query_string=args).get_data(as_text=True)
    return re.findall(r'href="/admin/subscribers/\d+">([^<]+)</a>', html)


def test_search_finds_readers_by_any_part_of_the_address_or_the_name(staff_client, topics):
    add_reader("zhang.wei@example.com", "张伟", topics[:1])
    add_reader("li.na@example.org", "李娜", topics[1:2], locale="en")
    add_reader("zhangsan@example.net", "Zhang San", topics[:2], status=SubscriberStatus.PENDING)

    assert listed(staff_client, q="张") == ["zhang.wei@example.com"]  # a name's first char
    assert listed(staff_client, q="娜") == ["li.na@example.org"]  # inside a name
    assert listed(staff_client, q="ZHANG") == ["zhangsan@example.net", "zhang.wei@example.com"]
    assert listed(staff_client, q="example.org") == ["li.na@example.org"]
    assert listed(staff_client, q="zhang", status="pending") == ["zhangsan@example.net"]
    assert listed(staff_client, q="zhang", topic=topics[0].id, status="active") == [
        "zhang.wei@example.com"
    ]
    assert listed(staff_client, locale="en") == ["li.na@example.org"]
    assert listed(staff_client, q="%") == []  # a wildcard is a character like any other
    assert listed(staff_client, q="li.na\x00") == ["li.na@example.org"]  # control chars go


def test_paging_keeps_the_search(staff_client, topics):
    for n in range(60):
        add_reader(f"r{n:02d}@example.com", f"王{n}", topics[:1])
    add_reader("other@example.com", "李", topics[:1])
    html = staff_client.get("/admin/subscribers?q=王").get_data(as_text=True)
    next_url = re.search(r'<a rel="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    rest = staff_client.get(next_url).get_data(as_text=True)
    seen = re.findall(r">(r\d\d@example\.com)</a>", html + rest)
    assert len(seen) == 60 and len(set(seen)) == 60


# --- bulk changes ------------------------------------------------------------------------------


def bulk_post(client, **fields):
    return client.post("/admin/subscribers/bulk", data={"csrf_token": token(client), **fields})


def test_bulk_remove_section_names_the_count_then_changes_exactly_the_matching_readers(
    staff_client, topics
):
    news, hot, world = topics
    chosen = [add_reader(f"q{n}@example.com", f"质检{n}", [news, hot]) for n in range(3)]
    only_news = add_reader("q9@example.com", "质检9", [news], status=SubscriberStatus.PENDING)
    others = [
        add_reader("other1@example.com", "别人", [news, hot]),  # not matching the search
        add_reader("q5@example.com", "质检5", [hot]),  # matching, but without the section
    ]
    fields = {"q": "质检", "topic": news.id, "action": "remove-topic", "section": news.id}

    first = bulk_post(staff_client, **fields)
    html = first.get_data(as_text=True)
    assert "将为 4 位读者移除栏目 质量要闻" in html
    assert "其中 1 位只订阅了这个栏目" in html
    assert all(reader_state(i)[1] == ["质量热点", "质量要闻"] for i in chosen)  # unchanged
    assert audit_actions() == []

    done = bulk_post(staff_client, **fields, confirm="yes")
    assert done.status_code == 302
    progress = staff_client.get(done.headers["Location"]).get_data(as_text=True)
    assert "已完成：处理 4 位读者，其中 4 位有改动" in progress

    for reader_id in chosen:
        assert reader_state(reader_id) == (SubscriberStatus.ACTIVE, ["质量热点"])
        assert events_of(reader_id) == [(EventKind.TOPICS_CHANGED, "staff-bulk")]
    # The last section gone: the reader left, as when a reader leaves it themselves.
    assert reader_state(only_news)[0] == SubscriberStatus.UNSUBSCRIBED
    assert reader_state(others[0]) == (SubscriberStatus.ACTIVE, ["质量热点", "质量要闻"])
    assert events_of(others[0]) == [] and events_of(others[1]) == []
    assert audit_actions() == ["readers-remove-topic", "readers-remove-topic-done"]
    [entry] = db.session.scalars(
        select(AuditEntry.detail).where(AuditEntry.action == "readers-remove-topic")
    )
    assert "4 readers" in entry and "质检" not in entry  # the search text stays out


def test_bulk_unsubscribe_without_confirmation_changes_nothing(staff_client, topics):
    ids = [add_reader(f"u{n}@example.com", "", topics[:1]) for n in range(3)]
    html = bulk_post(staff_client, status="active", action="unsubscribe").get_data(as_text=True)
    assert "将退订 3 位读者" in html
    assert all(reader_state(i)[0] == SubscriberStatus.ACTIVE for i in ids)
    assert db.session.scalar(select(func.count()).select_from(BulkChange)) == 0


def test_bulk_add_section_spares_readers_who_left_and_those_who_signed_up_later(
    staff_client, topics, app
):
    news, hot, _world = topics
    active = add_reader("a1@example.com", "", [news])
    left = add_reader("a2@example.com", "", [news], status=SubscriberStatus.UNSUBSCRIBED)
    with app.test_request_context():
        change = bulk.plan(
            bulk.BulkAction.ADD_TOPIC,
            bulk.directory.Filters(topic_id=news.id),
            topic_id=hot.id,
            staff_email="admin@example.org",
        )
        db.session.commit()
    later = add_reader("a3@example.com", "", [news])  # after staff confirmed
    bulk.run(change.id)
    assert reader_state(active)[1] == ["质量热点", "质量要闻"]
    assert reader_state(left)[1] == ["质量要闻"]
    assert reader_state(later)[1] == ["质量要闻"]
    change = db.session.get(BulkChange, change.id)
    assert (change.status, change.total, change.done, change.changed) == (
        BulkChangeStatus.DONE, 2, 2, 1,
    )  # fmt: skip


def test_a_large_bulk_change_runs_in_a_worker_with_progress(
    staff_client, topics, celery_worker, monkeypatch
):
    monkeypatch.setattr(bulk, "INLINE_LIMIT", 5)
    monkeypatch.setattr(bulk, "CHUNK", 4)
    ids = [add_reader(f"w{n:02d}@example.com", "", topics[:1]) for n in range(13)]
    answer = bulk_post(staff_client, action="unsubscribe", confirm="yes")
    assert answer.status_code == 302
    change_id = int(answer.headers["Location"].rsplit("/", 1)[1])

    def finished():
        db.session.expire_all()
        change = db.session.get(BulkChange, change_id)
        return change.status == BulkChangeStatus.DONE and change

    change = wait_for(finished, what="the bulk change to finish")
    assert (change.total, change.done, change.changed) == (13, 13, 13)
    assert all(reader_state(i)[0] == SubscriberStatus.UNSUBSCRIBED for i in ids)
    assert all(events_of(i) == [(EventKind.UNSUBSCRIBED, "staff-bulk")] for i in ids)
    html = staff_client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "已完成：处理 13 位读者" in html and 'http-equiv="refresh"' not in html


def test_the_filtered_export_streams_the_matching_readers(staff_client, topics):
    add_reader("x1@example.com", "=SUM(1)", topics[:2])
    add_reader("x2@example.com", "李", topics[1:2], locale="en")
    add_reader("y@example.com", "王", topics[:1])
    answer = staff_client.get(f"/admin/subscribers/export.csv?q=x&topic={topics[1].id}")
    assert answer.is_streamed
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0] == ["email", "name", "status", "sections", "created_at"]
    assert [r[:4] for r in rows[1:]] == [
        ["x1@example.com", "'=SUM(1)", "active", "质量要闻;质量热点"],
        ["x2@example.com", "李", "active", "质量热点"],
    ]
    assert audit_actions() == ["readers-export"]
    [detail] = db.session.scalars(select(AuditEntry.detail))
    assert json.dumps("x") not in detail  # the search text stays out of the log


def test_a_search_finds_part_of_an_address_and_postgresql_can_use_trigram_indexes(app, db_session):
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    from webapp import directory

    db.session.execute(
        Subscriber.__table__.insert(),
        [
            {"email": f"r{n}@example.com", "name": f"读者{n}", "status": "active", "locale": "zh"}
            for n in range(2000)
        ],
    )
    db.session.commit()
    query = directory.filtered_query(select(Subscriber.id), directory.Filters(search="r1234@"))
    [found] = db.session.scalars(query).all()
    assert db.session.get(Subscriber, found).email == "r1234@example.com"
    if db.engine.dialect.name != "postgresql":
        return  # trigram indexes are PostgreSQL's; SQLite scans the list with LIKE
    compiled = query.compile(
        dialect=postgresql.dialect(), compile_kwargs={"render_postcompile": True}
    )
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE subscribers"))
        # A table this small is cheaper to scan; at a million readers the planner picks the
        # indexes by itself. Here we check that the search *can* use them.
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        raw = conn.connection.driver_connection.cursor()
        raw.execute(f"EXPLAIN {compiled}", compiled.params)
        plan = "\n".join(row[0] for row in raw.fetchall())
    assert "ix_subscribers_email_trgm" in plan and "ix_subscribers_name_trgm" in plan, plan


def test_bulk_changes_follow_the_one_reader_rules_and_write_the_same_events(db_session, topics):
    from webapp import subscriptions

    news, hot, world = topics

    count = iter(range(100))

    def twins(sections, status=SubscriberStatus.ACTIVE):
        n = next(count)
        return [add_reader(f"{who}{n}@example.com", "", sections, status)
                for who in ("one", "many")]  # fmt: skip

    def same(one, many, action):
        action(one, many)
        db.session.commit()
        assert reader_state(one) == reader_state(many)
        detail = select(SubscriberEvent.kind, SubscriberEvent.source, SubscriberEvent.detail)
        by = [list(map(tuple, db.session.execute(detail.where(
            SubscriberEvent.subscriber_id == i).order_by(SubscriberEvent.id))))
            for i in (one, many)]  # fmt: skip
        assert by[0] == by[1] != []

    source = "staff-bulk"
    for sections in ([news, hot], [news]):
        one, many = twins(sections)
        same(one, many, lambda a, b: (
            subscriptions.unsubscribe(a, news.id, source=source),
            subscriptions.remove_topic_many([b], news.id, source=source),
        ))  # fmt: skip
    one, many = twins([hot])
    same(one, many, lambda a, b: (
        subscriptions.add_topic(a, world.id, source=source),
        subscriptions.add_topic_many([b], world.id, source=source),
    ))  # fmt: skip
    one, many = twins([hot], SubscriberStatus.PENDING)
    same(one, many, lambda a, b: (
        subscriptions.unsubscribe(a, source=source),
        subscriptions.unsubscribe_many([b], source=source),
    ))  # fmt: skip


# --- navigation and empty states ---------------------------------------------------------------


def test_the_menu_names_the_dashboard_and_offers_sections_to_admins(
    staff_client, editor_client, db_session
):
    admin = staff_client.get("/admin/").get_data(as_text=True)
    assert ">概览</a>" in admin and 'href="/admin/sections">栏目</a>' in admin
    assert "<h1>概览</h1>" in admin
    # Empty states link to the action that fills them.
    assert 'href="/admin/issues/import">导入一期 ›</a>' in admin
    readers = staff_client.get("/admin/subscribers").get_data(as_text=True)
    assert 'href="/admin/subscribers/import">导入 CSV ›</a>' in readers
    filtered = staff_client.get("/admin/subscribers?q=nobody").get_data(as_text=True)
    assert "没有符合条件的读者" in filtered and 'href="/admin/subscribers">清除筛选' in filtered

    editor = editor_client.get("/admin/").get_data(as_text=True)
    assert ">概览</a>" in editor and 'href="/admin/sections"' not in editor
