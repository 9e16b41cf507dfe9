"""Helpers the tests share: a real SMTP server to point the app at, polling with a deadline,
CSRF tokens, signing in through the real login form, and the sections most tests need.

Tests import these from `tests.helpers`; fixtures live in `conftest.py`, which pytest loads
by itself (importing from a conftest would load it twice under two names).
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
STAFF_PASSWORD = "correct horse battery staple"
# The bulletin's sections, in its order; most tests offer these to readers.
SECTIONS = ["质量要闻", "质量热点", "权威观点", "国际动态"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """What the SMTP server received; `handle_DATA` runs on aiosmtpd's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[list[str], EmailMessage, bytes]] = []
        # Lets a test make the server refuse: recipient -> (code, text)
        self.replies: dict[str, tuple[int, str]] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.replies.get(address.lower())
        if reply:
            return f"{reply[0]} {reply[1]}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self._messages.append((list(envelope.rcpt_tos), message, envelope.content))
        return "250 2.0.0 Ok: queued as test"

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [message for _, message, _ in self._messages]

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for rcpts, m, _ in self._messages if address in rcpts]

    def raw_to(self, address: str) -> list[bytes]:
        """The bytes as they crossed the wire, for checks that parsing would hide."""
        with self._lock:
            return [raw for rcpts, _, raw in self._messages if address in rcpts]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
        self.replies.clear()


@contextmanager
def serving_smtp(handler, **options) -> Iterator[int]:
    """aiosmtpd with this handler on a free loopback port, for the block; yields the port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "") -> object:
    """Poll until `condition()` is truthy; fail with `what` if it never is.

    A deadline, not a measurement: tests assert what happened, never how fast.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what or condition}")
        time.sleep(0.05)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "the form carries no CSRF token"
    return match.group(1)


STAFF_PASSWORD = "correct horse battery staple"


def log_in(app, email: str, role) -> object:
    """A test client signed in through the real login form as a new staff member."""
    from webapp.extensions import db
    from webapp.staff import create_staff

    with app.app_context():
        create_staff(email, STAFF_PASSWORD, role)
        db.session.commit()
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    answer = client.post(
        "/admin/login",
        data={"csrf_token": csrf_token(page), "email": email, "password": STAFF_PASSWORD},
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return client


def add_topics(names: list[str], *, retired: tuple[str, ...] = ()) -> list:
    """The topics with these names, in order, committed; those in `retired` archived."""
    from webapp.extensions import db
    from webapp.issues import ensure_topics

    topics = ensure_topics(names)
    for topic in topics:
        if topic.name in retired:
            topic.active = False
    db.session.commit()
    return topics


def add_drill_issue(readers: int) -> list[str]:
    """The fault drills' data (tests/test_delivery_faults.py, bench/faults.py): `readers`
    active readers of one section, inserted in bulk, and a draft issue of one article for
    them. Returns their addresses."""
    from sqlalchemy import insert, select

    from webapp.extensions import db
    from webapp.issues import add_article, create_issue, ensure_topics
    from webapp.models import Subscriber, SubscriberStatus, subscriber_topics

    [topic] = ensure_topics(["质量要闻"])
    addresses = [f"r{n:06d}@example.com" for n in range(readers)]
    db.session.execute(
        insert(Subscriber),
        [{"email": a, "name": "", "status": SubscriberStatus.ACTIVE} for a in addresses],
    )
    ids = db.session.scalars(select(Subscriber.id)).all()
    db.session.execute(
        insert(subscriber_topics), [{"subscriber_id": i, "topic_id": topic.id} for i in ids]
    )
    issue = create_issue("故障演练")
    add_article(issue, topic, "文章", "正文。", lead="导语。")
    db.session.commit()
    return addresses
