"""The API's resources: topics, subscribers, issues and their deliveries.

Views read the request, call the same domain functions the staff pages call, commit
(`transaction()`), queue work after the commit, and answer JSON. Domain errors become
problem details with the pages' words (`errors.domain_problem`).
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app, jsonify, request
from sqlalchemy import select

from .. import delivery_log, directory, publishing
from ..errors import BulletinError, describe_stored, domain_problem
from ..extensions import db
from ..issues import issue_subject, number_label
from ..models import (
    ApiTokenRole,
    DeliveryStatus,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    Topic,
)
from ..security import MAX_ID
from . import bp
from .auth import needs

PAGE_DEFAULT = 50
PAGE_MAX = 500


class Invalid(BulletinError):
    """A request the API refuses before any domain function sees it (422)."""


# Which domain refusals are which HTTP answer; everything else a domain function refuses
# is a conflict with the current state (409).
NOT_FOUND = {"issue-missing", "subscriber-missing", "topic-missing", "api-token-missing"}
FORBIDDEN = {"review-not-reviewer", "review-own"}
UNPROCESSABLE = {
    "api-invalid", "email-invalid", "topics-none", "topics-unknown", "schedule-past",
    "review-comment-missing", "review-comment-too-long", "issue-field-too-long",
    "issue-number-invalid", "article-title-missing", "subject-pattern-missing",
}  # fmt: skip


@bp.errorhandler(BulletinError)
def _domain_error(error: BulletinError):
    if error.code in NOT_FOUND:
        status = 404
    elif error.code in FORBIDDEN:
        status = 403
    elif error.code in UNPROCESSABLE or error.code.startswith("document-"):
        status = 422
    else:
        status = 409
    return domain_problem(error, status)


# --- reading the request --------------------------------------------------------------------


def _invalid(name: str, problem: str) -> Invalid:
    return Invalid("api-invalid", field=name, name=name, problem=problem)


def query_id(name: str) -> int | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise _invalid(name, "must be a positive integer")
    return int(value)


def query_limit() -> int:
    value = request.args.get("limit")
    if value in (None, ""):
        return PAGE_DEFAULT
    if not value.isdigit() or not 1 <= int(value) <= PAGE_MAX:
        raise _invalid("limit", f"must be an integer from 1 to {PAGE_MAX}")
    return int(value)


def query_choice(name: str, enum_cls):
    value = request.args.get(name)
    if value in (None, ""):
        return None
    if value not in {member.value for member in enum_cls}:
        raise _invalid(name, "must be one of " + ", ".join(m.value for m in enum_cls))
    return enum_cls(value)


# --- what the API answers -------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def topic_json(topic: Topic) -> dict:
    return {
        "id": topic.id,
        "name": topic.name,
        "slug": topic.slug,
        "position": topic.position,
        "active": topic.active,
    }


def subscriber_json(subscriber: Subscriber) -> dict:
    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status.value,
        "locale": subscriber.locale,
        "topics": [topic.id for topic in subscriber.topics],
        "created_at": iso(subscriber.created_at),
        "confirmed_at": iso(subscriber.confirmed_at),
        "unsubscribed_at": iso(subscriber.unsubscribed_at),
        "consent": {
            "method": subscriber.consent_method.value if subscriber.consent_method else None,
            "consented_at": iso(subscriber.consented_at),
            "source": subscriber.consent_source,
        },
    }


def issue_json(issue: Issue, *, articles: bool = False) -> dict:
    body = {
        "id": issue.id,
        "title": issue.title,
        "period": issue.period,
        "subject": issue_subject(issue, current_app.config["BULLETIN_NAME"]),
        "subject_override": issue.subject,
        "preheader": issue.preheader,
        "year": issue.year,
        "number": issue.number,
        "total_number": issue.total_number,
        "number_label": number_label(issue),
        "status": issue.status.value,
        "review_stage": issue.review_stage.value,
        "submitted_by": issue.submitted_by,
        "reviewed_by": issue.reviewed_by,
        "review_comment": issue.review_comment,
        "pause_reason": describe_stored(issue.pause_reason),
        "created_at": iso(issue.created_at),
        "updated_at": iso(issue.updated_at),
        "scheduled_at": iso(issue.scheduled_at),
        "published_at": iso(issue.published_at),
        "sent_at": iso(issue.sent_at),
    }
    if articles:
        body["articles"] = [
            {
                "id": article.id,
                "topic_id": article.topic_id,
                "position": article.position,
                "title": article.title,
                "source_name": article.source_name,
                "source_url": article.source_url,
            }
            for article in issue.articles
        ]
    return body


def _issue(issue_id: int) -> Issue:
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        raise publishing.PublishError("issue-missing", id=issue_id)
    return issue


def _subscriber(subscriber_id: int) -> Subscriber:
    from ..subscriptions import SubscriptionError

    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise SubscriptionError("subscriber-missing", id=subscriber_id)
    return subscriber


# --- topics ---------------------------------------------------------------------------------


@bp.get("/topics")
def list_topics():
    topics = db.session.scalars(select(Topic).order_by(Topic.position, Topic.id))
    return jsonify(topics=[topic_json(topic) for topic in topics])


# --- subscribers (admins: they name readers) ------------------------------------------------


@bp.get("/subscribers")
@needs(ApiTokenRole.ADMIN)
def list_subscribers():
    page = directory.list_subscribers(
        search=request.args.get("q", "")[:320],
        status=query_choice("status", SubscriberStatus),
        topic_id=query_id("topic"),
        after_id=query_id("after"),
        limit=query_limit(),
    )
    return jsonify(
        subscribers=[subscriber_json(subscriber) for subscriber in page.rows],
        next_after=page.next_after_id,
    )


@bp.get("/subscribers/<int:subscriber_id>")
@needs(ApiTokenRole.ADMIN)
def get_subscriber(subscriber_id: int):
    return jsonify(subscriber_json(_subscriber(subscriber_id)))


@bp.get("/subscribers/<int:subscriber_id>/export")
@needs(ApiTokenRole.ADMIN)
def export_subscriber(subscriber_id: int):
    from ..subscriptions import export_data

    return jsonify(export_data(subscriber_id))


# --- issues ---------------------------------------------------------------------------------


@bp.get("/issues")
def list_issues():
    """Newest first, by keyset: `after` is the previous page's `next_after`."""
    limit = query_limit()
    query = select(Issue).order_by(Issue.id.desc()).limit(limit + 1)
    status = query_choice("status", IssueStatus)
    if status is not None:
        query = query.where(Issue.status == status)
    after = query_id("after")
    if after is not None:
        query = query.where(Issue.id < after)
    rows = list(db.session.scalars(query))
    next_after = rows[limit - 1].id if len(rows) > limit else None
    return jsonify(issues=[issue_json(issue) for issue in rows[:limit]], next_after=next_after)


