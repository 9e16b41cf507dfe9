"""The API's resources: topics, subscribers, issues and their deliveries.

Views read the request, call the same domain functions the staff pages call, commit
(`transaction()`), queue work after the commit, and answer JSON. Domain errors become
problem details with the pages' words (`errors.domain_problem`).
"""

from __future__ import annotations

from datetime import datetime

from flask import abort, current_app, jsonify, request
from sqlalchemy import select

from .. import (
    audit,
    delivery_log,
    directory,
    publishing,
    queue,
    readership_report,
    review,
    subscriptions,
)
from ..delivery import start_send
from ..errors import (
    HTTP_TITLES,
    BulletinError,
    describe_document_error,
    describe_note,
    describe_stored,
    domain_problem,
    problem,
    stored_reason,
)
from ..extensions import db
from ..i18n import LOCALES
from ..importing import DocumentError
from ..issues import IssueDetails, edit_issue_details, import_document, issue_subject, number_label
from ..models import (
    ApiTokenRole,
    DeliveryStatus,
    EventSource,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    Topic,
)
from ..security import MAX_ID
from ..subscriptions import Consent, SubscriptionError, export_data
from ..transactions import after_commit, transaction
from . import bp
from .auth import actor, needs

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
        search=query_search(),
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


@bp.get("/issues/<int:issue_id>/readership")
def issue_readership(issue_id: int):
    """The readership figures of the staff report: counts only, nothing about who."""
    report = readership_report.issue_report(_issue(issue_id))
    return jsonify(
        issue_id=issue_id,
        counted=report.counted,
        filtered=report.filtered,
        issue_page_views=report.issue_page_views,
        left_altogether=report.left_altogether,
        window_start=iso(report.window_start),
        window_end=iso(report.window_end),
        recipients_recorded=report.recipients_recorded,
        topics=[
            {
                "topic_id": topic.topic_id,
                "name": topic.name,
                "recipients": topic.recipients,
                "unsubscribes": topic.unsubscribes,
                "clicks": topic.clicks,
                "clicks_per_thousand": topic.rate,
                "articles": [
                    {
                        "id": article.id,
                        "title": article.title,
                        "read_more": article.read_more,
                        "source": article.source,
                        "page_views": article.page_views,
                    }
                    for article in topic.articles
                ],
            }
            for topic in report.topics
        ],
    )


