"""The whole product in one path: topics, a reader, an issue, a worker, an SMTP server.

Real Redis, a real Celery worker, the real database (SQLite or PostgreSQL) and aiosmtpd on
loopback: nothing here is mocked.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import lxml.html
from sqlalchemy import select

from tests.helpers import wait_for
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import Delivery, DeliveryStatus, Issue, IssueStatus, Subscriber
from webapp.models import SubscriberStatus as Status

READER = "li.lei@example.com"


def make_issue(title: str, topics) -> int:
    issue = create_issue(title, period="2022年第8期")
    issue.subject = title  # staff's own subject, instead of the pattern's
    for topic in topics:
        add_article(
            issue,
            topic,
            f"{topic.name}的文章",
            f"这是{topic.name}栏目的正文。\n\n第二段，说明更多情况。",
            lead=f"{topic.name}栏目的导语。",
            source_name="示例来源",
            source_url="https://example.org/source",
        )
    db.session.commit()
    return issue.id


def issue_status(issue_id: int) -> IssueStatus:
    db.session.expire_all()
    return db.session.scalar(select(Issue.status).where(Issue.id == issue_id))


def test_a_reader_gets_only_their_sections_then_unsubscribes_and_gets_nothing(
    app, db_session, celery_worker, inbox
):
    news, hot, world = ensure_topics(["质量要闻", "质量热点", "国际动态"])
    reader = Subscriber(email=READER, name="李雷", status=Status.ACTIVE, topics=[news, world])
    db.session.add(reader)
    first = make_issue("第一期", [news, hot, world])

    result = app.test_cli_runner().invoke(args=["publish", str(first)])
    assert result.exit_code == 0, result.output
    assert "sending to 1 readers" in result.output
    wait_for(lambda: issue_status(first) == IssueStatus.SENT, what="the first issue to be sent")

    [message] = inbox.to(READER)
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.get_payload()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    html, text = html_part.get_content(), text_part.get_content()
    # premailer ran: the styles are on the elements, not only in the <style> block.
    headings = lxml.html.fromstring(html.encode()).find_class("section-title")
    assert [h.text_content() for h in headings] == ["质量要闻", "国际动态"]
    assert all("font-size" in h.get("style", "") for h in headings)
    for body in (html, text):
        assert "质量要闻" in body and "国际动态" in body
        assert "质量热点" not in body
    assert message["Subject"] == "第一期"
    assert "李雷" in message["To"]
    unsubscribe_url, mailto = (part.strip(" <>") for part in message["List-Unsubscribe"].split(","))
    assert mailto.startswith("mailto:unsubscribe@example.org?subject=unsubscribe")
    # As sent, not as parsed: a provider shows its unsubscribe button only for a plain URL.
    [raw] = inbox.raw_to(READER)
    assert f"List-Unsubscribe: <{unsubscribe_url}>,".encode() in raw
    assert unsubscribe_url.startswith("https://bulletin.example.org/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    delivery = db.session.scalar(select(Delivery).where(Delivery.issue_id == first))
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.smtp_reply.startswith("250")
    assert delivery.message_id == message["Message-ID"]

    # What a mail provider does for the "unsubscribe" button (RFC 8058): POST, no cookies.
    url = urlsplit(unsubscribe_url)
    answer = app.test_client(use_cookies=False).post(
        url.path,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 200
    db.session.expire_all()
    assert db.session.get(Subscriber, reader.id).status == Status.UNSUBSCRIBED

    second = make_issue("第二期", [news, hot, world])
    result = app.test_cli_runner().invoke(args=["publish", str(second)])
    assert result.exit_code == 0, result.output
    assert "sending to 0 readers" in result.output
    wait_for(lambda: issue_status(second) == IssueStatus.SENT, what="the second issue to finish")
    assert len(inbox.to(READER)) == 1