@bp.get("/issues/<int:issue_id>")
def get_issue(issue_id: int):
    return jsonify(issue_json(_issue(issue_id), articles=True))


@bp.get("/issues/<int:issue_id>/progress")
def issue_progress(issue_id: int):
    issue = _issue(issue_id)
    figures = publishing.sending_figures(issue_id)
    return jsonify(
        status=issue.status.value,
        pause_reason=describe_stored(issue.pause_reason),
        counts=figures["counts"],
        total=figures["total"],
        done=figures["done"],
        percent=figures["percent"],
        rate=round(figures["rate"], 1),
        seconds_left=figures["seconds_left"],
    )


@bp.get("/issues/<int:issue_id>/deliveries")
@needs(ApiTokenRole.ADMIN)
def list_deliveries(issue_id: int):
    """The per-recipient log, in row order by keyset (names readers: admins only)."""
    _issue(issue_id)
    rows, next_after = delivery_log.page(
        issue_id,
        status=query_choice("status", DeliveryStatus),
        search=request.args.get("q", "")[:320],
        after_id=query_id("after") or 0,
        limit=query_limit(),
    )
    return jsonify(
        deliveries=[
            {
                "id": row.id,
                "email": row.email,
                "status": row.status.value,
                "attempts": row.attempts,
                "smtp_reply": row.smtp_reply,
                "updated_at": iso(row.updated_at),
                "sent_at": iso(row.sent_at),
            }
            for row in rows
        ],
        next_after=next_after,
    )
