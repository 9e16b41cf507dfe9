"""Rendering at send time: once per section set, whatever the number of readers."""

from __future__ import annotations

import threading

from premailer import Premailer
from sqlalchemy import func, select

from tests.helpers import wait_for
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import Issue, IssueStatus, RenderedDigest, Subscriber, SubscriberStatus


class Counter:
    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1


def test_a_thousand_readers_over_three_section_sets_cost_three_premailer_runs(
    app, db_session, celery_worker, inbox, monkeypatch
):
    runs = Counter()
    transform = Premailer.transform

    def counted(self, *args, **kwargs):  # calls the real premailer; only counts
        runs.add()
        return transform(self, *args, **kwargs)

    monkeypatch.setattr(Premailer, "transform", counted)
    news, hot, world = ensure_topics(["质量要闻", "质量热点", "国际动态"])
    choices = [[news], [news, hot], [world]]
    db.session.add_all(
        Subscriber(
            email=f"reader{n:04d}@example.com",
            name=f"读者{n}",
            status=SubscriberStatus.ACTIVE,
            topics=choices[n % 3],
        )
        for n in range(1000)
    )
    issue = create_issue("第九期")
    for topic in (news, hot, world):
        add_article(issue, topic, f"{topic.name}文章", f"{topic.name}的正文。", lead="导语。")
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["publish", str(issue.id)])
    assert "sending to 1000 readers" in result.output

    def sent() -> bool:
        db.session.expire_all()
        return db.session.get(Issue, issue.id).status == IssueStatus.SENT

    wait_for(sent, timeout=120, what="1,000 messages to be sent")
    assert len(inbox.messages) == 1000
    assert runs.value == 3
    stored = db.session.scalar(select(func.count()).select_from(RenderedDigest))
    assert stored == 3
