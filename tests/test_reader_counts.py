"""The counts staff see (dashboard, readers list, sections) come from counters the database
keeps in the same transaction as every change to a reader's status or sections, and every
event: after each path that changes readers, they equal a fresh count of the tables."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select, text, update

from tests.helpers import add_topics
from webapp import counters, delivery, directory, publishing, subscriptions
from webapp.extensions import db
from webapp.issues import add_article, create_issue
from webapp.models import (
    Delivery,
    DeliveryStatus,
    EventDayCountChange,
    EventKind,
    EventSource,
    ReaderCountChange,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    SuppressionReason,
    subscriber_topics,
)
from webapp.subscriber_csv import import_subscribers

NAMES = ["质量要闻", "国际动态", "质量热点"]


def fresh_counts() -> dict[tuple[str, int], int]:
    counts = {
        (str(status), 0): n
        for status, n in db.session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        )
    }
    by_topic = (
        select(Subscriber.status, subscriber_topics.c.topic_id, func.count())
        .join(subscriber_topics, subscriber_topics.c.subscriber_id == Subscriber.id)
        .group_by(Subscriber.status, subscriber_topics.c.topic_id)
    )
    counts.update({(str(s), t): n for s, t, n in db.session.execute(by_topic)})
    return counts


def kept_counts() -> dict[tuple[str, int], int]:
    return {key: n for key, n in counters.readers().items() if n}


def fresh_event_days() -> dict[tuple[date, str, str], int]:
    counts: dict[tuple[date, str, str], int] = {}
    for event in db.session.scalars(select(SubscriberEvent)):
        key = (event.created_at.astimezone(UTC).date(), str(event.kind), event.source)
        counts[key] = counts.get(key, 0) + 1
    return counts


def kept_event_days() -> dict[tuple[date, str, str], int]:
    days = counters.events_per_day(date(2000, 1, 1), date(2100, 1, 1))
    return {key: n for key, n in days.items() if n}


def reader(email: str, status: SubscriberStatus, topics) -> Subscriber:
    subscriber = Subscriber(email=email, status=status, topics=list(topics))
    db.session.add(subscriber)
    db.session.flush()
    return subscriber


def _csv(*lines: str) -> bytes:
    return ("email,name,sections\n" + "\n".join(lines) + "\n").encode()


# Each path gets the readers {"active", "pending", "left"} and the sections, and changes them.
PATHS = {
    "subscribe": lambda r, t: subscriptions.subscribe("new@example.com", "新", [t[0].id, t[1].id]),
    "subscribe again after leaving": lambda r, t: subscriptions.subscribe(
        r["left"].email, "", [t[2].id]
    ),
    "confirm": lambda r, t: subscriptions.confirm(r["pending"].id),
    "unsubscribe": lambda r, t: subscriptions.unsubscribe(r["active"].id),
    "unsubscribe from one section": lambda r, t: subscriptions.unsubscribe(r["active"].id, t[0].id),
    "change sections": lambda r, t: subscriptions.change_topics(r["active"].id, [t[2].id]),
    "preferences": lambda r, t: subscriptions.update_preferences(
        r["active"].id, [t[1].id, t[2].id], "名", "en"
    ),
    "bulk unsubscribe": lambda r, t: subscriptions.unsubscribe_many(
        [r["active"].id, r["pending"].id], source=EventSource.STAFF_BULK
    ),
    "bulk remove section": lambda r, t: subscriptions.remove_topic_many(
        [r["active"].id, r["pending"].id], t[0].id, source=EventSource.STAFF_BULK
    ),
    "bulk add section": lambda r, t: subscriptions.add_topic_many(
        [r["active"].id, r["pending"].id, r["left"].id], t[2].id, source=EventSource.STAFF_BULK
    ),
    "csv import": lambda r, t: import_subscribers(
        _csv(
            "csv1@example.com,一,质量要闻",
            f"{r['pending'].email},,国际动态",
            f"{r['active'].email},,质量热点",
            "csv2@example.com,二,",
        ),
        consented=True,
        source="csv import by staff",
    ),
    "erase": lambda r, t: subscriptions.erase(r["active"].id),
    "suppress": lambda r, t: subscriptions.suppress(
        r["active"].email, SuppressionReason.STAFF, source=EventSource.STAFF
    ),
    "hard bounce": lambda r, t: subscriptions.suppress(
        r["pending"].email, SuppressionReason.HARD_BOUNCE, source=EventSource.BOUNCE
    ),
    "complaint": lambda r, t: subscriptions.suppress(
        r["active"].email, SuppressionReason.COMPLAINT, source=EventSource.BOUNCE
    ),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_every_change_keeps_the_counts_equal_to_a_fresh_count(db_session, path):
    sections = add_topics(NAMES)
    readers = {
        "active": reader("active@example.com", SubscriberStatus.ACTIVE, sections[:2]),
        "pending": reader("pending@example.com", SubscriberStatus.PENDING, sections[:1]),
        "left": reader("left@example.com", SubscriberStatus.UNSUBSCRIBED, sections[1:]),
    }
    db.session.commit()
    assert kept_counts() == fresh_counts()

    PATHS[path](readers, sections)
    db.session.commit()
    assert kept_counts() == fresh_counts()
    assert kept_event_days() == fresh_event_days() != {}

    counters.fold()
    db.session.commit()
    assert kept_counts() == fresh_counts()
    assert kept_event_days() == fresh_event_days()
    assert db.session.scalar(select(func.count()).select_from(ReaderCountChange)) == 0
    assert db.session.scalar(select(func.count()).select_from(EventDayCountChange)) == 0


def test_events_count_on_their_utc_day_whatever_the_sessions_time_zone(db_session):
    """The dashboard's days are UTC days: an event at 23:30 UTC counts on that day even when
    the connection that wrote it works in Beijing time (already the next day there)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET TIME ZONE 'Asia/Shanghai'"))
    late = datetime(2024, 3, 9, 23, 30, tzinfo=UTC)
    db.session.add(SubscriberEvent(kind=EventKind.SUBSCRIBED, source="web", created_at=late))
    db.session.flush()
    assert counters.events_per_day(date(2024, 3, 9), date(2024, 3, 10)) == {
        (date(2024, 3, 9), "subscribed", "web"): 1
    }
    db.session.rollback()


