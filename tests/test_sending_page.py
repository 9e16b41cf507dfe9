"""The sending page tells the truth: a progress bar with numbers, the rate over the last
30 seconds and the time left from it, actions that land on it, and staff-zone times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import lxml.html
import pytest
from flask_babel import refresh
from sqlalchemy import select, update

from tests.helpers import csrf_token
from webapp import publishing
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import (
    AuditEntry,
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    utcnow,
)


@pytest.fixture
def issue(app, db_session) -> Issue:
    [topic] = ensure_topics(["质量要闻"])
    db.session.add_all(
        Subscriber(email=f"r{n}@example.com", status=SubscriberStatus.ACTIVE, topics=[topic])
        for n in range(400)
    )
    item = create_issue("第十期")
    add_article(item, topic, "文章", "正文。", lead="导语。")
    db.session.commit()
    return item


def mark_sent(issue_id: int, count: int, start: datetime, end: datetime) -> None:
    """As if the first `count` rows had been answered 250 evenly between start and end."""
    ids = db.session.scalars(
        select(Delivery.id).where(Delivery.issue_id == issue_id).order_by(Delivery.id).limit(count)
    ).all()
    step = (end - start) / max(count - 1, 1)
    for n, delivery_id in enumerate(ids):
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status=DeliveryStatus.SENT, sent_at=start + n * step)
        )
    db.session.commit()


def test_the_rate_counts_only_the_time_since_sending_began(app, issue):
    publishing.publish_issue(issue.id)
    db.session.commit()
    now = utcnow()
    # 240 messages in the 10 s since the run began: 24 a second, not 240 over 30 s.
    mark_sent(issue.id, 240, now - timedelta(seconds=10), now)
    figures = publishing.sending_figures(issue.id)
    assert 20 < figures["rate"] < 25
    assert (figures["done"], figures["total"], figures["percent"]) == (240, 400, 60)
    # 160 left at about 24 a second: about 7 s.
    assert 6 <= figures["seconds_left"] <= 8


def test_the_rate_is_over_the_last_30_seconds_not_the_whole_run(app, issue):
    publishing.publish_issue(issue.id)
    db.session.commit()
    now = utcnow()
    # A slow start (100 in the first 5 minutes), then 200 in the last 20 s.
    mark_sent(issue.id, 100, now - timedelta(minutes=6), now - timedelta(minutes=1))
    recent = db.session.scalars(
        select(Delivery.id).where(Delivery.issue_id == issue.id, Delivery.sent_at.is_(None))
    ).all()[:200]
    db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(recent))
        .values(status=DeliveryStatus.SENT, sent_at=now - timedelta(seconds=10))
    )
    db.session.commit()
    rate = publishing.send_rate(issue.id)
    assert 6 < rate < 7  # 200 in the last 30 s


def test_a_finished_issue_shows_the_pace_it_ran_at(app, issue):
    publishing.publish_issue(issue.id)
    db.session.commit()
    long_ago = utcnow() - timedelta(hours=2)
    mark_sent(issue.id, 400, long_ago, long_ago + timedelta(seconds=20))
    db.session.execute(update(Issue).where(Issue.id == issue.id).values(status=IssueStatus.SENT))
    db.session.commit()
    figures = publishing.sending_figures(issue.id)
    assert 19 < figures["rate"] < 21  # 400 in 20 s, two hours ago
    assert figures["percent"] == 100 and figures["seconds_left"] is None


def test_the_sending_page_has_a_progress_bar_with_numbers(app, issue, staff_client):
    publishing.publish_issue(issue.id)
    db.session.commit()
    now = utcnow()
    mark_sent(issue.id, 100, now - timedelta(seconds=20), now)
    page = staff_client.get(f"/admin/issues/{issue.id}/sending").get_data(as_text=True)
    document = lxml.html.fromstring(page)
    [bar] = document.xpath("//progress[@id='send-progress']")
    assert (bar.get("max"), bar.get("value")) == ("400", "100")
    assert "100 / 400 封（25%）" in document.get_element_by_id("progress-numbers").text_content()
    assert "封/秒" in document.get_element_by_id("send-rate").text_content()
    assert "约" in document.get_element_by_id("time-left").text_content()

    live = staff_client.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    assert (live["done"], live["total"], live["percent"]) == (100, 400, 25)
    assert live["rate_label"].endswith("封/秒") and live["time_left_label"].startswith("约")
    refresh()  # this test's app context remembers the first request's language
    english = staff_client.get(f"/admin/issues/{issue.id}/progress.json?lang=en").get_json()
    assert english["rate_label"].endswith("/s") and english["time_left_label"].startswith("about")


def test_publish_pause_and_resume_land_on_the_sending_page(app, issue, staff_client):
    sending = f"/admin/issues/{issue.id}/sending"
    for action in ("publish", "pause", "resume"):
        page = staff_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
        answer = staff_client.post(
            f"/admin/issues/{issue.id}/{action}", data={"csrf_token": csrf_token(page)}
        )
        assert answer.status_code == 302, action
        assert answer.headers["Location"].endswith(sending), action


def test_staff_pages_show_times_in_the_staff_zone_and_name_it(app, issue, staff_client):
    db.session.add(
        AuditEntry(
            staff_email="editor@example.org",
            action="publish",
            issue_id=issue.id,
            created_at=datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
        )
    )
    db.session.commit()
    page = staff_client.get(f"/admin/issues/{issue.id}/sending").get_data(as_text=True)
    assert "2026-01-01 08:00:00" in page  # Asia/Shanghai is UTC+8
    assert "时间（Asia/Shanghai）" in page and "（UTC）" not in page


def test_the_log_finds_readers_by_any_part_of_their_address(app, issue, staff_client):
    publishing.publish_issue(issue.id)
    db.session.commit()

    def found(query: str) -> set[str]:
        page = staff_client.get(f"/admin/issues/{issue.id}/sending?{query}")
        assert page.status_code == 200
        return set(re.findall(r"r\d+@example\.com", page.get_data(as_text=True)))

    expected = {"r12@example.com"} | {f"r12{n}@example.com" for n in range(10)}
    assert found("q=R12") == expected  # any part, case aside
    assert found("q=2%40example") == {f"r{n}@example.com" for n in range(400) if n % 10 == 2}
    assert found("q=r1_") == set()  # _ and % are letters here, not wildcards
    assert found("q=r12&status=sent") == set()  # filters combine: nothing sent yet
