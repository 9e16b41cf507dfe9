"""The embeddable sign-up form: a page on another site frames it (or carries it as plain
HTML), a reader subscribes there and confirms from the email; the double opt-in, the
honeypot and the consent record hold, and only this page may be framed."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select

from tests.helpers import wait_for
from webapp.extensions import db
from webapp.issues import ensure_topics
from webapp.models import Subscriber, SubscriberStatus

READER = "zhao.min@example.com"


@contextmanager
def institute_site(html: str):
    """The institute's own site: another origin (localhost, another port) serving a page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_reader_subscribes_through_a_form_framed_by_another_site(
    app, db_session, celery_worker, inbox, live_server, chromium
):
    ensure_topics(["质量要闻", "国际动态"])
    db.session.commit()
    page_html = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>研究院</title></head><body>"
        "<h1>研究院新闻</h1>"
        f"<iframe src='{live_server}/embed/subscribe' title='订阅' "
        "style='width:100%;height:40rem;border:0'></iframe></body></html>"
    )
    with institute_site(page_html) as site, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(locale="zh-CN").new_page()
        page.goto(f"{site}/news.html")
        frame = page.frame_locator("iframe")
        frame.get_by_label("电子邮箱").fill(READER)
        frame.get_by_label("国际动态").uncheck()
        frame.get_by_role("button", name="订阅").click()
        expect(frame.get_by_role("heading", name="请查收邮件")).to_be_visible()

        # Pending until the reader confirms from the email: the double opt-in holds.
        reader = db.session.scalar(select(Subscriber).where(Subscriber.email == READER))
        assert reader.status == SubscriberStatus.PENDING
        assert reader.consent_source == f"embed-form v1 on {site}/"

        [confirmation] = wait_for(lambda: inbox.to(READER), what="the confirmation email")
        text = confirmation.get_body(("plain",)).get_content()
        page.goto(re.search(r"(http://\S+/confirm/\S+)", text).group(1))
        page.get_by_role("button", name="确认订阅").click()
        expect(page.get_by_role("heading", name="订阅成功")).to_be_visible()
        browser.close()
    db.session.expire_all()
    reader = db.session.scalar(select(Subscriber).where(Subscriber.email == READER))
    assert reader.status == SubscriberStatus.ACTIVE
    assert [t.name for t in reader.topics] == ["质量要闻"]


def test_only_the_embeddable_form_may_be_framed(app):
    client = app.test_client()
    embed = client.get("/embed/subscribe")
    assert "frame-ancestors *" in embed.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in embed.headers
    assert "<script" not in embed.get_data(as_text=True)
    for url in ("/subscribe", "/admin/login", "/api/v1/"):
        answer = client.get(url)
        assert answer.headers["X-Frame-Options"] == "DENY", url
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"], url


def test_a_plain_html_form_on_another_site_posts_without_a_token(
    app, db_session, celery_worker, inbox
):
    [topic] = ensure_topics(["质量要闻"])
    db.session.commit()
    client = app.test_client()
    origin = {"Origin": "https://www.example.edu", "Referer": "https://www.example.edu/join"}
    answer = client.post(
        "/embed/subscribe",
        data={"email": READER, "topics": [topic.id], "website": ""},
        headers=origin,
    )
    # Redirect after POST, to a thanks page other sites may frame like the form.
    assert answer.status_code == 303 and answer.location == "/embed/subscribe/done"
    thanks = client.get(answer.location)
    assert thanks.status_code == 200 and "请查收邮件" in thanks.get_data(as_text=True)
    assert "X-Frame-Options" not in thanks.headers
    reader = db.session.scalar(select(Subscriber).where(Subscriber.email == READER))
    assert reader.status == SubscriberStatus.PENDING
    assert reader.consent_source == "embed-form v1 on https://www.example.edu"
    wait_for(lambda: inbox.to(READER), what="the confirmation email")

    # A bot that fills in the honeypot is told the same, and nothing is stored.
    bot = client.post(
        "/embed/subscribe",
        data={"email": "bot@example.com", "topics": [topic.id], "website": "http://spam"},
        headers=origin,
        follow_redirects=True,
    )
    assert "请查收邮件" in bot.get_data(as_text=True)
    assert (
        db.session.scalar(select(Subscriber).where(Subscriber.email == "bot@example.com")) is None
    )


def test_the_embedded_form_is_rate_limited_like_the_sign_up_page(app, db_session):
    [topic] = ensure_topics(["质量要闻"])
    db.session.commit()
    client = app.test_client()
    answers = [
        client.post("/embed/subscribe", data={"email": f"r{n}@example.com", "topics": [topic.id]})
        for n in range(7)
    ]
    assert 429 in [answer.status_code for answer in answers]


@pytest.mark.parametrize("role_client", ["staff_client"])
def test_staff_copy_the_snippets_from_the_staff_site(app, request, role_client):
    ensure_topics_committed(app)
    page = request.getfixturevalue(role_client).get("/admin/api").get_data(as_text=True)
    assert "&lt;iframe src=&#34;https://bulletin.example.org/embed/subscribe&#34;" in page or (
        "&lt;iframe src=&quot;https://bulletin.example.org/embed/subscribe&quot;" in page
    )
    assert "name=&#34;website&#34;" in page or "name=&quot;website&quot;" in page


def ensure_topics_committed(app) -> None:
    with app.app_context():
        ensure_topics(["质量要闻"])
        db.session.commit()
