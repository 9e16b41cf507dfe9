"""A reader's whole life, in real Chromium against the running app.

The app serves on loopback, a real Celery worker sends through a real SMTP server (aiosmtpd),
and the reader follows the links in the mail they receive, as they would in a mail client.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import lxml.html
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import select

from tests.helpers import wait_for
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import Issue, IssueStatus, Subscriber, SubscriberStatus

READER = "wang.fang@example.com"


@pytest.fixture
def page(live_server, chromium):
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(locale="zh-CN")
        yield context.new_page()
        browser.close()


def topic_names(message) -> list[str]:
    html = message.get_body(("html",)).get_content()
    return [h.text_content() for h in lxml.html.fromstring(html).find_class("section-title")]


def link_in(message, text: str) -> str:
    html = message.get_body(("html",)).get_content()
    return next(a.get("href") for a in lxml.html.fromstring(html).iter("a") if a.text == text)


def publish(app, title: str, topics) -> int:
    issue = create_issue(title)
    issue.subject = title  # staff's own subject, instead of the pattern's
    for topic in topics:
        add_article(issue, topic, f"{title}·{topic.name}", f"{topic.name}的正文。", lead="导语。")
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["publish", str(issue.id)])
    assert result.exit_code == 0, result.output

    def sent() -> bool:
        db.session.expire_all()
        return db.session.get(Issue, issue.id).status == IssueStatus.SENT

    wait_for(sent, what=f"{title} to be sent")
    return issue.id


def test_subscribe_confirm_change_sections_and_leave_in_a_real_browser(
    app, db_session, celery_worker, inbox, live_server, page: Page
):
    news, hot, world = ensure_topics(["质量要闻", "质量热点", "国际动态"])
    db.session.commit()

    # The form, with every section ticked; the reader keeps two.
    page.goto(f"{live_server}/subscribe")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.get_by_label("电子邮箱").fill(READER)
    page.get_by_label("称呼（选填）").fill("王芳")
    page.get_by_label("质量热点").uncheck()
    page.get_by_role("button", name="订阅").click()
    expect(page.get_by_role("heading", name="请查收邮件")).to_be_visible()

    # The confirmation email; its link shows a button, and the button confirms.
    [confirmation] = wait_for(lambda: inbox.to(READER), what="the confirmation email")
    assert confirmation["Subject"] == "请确认订阅《工作简报》"
    text = confirmation.get_body(("plain",)).get_content()
    confirm_url = re.search(r"(http://\S+/confirm/\S+)", text).group(1)
    page.goto(confirm_url)
    page.get_by_role("button", name="确认订阅").click()
    expect(page.get_by_role("heading", name="订阅成功")).to_be_visible()
    reader = db.session.scalar(select(Subscriber).where(Subscriber.email == READER))
    assert reader.status == SubscriberStatus.ACTIVE
    assert {t.name for t in reader.topics} == {"质量要闻", "国际动态"}

    publish(app, "第一期", [news, hot, world])
    [first] = [m for m in inbox.to(READER) if m["Subject"] == "第一期"]
    assert topic_names(first) == ["质量要闻", "国际动态"]

    # From the digest's footer to the preferences page: add the third section.
    page.goto(link_in(first, "修改订阅栏目"))
    page.get_by_label("质量热点").check()
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_text("已保存您的订阅设置。")).to_be_visible()

    publish(app, "第二期", [news, hot, world])
    [second] = [m for m in inbox.to(READER) if m["Subject"] == "第二期"]
    assert topic_names(second) == ["质量要闻", "质量热点", "国际动态"]

    # What a mail provider's unsubscribe button does (RFC 8058): a cookie-less POST.
    url = second["List-Unsubscribe"].split(",")[0].strip(" <>")
    assert urlsplit(url).netloc == urlsplit(live_server).netloc
    answer = page.context.request.post(url, form={"List-Unsubscribe": "One-Click"})
    assert answer.status == 200 and answer.url == url  # no redirect

    publish(app, "第三期", [news, hot, world])
    subjects = [m["Subject"] for m in inbox.to(READER)]
    assert subjects == ["请确认订阅《工作简报》", "第一期", "第二期"]
