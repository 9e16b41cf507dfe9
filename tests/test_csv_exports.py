"""The two staff CSV exports written by PostgreSQL are byte for byte what the Python path
writes: quoting, formula guards, sections in the bulletin's order, timestamps in the
session's zone with and without microseconds, filters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from tests.helpers import add_topics
from webapp import delivery_log, directory
from webapp.extensions import db
from webapp.models import Delivery, DeliveryStatus, Issue, IssueStatus, Subscriber, SubscriberStatus

# Cells a spreadsheet or a CSV reader could trip on.
NAMES = [
    '=HYPERLINK("https://evil.example","点我")',
    "+1 234",
    "-5",
    "@SUM(A1)",
    "\tTabbed",
    "\rReturned",
    'Say "hi", then leave',
    "two\nlines",
    "张三",
    "",
    "C:\\new\\table 100% \b\f\v\x01",  # backslashes, a percent, control characters
]
ZONES = ["UTC", "Asia/Shanghai", "America/New_York", "Asia/Kolkata"]


# The SQL-built CSV lines exist only on PostgreSQL; SQLite writes them in Python.
pytestmark = pytest.mark.postgresql


@pytest.fixture
def readers(app, db_session):
    """Readers with tricky cells, their sections chosen out of id order, and the sections'
    positions the reverse of their ids (the export lists them by position)."""
    topics = add_topics(["质量要闻", "=公式栏目", 'Quoted "news", 100% too'])
    for position, topic in zip((3, 2, 1), topics, strict=True):
        topic.position = position
    moments = [
        datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),  # no microseconds: isoformat leaves them out
        datetime(2026, 3, 4, 5, 6, 7, 1, tzinfo=UTC),
        datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # another day in Shanghai
        datetime(2026, 7, 1, 12, 0, 0, 500000, tzinfo=UTC),  # summer time in New York
    ]
    statuses = list(SubscriberStatus)
    emails = ["=cmd@example.com", "-dash@example.com", "+plus@example.com", "@at@example.com"]
    for n, name in enumerate(NAMES):
        email = emails[n] if n < len(emails) else f"reader{n}@example.com"
        db.session.add(
            Subscriber(
                email=email,
                name=name,
                status=statuses[n % len(statuses)],
                locale="en" if n % 3 == 0 else "zh",
                topics=[topics[(n + k) % 3] for k in range(n % 4)],
                created_at=moments[n % len(moments)],
            )
        )
    db.session.commit()
    return topics


def python_and_sql(lines_in_python, lines_in_sql) -> tuple[bytes, bytes]:
    return "".join(lines_in_python).encode(), "".join(lines_in_sql).encode()


@pytest.mark.parametrize("zone", ZONES)
def test_the_readers_export_from_postgresql_is_the_python_export_byte_for_byte(readers, zone):
    db.session.execute(text(f"SET LOCAL TIME ZONE '{zone}'"))
    everyone = directory.Filters()
    python, sql = python_and_sql(
        directory._csv_chunks_in_python(everyone), directory._csv_chunks_in_sql(everyone)
    )
    assert sql == python
    assert python.count(b"\r\n") == len(NAMES)
    assert "'=公式栏目;质量要闻".encode() in python  # the sections by position, guarded
    assert b'"Quoted ""news"", 100% too;' in python
    assert b'"two\nlines"' in python and b'"\'\rReturned"' in python
    if zone == "UTC":
        assert b'"2026-03-04T05:06:07+00:00"' in python
    db.session.rollback()


@pytest.mark.parametrize(
    "choose",
    [
        lambda topics: directory.Filters(status=SubscriberStatus.ACTIVE),
        lambda topics: directory.Filters(topic_id=topics[1].id),
        lambda topics: directory.Filters(search="Say", locale="en"),
        lambda topics: directory.Filters(search="\\table 100%"),
        lambda topics: directory.Filters(
            search="example", status=SubscriberStatus.UNSUBSCRIBED, topic_id=topics[0].id
        ),
    ],
    ids=["status", "section", "search-and-language", "search-percent", "all-together"],
)
def test_the_filtered_readers_export_from_postgresql_is_the_python_export(readers, choose):
    filters = choose(readers)
    python, sql = python_and_sql(
        directory._csv_chunks_in_python(filters), directory._csv_chunks_in_sql(filters)
    )
    assert sql == python
    assert python  # every filter here matches someone


@pytest.fixture
def deliveries(readers):
    """Deliveries of two issues to every reader: tricky SMTP replies, one never sent."""
    issues = [Issue(title=f"第 {n} 期", status=IssueStatus.SENT) for n in (1, 2)]
    db.session.add_all(issues)
    db.session.flush()
    replies = ["-ERR mailbox full", '250 2.0.0 Ok: queued as "A1", id 7', "550\nUser unknown"]
    statuses = list(DeliveryStatus)
    for issue in issues:
        for n, reader_id in enumerate(db.session.scalars(select(Subscriber.id))):
            sent = n % 4 != 1
            db.session.add(
                Delivery(
                    issue_id=issue.id,
                    subscriber_id=reader_id,
                    status=statuses[n % len(statuses)],
                    attempts=n % 3,
                    smtp_reply=replies[n % len(replies)] if n % 5 else "",
                    updated_at=datetime(2026, 5, 6, 7, 8, 9, n * 1000 % 3000, tzinfo=UTC),
                    sent_at=datetime(2026, 5, 6, 7, 8, 9, n, tzinfo=UTC) if sent else None,
                )
            )
    db.session.commit()
    return issues


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai"])
@pytest.mark.parametrize("status", [None, DeliveryStatus.SENT])
def test_the_delivery_log_export_from_postgresql_is_the_python_export(deliveries, zone, status):
    db.session.execute(text(f"SET LOCAL TIME ZONE '{zone}'"))
    issue_id = deliveries[1].id
    python, sql = python_and_sql(
        delivery_log._csv_chunks_in_python(issue_id, status),
        delivery_log._csv_chunks_in_sql(issue_id, status),
    )
    assert sql == python
    if status is not None:
        assert python.count(b'"sent"') == python.count(b"\r\n") > 0
    else:
        assert python.count(b"\r\n") == len(NAMES)
        assert b'"\'-ERR mailbox full"' in python and b'"550\nUser unknown"' in python
        assert b',""\r\n' in python  # never sent: an empty sent_at
    db.session.rollback()


def test_more_sections_than_one_mask_holds_are_listed_in_order(app, db_session):
    """Past 63 sections the SQL path keeps a second bit mask per reader."""
    topics = add_topics([f"栏目{n:02d}" for n in range(69)] + ["-末尾"])
    picks = [[0, 64, 69], [65], [63, 62], [69, 1], [], [68, 66], [69]]
    for n, ranks in enumerate(picks):
        db.session.add(Subscriber(email=f"r{n}@example.com", topics=[topics[r] for r in ranks]))
    db.session.commit()
    everyone = directory.Filters()
    python, sql = python_and_sql(
        directory._csv_chunks_in_python(everyone), directory._csv_chunks_in_sql(everyone)
    )
    assert sql == python
    assert '"栏目00;栏目64;-末尾"'.encode() in python and '"\'-末尾"'.encode() in python
    assert '"栏目01;-末尾"'.encode() in python and '"栏目66;栏目68"'.encode() in python


def test_readers_without_any_sections_offered_export_alike(app, db_session):
    db.session.add(Subscriber(email="only@example.com", name="=1+1"))
    db.session.commit()
    everyone = directory.Filters()
    python, sql = python_and_sql(
        directory._csv_chunks_in_python(everyone), directory._csv_chunks_in_sql(everyone)
    )
    assert sql == python and python.startswith(b'"only@example.com","\'=1+1","pending",""')
