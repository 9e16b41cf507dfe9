"""The readership report in real Chromium: an editor opens an issue's figures, sees the
sections' click rates, the articles' clicks and the scanner note, and downloads the CSV.

With SCREENSHOTS_DIR set (`make screenshots`), the report is saved as a PNG for the README.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.helpers import STAFF_PASSWORD
from tests.sample_content import SAMPLE_DOCUMENT
from tests.test_browser_newsroom import SECTIONS, screenshot
from webapp import readership
from webapp.extensions import db
from webapp.issues import create_issue, ensure_topics, import_document
from webapp.models import (
    Issue,
    IssueStatus,
    ReadCount,
    StaffRole,
    Subscriber,
    SubscriberStatus,
    TopicRecipients,
    utcnow,
)
from webapp.publishing import publish_issue
from webapp.staff import create_staff
from webapp.subscriptions import unsubscribe

EDITOR = "bianji@example.org"


@pytest.fixture
def page(live_server, chromium):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(
            locale="zh-CN", viewport={"width": 1200, "height": 1100}, accept_downloads=True
        )
        yield context.new_page()
        browser.close()


def earlier_issues(topics, count: int = 7) -> None:
    """Issues already sent, with their figures, for the dashboard's 12-issue chart."""
    now = utcnow()
    for n in range(count):
        issue = create_issue(f"2022年第{n + 1}期", number=n + 1)
        issue.status = IssueStatus.SENT
        issue.published_at = now - timedelta(days=30 * (count - n))
        db.session.flush()
        for i, topic in enumerate(topics):
            article = import_placeholder(issue, topic)
            db.session.add(TopicRecipients(issue_id=issue.id, topic_id=topic.id, recipients=400))
            db.session.add(
                ReadCount(
                    issue_id=issue.id,
                    article_id=article,
                    kind="web",
                    hour=issue.published_at.replace(minute=0, second=0, microsecond=0),
                    counted=8 + (n * (i + 2) * 3) % 37,
                    filtered=n % 3,
                )
            )


def import_placeholder(issue: Issue, topic) -> int:
    from webapp.issues import add_article

    return add_article(issue, topic, f"{topic.name}文章", "正文").id


def test_an_editor_reads_an_issues_report_in_a_real_browser(
    app, db_session, live_server, page: Page
):
    topics = ensure_topics(SECTIONS)
    earlier_issues(topics)
    readers = [
        Subscriber(
            email=f"duzhe{n:03d}@example.com",
            status=SubscriberStatus.ACTIVE,
            topics=[t for i, t in enumerate(topics) if (n >> i) & 1 or i == n % 4],
        )
        for n in range(400)
    ]
    db.session.add_all(readers)
    create_staff(EDITOR, STAFF_PASSWORD, StaffRole.EDITOR)
    issue, _ = import_document(SAMPLE_DOCUMENT.read_bytes())
    issue.number = 8
    db.session.commit()
    publish_issue(issue.id)
    db.session.commit()
    # Readers' clicks as the redirect counts them, a few scanners, then the sweeper's flush.
    for n, article in enumerate(issue.articles):
        for _ in range(12 + (n * 17) % 40):
            readership.count(issue.id, article.id, readership.LinkKind.WEB, filtered=False)
        for _ in range(3 + (n * 5) % 9):
            readership.count(issue.id, article.id, readership.LinkKind.SOURCE, filtered=False)
        for _ in range(20 + n * 3):
            readership.count(issue.id, article.id, readership.LinkKind.PAGE, filtered=False)
        readership.count(issue.id, article.id, readership.LinkKind.SOURCE, filtered=True)
    for _ in range(30):
        readership.count(issue.id, readership.ISSUE_PAGE, readership.LinkKind.PAGE, filtered=False)
    readership.flush()
    unsubscribe(readers[3].id, topics[1].id)
    unsubscribe(readers[5].id)
    db.session.commit()

    page.goto(f"{live_server}/admin/login")
    page.get_by_label("邮箱").fill(EDITOR)
    page.get_by_label("密码").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("#readership-chart")).to_be_visible()
    page.get_by_role("link", name="阅读情况").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("阅读情况")
    expect(page.locator("#scanner-note")).to_contain_text("次判为链接扫描未计入")
    rows = page.locator("#readership-sections tr[data-section]")
    expect(rows).to_have_count(4)
    expect(page.locator("#readership-articles tr[data-article]")).to_have_count(7)
    screenshot(page, "readership")

    with page.expect_download() as download:
        page.locator("#readership-csv").click()
    assert download.value.suggested_filename == f"issue-{issue.id}-readership.csv"
    text = open(download.value.path(), encoding="utf-8-sig").read()
    assert text.startswith('"row","section","article","recipients","clicks"')
