"""The staff's list of readers: keyset pages with filters, and the counts."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.query_plans import query_plan
from webapp import directory
from webapp.extensions import db
from webapp.issues import ensure_topics
from webapp.models import Subscriber, SubscriberStatus, Topic

STATUSES = list(SubscriberStatus)


@pytest.fixture
def subscribers(db_session):
    """230 readers with a spread of statuses, sections and domains: (readers, topics)."""
    topics = ensure_topics(["质量要闻", "质量热点", "权威观点"])
    people = []
    for n in range(230):
        chosen = [t for i, t in enumerate(topics) if n % (i + 2) == 0]
        people.append(
            Subscriber(
                email=f"reader{n:03d}@{'example.com' if n % 3 else 'corp.example.org'}",
                status=STATUSES[n % len(STATUSES)],
                topics=chosen,
            )
        )
    db.session.add_all(people)
    db.session.commit()
    return people, topics


def all_pages(limit: int, **filters) -> list[list[int]]:
    pages, after = [], None
    while True:
        page = directory.list_subscribers(after_id=after, limit=limit, **filters)
        pages.append([s.id for s in page.rows])
        if page.next_after_id is None:
            return pages
        assert page.next_after_id == page.rows[-1].id
        after = page.next_after_id


def expected(people, *, search="", status=None, topic_id=None) -> list[int]:
    return sorted(
        (
            s.id
            for s in people
            if search.lower() in s.email
            and (status is None or s.status == status)
            and (topic_id is None or topic_id in {t.id for t in s.topics})
        ),
        reverse=True,
    )


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"status": SubscriberStatus.ACTIVE},
        {"status": SubscriberStatus.COMPLAINED},
        {"topic_id": 1},
        {"topic_id": 3, "status": SubscriberStatus.PENDING},
        {"search": "CORP.example"},
        {"search": "reader1"},
        {"search": "reader1", "status": SubscriberStatus.UNSUBSCRIBED, "topic_id": 1},
        {"search": "nobody"},
    ],
    ids=repr,
)
@pytest.mark.parametrize("limit", [1, 7, 50])
def test_paging_shows_every_matching_reader_once_newest_first(subscribers, filters, limit):
    people, topics = subscribers
    if "topic_id" in filters:  # ids from the fixture's topics, whatever the database gave
        filters = {**filters, "topic_id": topics[filters["topic_id"] - 1].id}
    pages = all_pages(limit, **filters)
    seen = [reader_id for page in pages for reader_id in page]
    assert seen == expected(people, **filters)  # none missing, none twice, in order
    assert all(len(page) == limit for page in pages[:-1])
    assert len(pages[-1]) <= limit


def test_a_reader_who_signs_up_meanwhile_does_not_shift_the_pages(subscribers):
    people, _ = subscribers
    first = directory.list_subscribers(limit=10)
    db.session.add(Subscriber(email="late@example.com", status=SubscriberStatus.ACTIVE))
    db.session.commit()
    second = directory.list_subscribers(after_id=first.next_after_id, limit=10)
    assert [s.id for s in second.rows] == expected(people)[10:20]


def test_pages_carry_the_readers_sections(subscribers):
    people, topics = subscribers
    [row] = directory.list_subscribers(search="reader012@", limit=1).rows
    assert [t.name for t in row.topics] == ["质量要闻", "质量热点", "权威观点"]


def test_percent_and_underscore_in_a_search_are_plain_characters(subscribers):
    db.session.add(Subscriber(email="a_b%c@example.com", status=SubscriberStatus.ACTIVE))
    db.session.commit()
    assert [s.email for s in directory.list_subscribers(search="_b%").rows] == ["a_b%c@example.com"]


def test_counts_by_status_and_by_section(subscribers):
    people, topics = subscribers
    counts = directory.counts_by_status()
    assert set(counts) == set(SubscriberStatus)
    for status in SubscriberStatus:
        assert counts[status] == sum(s.status == status for s in people)

    by_topic = {c.topic_id: c for c in directory.counts_by_topic()}
    assert [c.name for c in directory.counts_by_topic()] == [t.name for t in topics]
    for topic in topics:
        chose = [s for s in people if topic in s.topics]
        assert by_topic[topic.id].readers == sum(s.status == SubscriberStatus.ACTIVE for s in chose)
        assert by_topic[topic.id].pending == sum(
            s.status == SubscriberStatus.PENDING for s in chose
        )


def test_an_empty_list_and_a_closed_section(db_session):
    db.session.add(Topic(name="旧栏目", slug="old", active=False))
    db.session.commit()
    assert directory.list_subscribers() == directory.Page([], None)
    [closed] = directory.counts_by_topic()
    assert (closed.name, closed.active, closed.readers) == ("旧栏目", False, 0)


def test_pages_come_from_an_index_without_sorting(app, db_session):
    [topic] = ensure_topics(["质量要闻"])
    db.session.execute(
        Subscriber.__table__.insert(),
        [
            {
                "email": f"r{n}@example.com",
                "name": "",
                "status": STATUSES[n % len(STATUSES)],
                "locale": "zh",
            }
            for n in range(20000)
        ],
    )
    db.session.execute(
        text("INSERT INTO subscriber_topics SELECT id, :t FROM subscribers WHERE id % 2 = 0"),
        {"t": topic.id},
    )
    db.session.commit()
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE subscribers, subscriber_topics"))
        else:
            conn.execute(text("ANALYZE"))
    statements = {
        "all": {},
        "a later page": {"after_id": 15000},
        "a rare status": {"status": SubscriberStatus.COMPLAINED, "after_id": 15000},
        "a section": {"topic_id": topic.id, "after_id": 15000},
    }
    for name, filters in statements.items():
        plan = query_plan(directory.subscribers_query(**filters, limit=50))
        assert "Index" in plan and "Sort" not in plan and "Seq Scan" not in plan, (name, plan)