def test_the_pages_counts_read_the_counters(db_session):
    sections = add_topics(NAMES)
    reader("a@example.com", SubscriberStatus.ACTIVE, sections[:2])
    reader("b@example.com", SubscriberStatus.PENDING, sections[:1])
    db.session.commit()
    by_status = directory.counts_by_status()
    assert by_status[SubscriberStatus.ACTIVE] == 1
    assert by_status[SubscriberStatus.PENDING] == 1
    assert by_status[SubscriberStatus.BOUNCED] == 0
    first = directory.counts_by_topic()[0]
    assert (first.name, first.readers, first.pending) == ("质量要闻", 1, 1)


def fresh_deliveries(issue_id: int) -> dict[str, int]:
    query = (
        select(Delivery.status, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.status)
    )
    counts = {str(status): n for status, n in db.session.execute(query)}
    return {status.value: counts.get(status.value, 0) for status in DeliveryStatus}


def _fail_some(issue_id: int) -> None:
    first = db.session.scalar(select(func.min(Delivery.id)).where(Delivery.issue_id == issue_id))
    db.session.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.id < first + 2)
        .values(status=DeliveryStatus.FAILED)
    )


DELIVERY_PATHS = {
    "publish": lambda issue_id, readers: None,
    "claim a batch": lambda issue_id, readers: delivery.claim(
        issue_id,
        list(db.session.scalars(select(Delivery.id).where(Delivery.issue_id == issue_id))),
    ),
    "cancel": lambda issue_id, readers: publishing.cancel_issue(issue_id),
    "resend the failed": lambda issue_id, readers: (
        _fail_some(issue_id),
        publishing.resend(issue_id, DeliveryStatus.FAILED),
    ),
    "erase a reader": lambda issue_id, readers: subscriptions.erase(readers[0].id),
}


@pytest.mark.parametrize("path", list(DELIVERY_PATHS))
def test_the_sending_progress_equals_a_fresh_count(db_session, path):
    sections = add_topics(NAMES)
    readers = [reader(f"r{n}@example.com", SubscriberStatus.ACTIVE, sections[:1]) for n in range(5)]
    issue = create_issue("第一期")
    add_article(issue, sections[0], "文章", "正文。", lead="导语。")
    db.session.commit()
    publishing.publish_issue(issue.id)
    db.session.commit()
    assert publishing.progress(issue.id)["pending"] == 5

    DELIVERY_PATHS[path](issue.id, readers)
    db.session.commit()
    assert publishing.progress(issue.id) == fresh_deliveries(issue.id)
    assert publishing.progress_many([issue.id]) == {issue.id: fresh_deliveries(issue.id)}

    counters.fold()
    db.session.commit()
    assert publishing.progress(issue.id) == fresh_deliveries(issue.id)
