"""An admin works with readers in real Chromium: finds one by name, opens their page, changes
a section, resends the confirmation (it arrives at the test's SMTP server), unsubscribes them;
then removes a section from a filtered list of three readers in one bulk change."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import select

from tests.helpers import STAFF_PASSWORD, wait_for
from webapp.extensions import db
from webapp.issues import ensure_topics
from webapp.models import (
    AuditEntry,
    EventKind,
    StaffRole,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
)
from webapp.staff import create_staff

ADMIN = "admin.readers@example.org"
READER = "wang.fang@example.com"


@pytest.fixture
def page(live_server, chromium):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(locale="zh-CN", viewport={"width": 1200, "height": 900})
        yield context.new_page()
        browser.close()


def state(email: str) -> tuple[SubscriberStatus, list[str]]:
    db.session.expire_all()
    reader = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
    return reader.status, [t.name for t in reader.topics]


def events(email: str) -> list[tuple[EventKind, str]]:
    reader_id = db.session.scalar(select(Subscriber.id).where(Subscriber.email == email))
    query = select(SubscriberEvent.kind, SubscriberEvent.source).where(
        SubscriberEvent.subscriber_id == reader_id
    )
    return [tuple(row) for row in db.session.execute(query.order_by(SubscriberEvent.id))]


def test_an_admin_finds_a_reader_changes_them_and_removes_a_section_in_bulk(
    app, db_session, celery_worker, inbox, live_server, page: Page
):
    news, hot, world = ensure_topics(["质量要闻", "质量热点", "国际动态"])
    db.session.add(
        Subscriber(email=READER, name="王芳", status=SubscriberStatus.PENDING, topics=[news, hot])
    )
    inspectors = [f"zhijian{n}@example.com" for n in range(3)]
    db.session.add_all(
        Subscriber(email=e, name=f"质检员{n}", status=SubscriberStatus.ACTIVE, topics=[news, hot])
        for n, e in enumerate(inspectors)
    )
    # Neither matches the bulk filter: one is no inspector, one has not the section.
    db.session.add(Subscriber(email="li@example.com", name="李娜", topics=[news, hot]))
    db.session.add(Subscriber(email="zhijian9@example.com", name="质检员9", topics=[hot]))
    create_staff(ADMIN, STAFF_PASSWORD, StaffRole.ADMIN)
    db.session.commit()

    page.goto(f"{live_server}/admin/login")
    page.get_by_label("邮箱").fill(ADMIN)
    page.get_by_label("密码").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="登录").click()

    # Found by name, opened from the list.
    page.get_by_role("link", name="读者", exact=True).click()
    page.get_by_label("邮箱或称呼包含").fill("王芳")
    page.get_by_role("button", name="筛选").click()
    expect(page.locator("#subscribers tr")).to_have_count(2)  # the header and 王芳
    page.get_by_role("link", name=READER).click()
    expect(page.get_by_role("heading", name=READER)).to_be_visible()
    expect(page.locator("#reader-status")).to_have_text("待确认")

    # A section changed, after its confirmation.
    page.get_by_label("质量热点").uncheck()
    page.get_by_label("国际动态").check()
    page.get_by_role("button", name="修改栏目").click()
    expect(page.get_by_text("的栏目将改为：质量要闻、国际动态")).to_be_visible()
    assert state(READER)[1] == ["质量要闻", "质量热点"]  # nothing yet
    page.get_by_role("button", name="确认修改").click()
    expect(page.get_by_text("栏目已修改。")).to_be_visible()
    expect(page.locator("#reader-sections")).to_have_text("质量要闻、国际动态")

    # The confirmation sent again: it arrives.
    page.get_by_role("button", name="重发确认邮件").click()
    page.get_by_role("button", name="确认重发").click()
    expect(page.get_by_text("确认邮件已排队发送。")).to_be_visible()
    [message] = wait_for(lambda: inbox.to(READER), what="the resent confirmation")
    assert message["Subject"] == "请确认订阅《工作简报》"

    # Unsubscribed, after its confirmation.
    page.get_by_role("button", name="退订", exact=True).click()
    expect(page.get_by_text(f"{READER} 将被退订")).to_be_visible()
    assert state(READER)[0] == SubscriberStatus.PENDING
    page.get_by_role("button", name="确认退订").click()
    expect(page.locator("#reader-status")).to_have_text("已退订")
    expect(page.locator("#events tr").nth(1)).to_contain_text("退订")
    expect(page.locator("#events tr").nth(1)).to_contain_text("工作人员")
    assert [kind for kind, _ in events(READER)] == [
        EventKind.TOPICS_CHANGED,
        EventKind.CONFIRMATION_SENT,
        EventKind.UNSUBSCRIBED,
    ]

    # Bulk: the inspectors who chose 质量要闻 lose it, and nobody else changes.
    page.get_by_role("link", name="读者", exact=True).click()
    filters = page.locator("form[method=get]")
    filters.get_by_label("邮箱或称呼包含").fill("质检员")
    filters.get_by_label("栏目").select_option(label="质量要闻")
    filters.get_by_role("button", name="筛选").click()
    expect(page.locator("#subscribers tr")).to_have_count(4)
    bulk = page.locator("form.bulk")
    bulk.get_by_label("操作").select_option(label="移除栏目")
    bulk.get_by_label("栏目").select_option(label="质量要闻")
    bulk.get_by_role("button", name="下一步").click()
    expect(page.get_by_text("将为 3 位读者移除栏目 质量要闻")).to_be_visible()
    assert all(state(e)[1] == ["质量要闻", "质量热点"] for e in inspectors)
    page.get_by_role("button", name="确认").click()
    expect(page.locator("#bulk-figures")).to_contain_text("已完成：处理 3 位读者")

    for email in inspectors:
        assert state(email) == (SubscriberStatus.ACTIVE, ["质量热点"])
        assert events(email) == [(EventKind.TOPICS_CHANGED, "staff-bulk")]
    assert state("li@example.com")[1] == ["质量要闻", "质量热点"]
    assert state("zhijian9@example.com")[1] == ["质量热点"]
    assert events("li@example.com") == [] and events("zhijian9@example.com") == []
    actions = list(db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-5:] == [
        "reader-topics",
        "reader-resend-confirmation",
        "reader-unsubscribe",
        "readers-remove-topic",
        "readers-remove-topic-done",
    ]
