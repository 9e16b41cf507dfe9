"""Publishing, pausing, resuming, cancelling, scheduling and resending, from the staff site
and through the engine, against the real database and a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from tests.helpers import csrf_token
from webapp import delivery, publishing, sweeper
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import Delivery, DeliveryStatus, Issue, IssueStatus, Subscriber, utcnow
from webapp.models import SubscriberStatus as Status


@pytest.fixture
def issue(app, db_session) -> Issue:
    [topic] = ensure_topics(["质量要闻"])
    db.session.add_all(
        Subscriber(email=f"r{n}@example.com", status=Status.ACTIVE, topics=[topic])
        for n in range(30)
    )
    item = create_issue("第十期")
    add_article(item, topic, "文章", "正文。", lead="导语。")
    db.session.commit()
    return item


def post(client, path: str, issue: Issue, **data):
    page = client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    return client.post(path, data={"csrf_token": csrf_token(page), **data})


def run_queued(issue_id: int) -> None:
    """What the workers would do: queue the due rows and send each batch, here, in turn."""
    batches: list[list[int]] = []
    delivery.dispatch_due(issue_id, lambda _, ids: batches.append(ids))
    for ids in batches:
        delivery.send_batch(issue_id, ids)


def rows(issue_id: int) -> dict[DeliveryStatus, int]:
    db.session.expire_all()
    return dict(
        db.session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.issue_id == issue_id)
            .group_by(Delivery.status)
        ).all()
    )


def test_publishing_twice_from_the_staff_site_is_a_409_and_one_plan(staff_client, issue):
    first = post(staff_client, f"/admin/issues/{issue.id}/publish", issue)
    assert first.status_code == 302
    second = post(staff_client, f"/admin/issues/{issue.id}/publish", issue)
    assert second.status_code == 409
    assert f"第 {issue.id} 期的状态是“发送中”，不能这样操作。" in second.get_data(as_text=True)
    english = post(staff_client, f"/admin/issues/{issue.id}/publish?lang=en", issue)
    assert english.status_code == 409
    text = english.get_data(as_text=True)
    assert f"Issue {issue.id} is “Sending”: it cannot do that now." in text
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 30


def test_a_paused_issue_sends_nothing_until_resumed(app, issue, inbox):
    publishing.publish_issue(issue.id)
    db.session.commit()
    publishing.pause_issue(issue.id, "checking a typo")
    db.session.commit()
    run_queued(issue.id)
    assert inbox.messages == [] and rows(issue.id) == {DeliveryStatus.PENDING: 30}
    publishing.resume_issue(issue.id)
    db.session.commit()
    run_queued(issue.id)
    assert rows(issue.id) == {DeliveryStatus.SENT: 30} and len(inbox.messages) == 30
    assert db.session.get(Issue, issue.id).status == IssueStatus.SENT


def test_cancelling_skips_everyone_not_yet_sent(staff_client, issue, inbox):
    publishing.publish_issue(issue.id)
    db.session.commit()
    batches: list[list[int]] = []
    delivery.dispatch_due(issue.id, lambda _, ids: batches.append(ids), size=10)
    delivery.send_batch(issue.id, batches[0])  # ten go out
    answer = post(staff_client, f"/admin/issues/{issue.id}/cancel", issue, confirm="yes")
    assert answer.status_code == 302
    for ids in batches[1:]:
        delivery.send_batch(issue.id, ids)  # queued before the cancel: they find nothing
    assert rows(issue.id) == {DeliveryStatus.SENT: 10, DeliveryStatus.SKIPPED: 20}
    assert len(inbox.messages) == 10
    assert db.session.get(Issue, issue.id).status == IssueStatus.CANCELLED


def test_a_server_that_refuses_us_pauses_the_issue_and_says_why(staff_client, issue, inbox):
    inbox.replies["r3@example.com"] = (530, "5.7.0 Authentication required")
    publishing.publish_issue(issue.id)
    db.session.commit()
    run_queued(issue.id)
    paused = db.session.get(Issue, issue.id)
    assert paused.status == IssueStatus.PAUSED
    # Stored as a code and the server's own words; the page says it in the reader's language.
    assert paused.pause_reason.startswith("smtp-refused 530")
    assert "5.7.0 Authentication required" in paused.pause_reason
    page = staff_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert "SMTP 服务器拒绝了我们：530 5.7.0 Authentication required" in page
    page = staff_client.get(f"/admin/issues/{issue.id}?lang=en").get_data(as_text=True)
    assert "The SMTP server refused us: 530 5.7.0 Authentication required" in page
    counts = rows(issue.id)
    assert counts[DeliveryStatus.PENDING] == 30 - counts.get(DeliveryStatus.SENT, 0)
    assert counts.get(DeliveryStatus.FAILED, 0) == 0  # nothing is the readers' fault


def test_an_address_smtp_cannot_carry_fails_alone_and_a_chinese_domain_is_sent(app, issue, inbox):
    # Sign-up refuses non-ASCII before the @ now; a row stored before that must not stop
    # the batch it is in (it used to raise, and the batch was retried for ever).
    [topic] = ensure_topics(["质量要闻"])
    db.session.add_all(
        [
            Subscriber(email="用户@例子.中国", status=Status.ACTIVE, topics=[topic]),
            Subscriber(email="han@例子.中国", status=Status.ACTIVE, topics=[topic]),
        ]
    )
    db.session.commit()
    publishing.publish_issue(issue.id)
    db.session.commit()
    run_queued(issue.id)
    assert rows(issue.id) == {DeliveryStatus.SENT: 31, DeliveryStatus.FAILED: 1}
    reply = db.session.scalar(
        select(Delivery.smtp_reply).where(Delivery.status == DeliveryStatus.FAILED)
    )
    assert "non-ASCII characters before the @" in reply
    [message] = inbox.to("han@xn--fsqu00a.xn--fiqs8s")
    assert message["To"].addresses[0].addr_spec == "han@xn--fsqu00a.xn--fiqs8s"
    assert db.session.get(Issue, issue.id).status == IssueStatus.SENT


def test_resend_unknown_puts_those_rows_back_and_the_issue_back_to_sending(staff_client, issue):
    publishing.publish_issue(issue.id)
    db.session.execute(update(Delivery).values(status=DeliveryStatus.SENT).where(Delivery.id <= 25))
    db.session.execute(
        update(Delivery).values(status=DeliveryStatus.UNKNOWN).where(Delivery.id > 25)
    )
    db.session.execute(update(Issue).values(status=IssueStatus.SENT))
    db.session.commit()
    answer = post(staff_client, f"/admin/issues/{issue.id}/resend/unknown", issue)
    assert answer.status_code == 302
    assert rows(issue.id) == {DeliveryStatus.SENT: 25, DeliveryStatus.PENDING: 5}
    assert db.session.get(Issue, issue.id).status == IssueStatus.SENDING


def test_a_scheduled_issue_is_published_by_the_sweeper_when_due(staff_client, issue):
    answer = post(
        staff_client, f"/admin/issues/{issue.id}/schedule", issue, when="2999-01-01T08:00"
    )
    assert answer.status_code == 302
    assert db.session.get(Issue, issue.id).status == IssueStatus.SCHEDULED
    past = post(staff_client, f"/admin/issues/{issue.id}/schedule", issue, when="2000-01-01T08:00")
    assert past.status_code == 409 and "定时发布的时间必须在将来。" in past.get_data(as_text=True)

    queued: list[int] = []
    sweeper.sweep(lambda _, ids: queued.extend(ids))
    assert queued == []  # not yet
    db.session.execute(update(Issue).values(scheduled_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()
    result = sweeper.sweep(lambda _, ids: queued.extend(ids))
    assert result.published == [issue.id] and len(queued) == 30
    assert db.session.get(Issue, issue.id).status == IssueStatus.SENDING


def test_the_live_counts_are_json(staff_client, issue):
    publishing.publish_issue(issue.id)
    db.session.commit()
    data = staff_client.get(f"/admin/issues/{issue.id}/progress.json").get_json()
    assert data["status"] == "sending" and data["counts"]["pending"] == 30


def test_sending_controls_need_a_csrf_token(staff_client, issue):
    for action in ("publish", "pause", "resume", "cancel", "schedule", "resend/failed"):
        answer = staff_client.post(f"/admin/issues/{issue.id}/{action}", data={})
        assert answer.status_code == 400, action
    assert db.session.get(Issue, issue.id).status == IssueStatus.DRAFT


def test_the_publish_page_says_how_many_readers_get_it_per_section(staff_client, issue):
    topic = issue.articles[0].topic
    db.session.add(Subscriber(email="p@example.com", status=Status.PENDING, topics=[topic]))
    db.session.commit()
    page = staff_client.get(f"/admin/issues/{issue.id}/publish").get_data(as_text=True)
    assert '<strong id="audience">30</strong>' in page  # the pending reader is not counted
    assert "<td>质量要闻</td><td>30</td>" in page
    assert db.session.get(Issue, issue.id).status == IssueStatus.DRAFT  # asking is not doing


def test_the_sending_page_lists_every_recipient_filters_and_exports(staff_client, issue, inbox):
    post(staff_client, f"/admin/issues/{issue.id}/publish", issue)
    run_queued(issue.id)
    page = staff_client.get(f"/admin/issues/{issue.id}/sending").get_data(as_text=True)
    assert page.count("250 2.0.0 Ok: queued as test") == 30
    assert "r7@example.com" in page
    filtered = staff_client.get(f"/admin/issues/{issue.id}/sending?status=failed")
    assert "r7@example.com" not in filtered.get_data(as_text=True)
    export = staff_client.get(f"/admin/issues/{issue.id}/deliveries.csv")
    lines = export.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0] == '"email","status","attempts","smtp_reply","updated_at","sent_at"'
    assert len(lines) == 31 and all('"sent"' in line for line in lines[1:])


def test_publishing_and_pausing_are_in_the_audit_log(staff_client, issue):
    post(staff_client, f"/admin/issues/{issue.id}/publish", issue)
    post(staff_client, f"/admin/issues/{issue.id}/pause", issue)
    page = staff_client.get(f"/admin/issues/{issue.id}/sending").get_data(as_text=True)
    audit_table = page[page.index('id="audit"') :]
    assert audit_table.index("<td>暂停</td>") < audit_table.index("<td>发布</td>")  # newest first
    assert "admin@example.org" in audit_table and "<td>30</td>" in audit_table
    page = staff_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert "由 admin@example.org 暂停" in page
    page = staff_client.get(f"/admin/issues/{issue.id}?lang=en").get_data(as_text=True)
    assert "Paused by admin@example.org" in page
