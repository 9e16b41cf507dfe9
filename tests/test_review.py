"""Review before sending: 送审, 审核通过 or 退回修改, and nothing unapproved goes out by any path
(the staff site, the CLI, the sweeper)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.helpers import csrf_token, log_in, wait_for
from webapp import publishing, site_settings, sweeper
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import (
    AuditEntry,
    Delivery,
    Issue,
    IssueStatus,
    ReviewStage,
    StaffRole,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

REFUSED = "尚未通过审核"


@pytest.fixture
def review_on(app, db_session):
    site_settings.set_value("review_required", True)
    db.session.commit()


@pytest.fixture
def issue(app, db_session, review_on) -> Issue:
    [topic] = ensure_topics(["质量要闻"])
    db.session.add_all(
        Subscriber(email=f"r{n}@example.com", status=SubscriberStatus.ACTIVE, topics=[topic])
        for n in range(5)
    )
    item = create_issue("第十期")
    add_article(item, topic, "文章", "正文。", lead="导语。")
    db.session.commit()
    return item


@pytest.fixture
def reviewer_client(app):
    return log_in(app, "shenhe@example.org", StaffRole.REVIEWER)


def post(client, issue: Issue, action: str, **data):
    page = client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    return client.post(
        f"/admin/issues/{issue.id}/{action}", data={"csrf_token": csrf_token(page), **data}
    )


def stage(issue: Issue) -> ReviewStage:
    db.session.expire_all()
    return db.session.get(Issue, issue.id).review_stage


def actions(issue: Issue) -> list[str]:
    return list(
        db.session.scalars(
            select(AuditEntry.action).where(AuditEntry.issue_id == issue.id).order_by(AuditEntry.id)
        )
    )


def planned(issue: Issue) -> int:
    return db.session.scalar(select(func.count()).where(Delivery.issue_id == issue.id))


def test_submit_return_fix_resubmit_approve_publish(
    app, issue, editor_client, reviewer_client, celery_worker, inbox
):
    assert post(editor_client, issue, "submit-review").status_code == 302
    assert stage(issue) == ReviewStage.IN_REVIEW
    # The reviewer is told by email, with the preview link, and gets the test message.
    request = wait_for(
        lambda: [m for m in inbox.to("shenhe@example.org") if m["Subject"].startswith("[送审]")],
        what="the review request",
    )[0]
    assert f"/admin/issues/{issue.id}/preview" in request.get_body(("plain",)).get_content()
    wait_for(
        lambda: [m for m in inbox.to("shenhe@example.org") if m["Subject"].startswith("[测试]")],
        what="the test message to the reviewer",
    )
    # The editor may not approve, even their own submission; nor may the submitter.
    assert post(editor_client, issue, "approve").status_code == 409

    answer = post(reviewer_client, issue, "return", comment="第二段的数字请核对。")
    assert answer.status_code == 302 and stage(issue) == ReviewStage.RETURNED
    page = editor_client.get(f"/admin/issues/{issue.id}").get_data(as_text=True)
    assert "第二段的数字请核对。" in page and "已退回" in page

    article = issue.articles[0]
    edit = editor_client.get(f"/admin/issues/{issue.id}/articles/{article.id}/edit")
    saved = editor_client.post(
        f"/admin/issues/{issue.id}/articles/{article.id}/edit",
        data={
            "csrf_token": csrf_token(edit.get_data(as_text=True)),
            "title": "文章",
            "topic_id": str(article.topic_id),
            "body": "正文，数字已核对。",
        },
    )
    assert saved.status_code == 302
    assert post(editor_client, issue, "submit-review").status_code == 302
    assert post(reviewer_client, issue, "approve").status_code == 302
    assert stage(issue) == ReviewStage.APPROVED

    assert post(editor_client, issue, "publish").status_code == 302
    assert planned(issue) == 5
    assert actions(issue) == [
        "submit-review",
        "return-review",
        "edit-article",
        "submit-review",
        "approve",
        "publish",
    ]
    issues_page = editor_client.get("/admin/issues").get_data(as_text=True)
    assert "发送中" in issues_page


def test_the_web_refuses_to_publish_or_schedule_an_unapproved_issue(app, issue, staff_client):
    answer = post(staff_client, issue, "publish")
    assert answer.status_code == 409 and REFUSED in answer.get_data(as_text=True)
    when = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    answer = post(staff_client, issue, "schedule", when=when)
    assert answer.status_code == 409 and REFUSED in answer.get_data(as_text=True)
    english = post(staff_client, issue, "publish?lang=en")
    assert "not been approved" in english.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == IssueStatus.DRAFT and planned(issue) == 0


def test_the_cli_refuses_to_publish_an_unapproved_issue(app, issue):
    result = app.test_cli_runner().invoke(args=["publish", str(issue.id)])
    assert result.exit_code == 1
    assert "has not been approved" in result.output  # the CLI speaks English
    assert planned(issue) == 0


def test_the_sweeper_returns_an_unapproved_scheduled_issue_to_draft(app, issue):
    # Scheduled while review was off; then an admin turned review on.
    site_settings.set_value("review_required", False)
    publishing.schedule_issue(issue.id, utcnow() + timedelta(minutes=5))
    site_settings.set_value("review_required", True)
    db.session.commit()
    db.session.execute(
        Issue.__table__.update()
        .where(Issue.id == issue.id)
        .values(scheduled_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()

    result = sweeper.sweep(lambda *_: None)
    assert result.published == []
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == IssueStatus.DRAFT and planned(issue) == 0
    entry = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "schedule-refused")
    ).one()
    assert REFUSED in entry.detail
    # The next sweep has nothing to refuse again.
    sweeper.sweep(lambda *_: None)
    assert len(actions(issue)) == 1


def test_an_edit_after_approval_returns_the_issue_to_draft_and_unschedules_it(
    app, issue, editor_client, reviewer_client
):
    post(editor_client, issue, "submit-review")
    post(reviewer_client, issue, "approve")
    when = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert post(editor_client, issue, "schedule", when=when).status_code == 302
    answer = post(editor_client, issue, "details", title="第十期（改）", subject="", preheader="")
    assert answer.status_code == 302
    db.session.expire_all()
    changed = db.session.get(Issue, issue.id)
    assert changed.review_stage == ReviewStage.DRAFT
    assert changed.status == IssueStatus.DRAFT and changed.scheduled_at is None
    assert "review-reopened" in actions(issue)


def test_with_review_turned_off_editors_publish_directly(app, issue, editor_client):
    site_settings.set_value("review_required", False)
    db.session.commit()
    assert post(editor_client, issue, "publish").status_code == 302
    assert planned(issue) == 5


def test_a_return_needs_a_comment(app, issue, editor_client, reviewer_client):
    post(editor_client, issue, "submit-review")
    answer = post(reviewer_client, issue, "return", comment="  ")
    assert answer.status_code == 409
    assert stage(issue) == ReviewStage.IN_REVIEW


def test_the_publish_page_says_approval_comes_first(app, issue, staff_client):
    page = staff_client.get(f"/admin/issues/{issue.id}/publish").get_data(as_text=True)
    assert 'id="needs-approval"' in page and "确认发布" not in page
