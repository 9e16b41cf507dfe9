"""The queries the engine repeats for every batch stay cheap whatever the list's size: their
plans, read from the database under test."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from tests.query_plans import query_plan
from webapp import publishing
from webapp.delivery import due_rows_query
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import Delivery, Subscriber, SubscriberStatus, utcnow


def test_queueing_reads_pages_in_id_order_from_an_index_before_and_after_analyze(app, db_session):
    [topic] = ensure_topics(["质量要闻"])
    db.session.execute(
        Subscriber.__table__.insert(),
        [
            {"email": f"r{n}@example.com", "name": "", "status": "active", "locale": "zh"}
            for n in range(20000)
        ],
    )
    db.session.execute(
        text("INSERT INTO subscriber_topics SELECT id, :t FROM subscribers"), {"t": topic.id}
    )
    issue = create_issue("第十一期")
    add_article(issue, topic, "文章", "正文。", lead="导语。")
    db.session.commit()
    assert db.session.get(Subscriber, 1).status == SubscriberStatus.ACTIVE
    publishing.publish_issue(issue.id)  # plans 20,000 rows the statistics know nothing of
    db.session.commit()
    middle = db.session.scalar(select(Delivery.id).order_by(Delivery.id).offset(10000).limit(1))
    now = utcnow()
    page = due_rows_query(issue.id, middle, now, now - timedelta(minutes=15), 500)

    plans = {"fresh": query_plan(page)}
    with db.engine.begin() as conn:
        conn.execute(
            text("ANALYZE deliveries" if db.engine.dialect.name == "postgresql" else "ANALYZE")
        )
    plans["analyzed"] = query_plan(page)

    for when, plan in plans.items():
        assert "Index" in plan and "Sort" not in plan and "Seq Scan" not in plan, (when, plan)
