"""The staff's view of the readers: a searchable, filterable list, and counts.

The list pages by keyset (ids below the last one shown), never by OFFSET, so page 2,000 is
as quick as page 1 and a reader who signs up meanwhile does not shift every later page.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import selectinload

from .extensions import db
from .models import Subscriber, SubscriberStatus, Topic, subscriber_topics

MAX_LIMIT = 500


@dataclass(frozen=True)
class Page:
    rows: list[Subscriber]  # newest first, with their topics loaded
    next_after_id: int | None  # pass as `after_id` for the next page; None on the last page


@dataclass(frozen=True)
class TopicCount:
    topic_id: int
    name: str
    active: bool  # whether the section is still offered
    readers: int  # active readers who chose it: who would get it in the next issue
    pending: int  # readers who chose it and have yet to confirm
    name_en: str | None = None  # its English name (i18n.topic_name)


def list_subscribers(
    *,
    search: str = "",
    status: SubscriberStatus | None = None,
    topic_id: int | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> Page:
    """One page of readers, newest first: those whose address contains `search`, with
    `status`, who chose `topic_id`, and whose id is below `after_id` (the previous page's
    `next_after_id`)."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = subscribers_query(
        search=search, status=status, topic_id=topic_id, after_id=after_id, limit=limit + 1
    )
    rows = list(db.session.scalars(query.options(selectinload(Subscriber.topics))))
    # One row more than shown was asked for: it tells whether there is a next page.
    if len(rows) > limit:
        return Page(rows[:limit], rows[limit - 1].id)
    return Page(rows, None)


def subscribers_query(
    *,
    search: str = "",
    status: SubscriberStatus | None = None,
    topic_id: int | None = None,
    after_id: int | None = None,
    limit: int,
) -> Select:
    """The SELECT behind `list_subscribers`: ordered by id, so the primary key (or the
    (status, id) and (topic_id, subscriber_id) indexes) serves it without sorting."""
    query = select(Subscriber).order_by(Subscriber.id.desc()).limit(limit)
    if search.strip():
        # Addresses are stored lower-cased. A substring match cannot use a B-tree index; at
        # 100,000 readers the scan takes about 10 ms on PostgreSQL.
        query = query.where(Subscriber.email.contains(search.strip().lower(), autoescape=True))
    if status is not None:
        query = query.where(Subscriber.status == status)
    if topic_id is not None:
        query = query.join(
            subscriber_topics,
            (subscriber_topics.c.subscriber_id == Subscriber.id)
            & (subscriber_topics.c.topic_id == topic_id),
        )
    if after_id is not None:
        query = query.where(Subscriber.id < after_id)
    return query


def counts_by_status() -> dict[SubscriberStatus, int]:
    """How many readers are in each status (every status present, zeros included)."""
    counts = dict.fromkeys(SubscriberStatus, 0)
    query = select(Subscriber.status, func.count()).group_by(Subscriber.status)
    for status, count in db.session.execute(query):
        counts[status] = count
    return counts


def counts_by_topic() -> list[TopicCount]:
    """Every section, in the bulletin's order, with its active and pending readers."""
    query = (
        select(subscriber_topics.c.topic_id, Subscriber.status, func.count())
        .join(Subscriber, Subscriber.id == subscriber_topics.c.subscriber_id)
        .where(Subscriber.status.in_([SubscriberStatus.ACTIVE, SubscriberStatus.PENDING]))
        .group_by(subscriber_topics.c.topic_id, Subscriber.status)
    )
    counts = {(topic, status): count for topic, status, count in db.session.execute(query)}
    topics = db.session.scalars(select(Topic).order_by(Topic.position, Topic.id))
    return [
        TopicCount(
            topic_id=t.id,
            name=t.name,
            name_en=t.name_en,
            active=t.active,
            readers=counts.get((t.id, SubscriberStatus.ACTIVE), 0),
            pending=counts.get((t.id, SubscriberStatus.PENDING), 0),
        )
        for t in topics
    ]
