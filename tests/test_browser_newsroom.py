"""A staff member's whole job, in real Chromium against the running app: sign in, import
the sample bulletin, preview it as one section, send a test, publish to 50 readers and
watch the progress page count them without reloading, then read the delivery log.

With SCREENSHOTS_DIR set (`make screenshots`), the pages are also saved as PNGs for the
README.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.helpers import STAFF_PASSWORD, wait_for
from tests.sample_content import SAMPLE_DOCUMENT
from webapp.extensions import db
from webapp.issues import ensure_topics
from webapp.models import (
    EventKind,
    StaffRole,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    utcnow,
)
from webapp.staff import create_staff

EDITOR = "bianji@example.org"
SECTIONS = ["质量要闻", "质量热点", "权威观点", "国际动态"]


@pytest.fixture
def page(live_server, chromium):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(locale="zh-CN", viewport={"width": 1200, "height": 900})
        yield context.new_page()
        browser.close()


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def test_import_preview_test_publish_and_watch_in_a_real_browser(
    app, db_session, celery_worker, inbox, live_server, page: Page
):
    topics = ensure_topics(SECTIONS)
    db.session.add_all(
        Subscriber(
            email=f"duzhe{n:02d}@example.com",
            name=f"读者{n}",
            status=SubscriberStatus.ACTIVE,
            topics=topics[: 1 + n % 4],
        )
        for n in range(50)
    )
    create_staff(EDITOR, STAFF_PASSWORD, StaffRole.EDITOR)
    # Some history for the dashboard's chart: sign-ups over two months, a few leaving.
    now = utcnow()
    db.session.add_all(
        SubscriberEvent(kind=kind, source="web", created_at=now - timedelta(days=days))
        for n in range(120)
        for kind, days in [(EventKind.SUBSCRIBED, (n * 7) % 61)]
        + ([(EventKind.UNSUBSCRIBED, (n * 5) % 61)] if n % 6 == 0 else [])
    )
    db.session.commit()

    page.goto(f"{live_server}/admin/login")
    page.get_by_label("邮箱").fill(EDITOR)
    page.get_by_label("密码").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="概览", exact=True)).to_be_visible()
    screenshot(page, "dashboard")

    # Import: the report first, then the draft.
    page.goto(f"{live_server}/admin/issues/import")
    page.locator('input[type="file"]').set_input_files(str(SAMPLE_DOCUMENT))
    page.get_by_role("button", name="检查").click()
    expect(page.get_by_role("heading", name="导入报告")).to_be_visible()
    expect(page.get_by_text("删去的转换残留（1）")).to_be_visible()
    page.get_by_role("button", name="保存为草稿").click()
    expect(page.get_by_text("已保存为草稿")).to_be_visible()
    screenshot(page, "issue")
    issue_url = page.url

    # The editor opens on an article of the draft, with a Markdown preview.
    page.get_by_role("link", name="市场监管总局查处哄抬煤炭价格 服务迎峰度夏").click()
    expect(page.get_by_role("heading", name="修改文章")).to_be_visible()
    page.get_by_role("button", name="预览").click()
    expect(page.get_by_text("一是突出重点问题").first).to_be_visible()
    screenshot(page, "editor")
    page.goto(issue_url)

    # Preview as one section, then a test to myself.
    page.get_by_role("link", name="预览与测试发送").click()
    page.get_by_label("质量热点").check()
    page.get_by_label("质量要闻").uncheck()
    page.get_by_label("权威观点").uncheck()
    page.get_by_label("国际动态").uncheck()
    page.get_by_role("button", name="预览", exact=True).click()
    frame = page.frame_locator("iframe.preview")
    expect(frame.locator("h2.section-title")).to_have_text(["质量热点"])
    page.get_by_role("button", name=f"发送测试邮件给我（{EDITOR}）").click()
    [test_message] = wait_for(lambda: inbox.to(EDITOR), what="the test message")
    assert test_message["Subject"].startswith("[测试] ")

    # Publish, after the confirmation that says who gets it.
    page.goto(issue_url)
    page.get_by_role("link", name="发布…").click()
    expect(page.locator("#audience")).to_have_text("50")
    page.get_by_role("button", name="确认发布（50 位读者）").click()
    page.get_by_role("link", name="投递记录").click()
    # The counts update in place: no reload happens between these two lines.
    expect(page.locator('[data-count="sent"]')).to_have_text("50", timeout=60_000)
    expect(page.locator("#issue-status")).to_have_attribute("data-status", "sent")
    screenshot(page, "sending")

    page.reload()
    # The per-recipient log names subscribers: an editor sees the counts above, not the log.
    expect(page.locator('[data-count="sent"]')).to_have_text("50")
    expect(page.locator("#delivery-log")).to_have_count(0)
    assert len([m for m in inbox.messages if m["Subject"] == test_message["Subject"][5:]]) == 50