@bp.get("/issues/<int:issue_id>/deliveries")
@needs(ApiTokenRole.ADMIN)
def list_deliveries(issue_id: int):
    """The per-recipient log, in row order by keyset (names readers: admins only)."""
    _issue(issue_id)
    rows, next_after = delivery_log.page(
        issue_id,
        status=query_choice("status", DeliveryStatus),
        search=query_search(),
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


# --- changing things ------------------------------------------------------------------------


@bp.errorhandler(DocumentError)
def _document_refused(error: DocumentError):
    return problem(422, str(HTTP_TITLES[422]()), describe_document_error(error), code=error.code)


def json_body() -> dict:
    """The request's JSON object; 415 for another media type, 422 for anything else."""
    if not request.is_json:
        abort(415)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise _invalid("body", "must be a JSON object")
    return body


def _text(body: dict, name: str, limit: int, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(name, "is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _invalid(name, f"must be a string of at most {limit} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold it: refused here, not with a 500
        raise _invalid(name, "must not contain NUL characters")
    return value


def query_search() -> str:
    """The `q` filter: part of an address (NUL can be in no address, nor in PostgreSQL)."""
    return request.args.get("q", "")[:320].replace("\x00", "")


def _ids(body: dict, name: str, *, required: bool = False) -> list[int] | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(name, "is required")
        return None
    if (
        not isinstance(value, list)
        or len(value) > 1000
        or not all(type(item) is int and 0 < item <= MAX_ID for item in value)
    ):
        raise _invalid(name, "must be a list of ids")
    return value


def _number(body: dict, name: str, current: int | None) -> int | None:
    if name not in body:
        return current
    value = body[name]
    if value is not None and (type(value) is not int or not 0 < value < 100000):
        raise _invalid(name, "must be a positive integer or null")
    return value


def _locale(body: dict) -> str | None:
    value = _text(body, "locale", 10)
    if value is not None and value not in LOCALES:
        raise _invalid("locale", "must be one of " + ", ".join(LOCALES))
    return value


def _consent_evidence(text: str) -> Consent:
    return Consent(
        source=f"{text} ({actor().email})"[:200],
        ip=request.remote_addr,
        user_agent=request.user_agent.string,
    )


@bp.post("/subscribers")
@needs(ApiTokenRole.ADMIN)
def create_subscriber():
    """A sign-up: double opt-in (a confirmation email) or, with evidence, consented."""
    body = json_body()
    email = _text(body, "email", 320, required=True)
    name = _text(body, "name", 100) or ""
    topic_ids = _ids(body, "topics", required=True)
    locale = _locale(body) or "zh"
    mode = body.get("consent", "double-opt-in")
    if mode not in ("double-opt-in", "consented"):
        raise _invalid("consent", "must be double-opt-in or consented")
    evidence = _text(body, "evidence", 150)
    with transaction():
        if mode == "consented":
            if not (evidence or "").strip():
                raise _invalid("evidence", "is required with consent=consented")
            subscriber = subscriptions.add_consented(
                email, name, topic_ids, locale=locale,
                consent=_consent_evidence(evidence), source=EventSource.API,
            )  # fmt: skip
            emailed = False
        else:
            result = subscriptions.subscribe(
                email, name, topic_ids, locale=locale,
                consent=_consent_evidence(evidence or "api"), source=EventSource.API,
            )  # fmt: skip
            subscriber, emailed = result.subscriber, result.needs_confirmation
            if result.needs_confirmation:
                after_commit(lambda: queue.send_confirmation(result.subscriber.id))
            elif result.needs_preferences_link:
                after_commit(lambda: queue.send_preferences_link(result.subscriber.id))
        if subscriber is not None:
            audit.record("api-subscriber-create", detail=f"#{subscriber.id} {mode}")
    return jsonify(
        subscriber=subscriber_json(subscriber) if subscriber is not None else None,
        confirmation_queued=emailed,
    ), 201


@bp.patch("/subscribers/<int:subscriber_id>")
@needs(ApiTokenRole.ADMIN)
def update_subscriber(subscriber_id: int):
    body = json_body()
    topic_ids, locale, name = _ids(body, "topics"), _locale(body), _text(body, "name", 100)
    with transaction():
        subscriber = subscriptions.change_by_staff(
            subscriber_id, topic_ids=topic_ids, locale=locale, name=name, source=EventSource.API
        )
        audit.record("api-subscriber-update", detail=f"#{subscriber_id}")
    return jsonify(subscriber_json(subscriber))


@bp.post("/subscribers/<int:subscriber_id>/unsubscribe")
@needs(ApiTokenRole.ADMIN)
def unsubscribe_subscriber(subscriber_id: int):
    _subscriber(subscriber_id)
    with transaction():
        subscriber = subscriptions.unsubscribe(subscriber_id, source=EventSource.API)
        audit.record("api-subscriber-unsubscribe", detail=f"#{subscriber_id}")
    return jsonify(subscriber_json(subscriber))


@bp.delete("/subscribers/<int:subscriber_id>")
@needs(ApiTokenRole.ADMIN)
def erase_subscriber(subscriber_id: int):
    """Erase: the reader and everything naming them go; only the suppression hash stays."""
    _subscriber(subscriber_id)
    with transaction():
        subscriptions.erase(subscriber_id, source=EventSource.API)
        audit.record("api-subscriber-erase", detail=f"#{subscriber_id}")
    return "", 204


@bp.post("/issues")
@needs(ApiTokenRole.EDITOR)
def create_issue():
    """A new draft from a bulletin document (multipart `document`), with the import report."""
    upload = request.files.get("document")
    if upload is None:
        raise _invalid("document", "is required (a multipart/form-data file)")
    limit = current_app.config["IMPORT_MAX_BYTES"]
    data = upload.read(limit + 1)  # never more than the limit in memory
    with transaction():
        issue, report = import_document(data, max_bytes=limit)
        audit.record("create-issue", issue_id=issue.id, detail=issue.title)
    return jsonify(issue=issue_json(issue, articles=True), report=report_json(report)), 201


def report_json(report) -> dict:
    return {
        "format": report.format,
        "title": report.title,
        "period": report.period,
        "sections": [section.name for section in report.sections],
        "articles": len(report.articles),
        "pages": report.pages,
        # The importer's notes in the caller's language, as the staff import page says them.
        "repaired": [describe_note(note) for note in report.repaired],
        "dropped": [describe_note(note) for note in report.dropped],
        "warnings": [describe_note(note) for note in report.warnings],
        "images": report.images,
    }


@bp.patch("/issues/<int:issue_id>")
@needs(ApiTokenRole.EDITOR)
def update_issue(issue_id: int):
    """Change the masthead and envelope; what the body leaves out stays."""
    issue = _issue(issue_id)
    body = json_body()
    details = IssueDetails(
        title=_value(_text(body, "title", 1000), issue.title),
        period=_value(_text(body, "period", 1000), issue.period),
        subject=_value(_text(body, "subject", 1000), issue.subject),
        preheader=_value(_text(body, "preheader", 1000), issue.preheader),
        year=_number(body, "year", issue.year),
        number=_number(body, "number", issue.number),
        total_number=_number(body, "total_number", issue.total_number),
    )
    with transaction():
        issue = edit_issue_details(issue_id, details)
    return jsonify(issue_json(issue, articles=True))


def _value(given: str | None, current: str) -> str:
    return current if given is None else given


def _issue_action(issue_id: int, action, name: str, *, dispatch: bool = False):
    """One change of an issue's life, audited like the staff page's button; the issue back."""
    _issue(issue_id)
    with transaction():
        outcome = action()
        audit.record(name, issue_id=issue_id, detail=str(outcome) if type(outcome) is int else "")
        if dispatch:
            after_commit(lambda: queue.dispatch_issue(issue_id))
    return jsonify(issue_json(_issue(issue_id)))


@bp.post("/issues/<int:issue_id>/submit")
@needs(ApiTokenRole.EDITOR)
def submit_issue(issue_id: int):
    """送审: the reviewers are emailed, as from the staff page."""
    _issue(issue_id)
    with transaction():
        review.submit(issue_id, actor())
        for address in [user.email for user in review.reviewers(besides=actor().email)]:
            after_commit(lambda address=address: queue.send_review_request(issue_id, address))
    return jsonify(issue_json(_issue(issue_id)))


@bp.post("/issues/<int:issue_id>/approve")
@needs(ApiTokenRole.EDITOR)
def approve_issue(issue_id: int):
    """审核通过: a reviewer (an admin token) other than the submitter; review.py decides."""
    _issue(issue_id)
    with transaction():
        review.approve(issue_id, actor())
    return jsonify(issue_json(_issue(issue_id)))


@bp.post("/issues/<int:issue_id>/return")
@needs(ApiTokenRole.EDITOR)
def return_issue(issue_id: int):
    """退回修改 with a comment."""
    _issue(issue_id)
    comment = _text(json_body(), "comment", 5000, required=True)
    with transaction():
        review.return_for_changes(issue_id, actor(), comment)
    return jsonify(issue_json(_issue(issue_id)))


@bp.post("/issues/<int:issue_id>/publish")
@needs(ApiTokenRole.EDITOR)
def publish_issue(issue_id: int):
    """Start sending now (an approved issue, while review is required)."""
    return _issue_action(issue_id, lambda: start_send(issue_id, queue.dispatch_issue), "publish")


@bp.post("/issues/<int:issue_id>/schedule")
@needs(ApiTokenRole.EDITOR)
def schedule_issue(issue_id: int):
    value = _text(json_body(), "at", 64, required=True)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid("at", "must be an ISO 8601 date and time with its offset") from None
    if when.tzinfo is None:
        raise _invalid("at", "must carry its UTC offset, e.g. 2026-12-01T09:00:00+08:00")
    return _issue_action(issue_id, lambda: publishing.schedule_issue(issue_id, when), "schedule")


@bp.post("/issues/<int:issue_id>/unschedule")
@needs(ApiTokenRole.EDITOR)
def unschedule_issue(issue_id: int):
    return _issue_action(issue_id, lambda: publishing.unschedule_issue(issue_id), "unschedule")


@bp.post("/issues/<int:issue_id>/pause")
@needs(ApiTokenRole.EDITOR)
def pause_issue(issue_id: int):
    reason = stored_reason("paused-by", actor().email)
    return _issue_action(issue_id, lambda: publishing.pause_issue(issue_id, reason), "pause")


@bp.post("/issues/<int:issue_id>/resume")
@needs(ApiTokenRole.EDITOR)
def resume_issue(issue_id: int):
    return _issue_action(
        issue_id, lambda: publishing.resume_issue(issue_id), "resume", dispatch=True
    )


@bp.post("/issues/<int:issue_id>/cancel")
@needs(ApiTokenRole.EDITOR)
def cancel_issue(issue_id: int):
    """Cancel for good: readers not yet sent to are skipped."""
    return _issue_action(issue_id, lambda: publishing.cancel_issue(issue_id), "cancel")
