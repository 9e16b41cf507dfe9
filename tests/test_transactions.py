"""One place commits: work waits for the commit, and a lookup never writes."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from webapp.digests import digest_for, prepare_digests
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import RenderedDigest, Subscriber, SubscriberStatus
from webapp.publishing import publish_issue
from webapp.transactions import after_commit, transaction


def test_work_queued_for_after_the_commit_runs_only_if_it_commits(app, db_session):
    ran: list[str] = []
    with pytest.raises(RuntimeError), transaction():
        db.session.add(Subscriber(email="gone@example.com", status=SubscriberStatus.ACTIVE))
        after_commit(lambda: ran.append("rolled back"))
        raise RuntimeError("refused")
    with transaction():
        db.session.add(Subscriber(email="kept@example.com", status=SubscriberStatus.ACTIVE))
        after_commit(lambda: ran.append("committed"))
    assert ran == ["committed"]
    assert db.session.scalars(select(Subscriber.email)).all() == ["kept@example.com"]


def test_a_digest_lookup_writes_nothing_and_preparing_stores_each_set_once(app, db_session):
    [topic] = ensure_topics(["质量要闻"])
    db.session.add(
        Subscriber(email="r@example.com", status=SubscriberStatus.ACTIVE, topics=[topic])
    )
    issue = create_issue("第一期")
    add_article(issue, topic, "文章", "正文。", lead="导语。")
    db.session.flush()
    publish_issue(issue.id)
    db.session.commit()

    def stored() -> int:
        return db.session.scalar(select(func.count()).select_from(RenderedDigest))

    digest = digest_for(issue.id, frozenset({topic.id}), "zh")
    assert "文章" in digest.template.html
    db.session.rollback()
    assert stored() == 0
    with transaction():
        assert prepare_digests(issue.id) == 1
    with transaction():
        prepare_digests(issue.id)  # already stored: nothing added, nothing refused
    assert stored() == 1
