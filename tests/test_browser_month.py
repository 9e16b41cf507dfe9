"""A month of a real office, in real Chromium against the running app: an editor imports the
sample, sets its subject and number and submits it; the reviewer gets the email, returns it
with a comment; the editor fixes it and submits again; the reviewer approves; the editor
publishes and watches the sending page's progress bar reach 100% at an honest rate; the
reader's message has the new subject, the preheader and the number.

With SCREENSHOTS_DIR set (`make screenshots`), the review and progress pages are saved for
the README.
"""

from __future__ import annotations

import re

import lxml.html
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import func, select

from tests.helpers import STAFF_PASSWORD, wait_for
from tests.sample_content import SAMPLE_DOCUMENT
from tests.test_browser_newsroom import screenshot
from webapp import site_settings
from webapp.extensions import db
from webapp.issues import ensure_topics
from webapp.models import Delivery, Issue, StaffRole, Subscriber, SubscriberStatus
from webapp.staff import create_staff

EDITOR = "bianji@example.org"
REVIEWER = "shenhe@example.org"
READERS = 300
SUBJECT = "质量发展研究院工作简报 2022年第8期"
PREHEADER = "八月要闻：认证认可检验检测发展规划、全国质量月"


@pytest.fixture
def browser(live_server, chromium):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


def signed_in(browser, live_server: str, email: str) -> Page:
    context = browser.new_context(locale="zh-CN", viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server}/admin/login")
    page.get_by_label("邮箱").fill(email)
    page.get_by_label("密码").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="概览", exact=True)).to_be_visible()
    return page


@pytest.fixture
def paced(app):
    """Sending paced at 100 messages a second, so the run lasts long enough to measure."""
    saved = app.config["SEND_RATE"]
    app.config["SEND_RATE"] = 100.0
    app.extensions.pop("bulletin.send_rate", None)
    yield
    app.config["SEND_RATE"] = saved
    app.extensions.pop("bulletin.send_rate", None)


def test_a_month_import_number_review_approve_publish_and_watch(
    app, db_session, celery_worker, inbox, live_server, browser, paced
):
    site_settings.set_value("review_required", True)
    topics = ensure_topics(["质量要闻", "质量热点", "权威观点", "国际动态"])
    db.session.add_all(
        Subscriber(email=f"duzhe{n:03d}@example.com", status=SubscriberStatus.ACTIVE, topics=topics)
        for n in range(READERS)
    )
    create_staff(EDITOR, STAFF_PASSWORD, StaffRole.EDITOR)
    create_staff(REVIEWER, STAFF_PASSWORD, StaffRole.REVIEWER)
    db.session.commit()

    editor = signed_in(browser, live_server, EDITOR)
    editor.goto(f"{live_server}/admin/issues/import")
    editor.locator('input[type="file"]').set_input_files(str(SAMPLE_DOCUMENT))
    editor.get_by_role("button", name="检查").click()
    editor.get_by_role("button", name="保存为草稿").click()
    expect(editor.get_by_text("已保存为草稿")).to_be_visible()
    issue_url = editor.url

    # Subject and number: 2022年第8期, 总第45期.
    editor.get_by_label("本年第几期").fill("8")
    editor.get_by_label("总第几期").fill("45")
    editor.get_by_label("邮件主题（留空则按主题格式生成）").fill(SUBJECT)
    editor.get_by_label("预览文字", exact=False).fill(PREHEADER)
    editor.locator("form.issue-details").get_by_role("button", name="保存").click()
    expect(editor.get_by_text("已保存本期信息。")).to_be_visible()
    expect(editor.locator(".issue-number").first).to_have_text("2022年第8期 · 总第45期")

    editor.get_by_role("button", name="送审").click()
    expect(editor.locator("#review-stage")).to_have_text("待审核")

    # The reviewer's email: the preview link, and the test message as readers will get it.
    [request] = wait_for(
        lambda: [m for m in inbox.to(REVIEWER) if m["Subject"].startswith("[送审]")],
        what="the review request",
    )
    preview_url = re.search(r"(http://\S+/preview)", request.get_body(("plain",)).get_content())
    wait_for(
        lambda: [m for m in inbox.to(REVIEWER) if m["Subject"] == f"[测试] {SUBJECT}"],
        what="the test message to the reviewer",
    )

    reviewer = signed_in(browser, live_server, REVIEWER)
    reviewer.goto(preview_url.group(1))
    expect(reviewer.frame_locator("iframe.preview").locator("h1.masthead-title")).to_be_visible()
    reviewer.goto(issue_url)
    reviewer.get_by_label("退回意见（编辑会在本期页面看到）").fill("“质量月”一文的来源请补全。")
    reviewer.get_by_role("button", name="退回修改").click()
    expect(reviewer.locator("#review-stage")).to_have_text("已退回")

    editor.goto(issue_url)
    expect(editor.locator("#review-comment")).to_have_text("“质量月”一文的来源请补全。")
    screenshot(editor, "review")
    editor.get_by_role("link", name="关于开展2022年全国“质量月”活动的通知").first.click()
    editor.get_by_label("来源名称（可不填）").fill("国家市场监督管理总局")
    editor.get_by_role("button", name="保存").click()
    expect(editor.get_by_text("已保存：关于开展2022年全国“质量月”活动的通知")).to_be_visible()
    editor.get_by_role("button", name="送审").click()
    expect(editor.locator("#review-stage")).to_have_text("待审核")

    reviewer.goto(issue_url)
    reviewer.get_by_role("button", name="审核通过").click()
    expect(reviewer.locator("#review-stage")).to_have_text("已通过审核")
    reviewer.goto(f"{live_server}/admin/issues")
    expect(reviewer.locator("#issues")).to_contain_text("已通过审核")

    # Publish; it lands on the sending page, whose bar fills without a reload.
    editor.goto(issue_url)
    editor.get_by_role("link", name="发布…").click()
    editor.get_by_role("button", name=f"确认发布（{READERS} 位读者）").click()
    expect(editor).to_have_url(re.compile(r"/sending$"))
    bar = editor.locator("progress#send-progress")
    expect(bar).to_have_attribute("max", str(READERS))
    expect(bar).to_have_attribute("value", str(READERS), timeout=120_000)
    expect(editor.locator("#progress-numbers")).to_contain_text(f"{READERS} / {READERS} 封（100%）")

    # The rate shown against the rate measured from the ledger: first publish to last answer.
    expect(editor.locator("#issue-status")).to_have_attribute("data-status", "sent", timeout=60_000)
    screenshot(editor, "progress")
    shown = float(editor.locator("#send-rate").inner_text().split()[0].replace(",", ""))
    db.session.expire_all()
    issue = db.session.scalars(select(Issue)).one()
    last = db.session.scalar(select(func.max(Delivery.sent_at)))
    published = issue.published_at
    span = (last.replace(tzinfo=None) - published.replace(tzinfo=None)).total_seconds()
    measured = READERS / span
    assert measured / 2 <= shown <= measured * 2, (shown, measured)

    # What the reader's inbox shows: the subject, the preheader, the number in the masthead.
    message = inbox.to("duzhe000@example.com")[0]
    assert message["Subject"] == SUBJECT
    html = lxml.html.fromstring(message.get_body(("html",)).get_content())
    assert html.find_class("preheader")[0].text_content() == PREHEADER
    assert "2022年第8期 · 总第45期" in html.find_class("masthead")[0].text_content()
