"""The queries the engine repeats for every batch stay cheap whatever the list's size: their
plans, read from the database under test."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from tests.query_plans import query_plan
from webapp import publishing
from webapp.delivery import claim_statement, due_rows_query
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import Delivery, Subscriber, SubscriberStatus, utcnow


def add_readers(count: int) -> None:
    db.session.execute(
        Subscriber.__table__.insert(),
        [
            {"email": f"r{n}@example.com", "name": "", "status": "active", "locale": "zh"}
            for n in range(count)
        ],
    )


def analyze() -> None:
    """What autovacuum does from time to time: statistics from the rows as they are now."""
    with db.engine.begin() as conn:
        conn.execute(
            text("ANALYZE deliveries" if db.engine.dialect.name == "postgresql" else "ANALYZE")
        )


def test_queueing_reads_pages_in_id_order_from_an_index_before_and_after_analyze(app, db_session):
    [topic] = ensure_topics(["质量要闻"])
    add_readers(20000)
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
    analyze()
    plans["analyzed"] = query_plan(page)

    for when, plan in plans.items():
        assert "Index" in plan and "Sort" not in plan and "Seq Scan" not in plan, (when, plan)


def test_a_batch_is_claimed_by_its_ids_right_after_planning(app, db_session):
    small, big = ensure_topics(["国际动态", "质量要闻"])
    add_readers(20200)
    db.session.execute(
        text("INSERT INTO subscriber_topics SELECT id, CASE WHEN id <= 200 THEN :s ELSE :b END"
             " FROM subscribers"),
        {"s": small.id, "b": big.id},
    )  # fmt: skip
    earlier, issue = create_issue("第十一期"), create_issue("第十二期")
    add_article(earlier, small, "旧文章", "正文。", lead="导语。")
    add_article(issue, big, "文章", "正文。", lead="导语。")
    db.session.commit()
    publishing.publish_issue(earlier.id)  # 200 rows, and statistics that know only them
    db.session.commit()
    analyze()
    publishing.publish_issue(issue.id)  # 20,000 rows of an issue the statistics never saw
    db.session.commit()
    batch = list(
        db.session.scalars(
            select(Delivery.id)
            .where(Delivery.issue_id == issue.id)
            .order_by(Delivery.id)
            .limit(500)
        )
    )
    now = utcnow()

    plan = query_plan(claim_statement(issue.id, batch, now, now + timedelta(minutes=10)))

    # By primary key, 500 lookups; not every pending row of the issue read and filtered.
    if db.engine.dialect.name == "postgresql":
        assert "pk_deliveries" in plan and "ix_deliveries_issue_status" not in plan, plan
    else:
        assert "INTEGER PRIMARY KEY" in plan or "rowid" in plan.lower(), plan
