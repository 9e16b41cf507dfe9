"""An issue's sending life: publish (now or scheduled), pause, resume, cancel, finish.

Every change of an issue's status is one conditional UPDATE ("from these statuses to that
one"), so two staff members, two browser tabs or a double click cannot both win: the loser
gets `PublishError` (the web answers 409). Functions flush and let the caller commit
(`transactions.transaction`); a send is started with `delivery.start_send`, which hands the
issue to the workers only once the caller's transaction commits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, Integer, String, func, insert, literal, select, text, update

from . import audit, counters, identity, readership, review, webhooks
from .errors import BulletinError, stored_reason
from .extensions import db
from .i18n import topic_name
from .issues import issue_topic_ids
from .models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    ReviewStage,
    Subscriber,
    SubscriberStatus,
    Topic,
    subscriber_topics,
    utcnow,
)

OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


class PublishError(BulletinError):
    """The issue cannot do this in its current state; the code says why."""


class NotApproved(PublishError):
    """Review is required and the issue is not approved (see `review`)."""


class IdentityIncomplete(PublishError):
    """In production, the publication's postal address is empty (see `identity`)."""


def _refuse_without_identity() -> None:
    try:
        identity.ensure_publishable()
    except identity.IdentityError as exc:
        raise IdentityIncomplete(exc.code, **exc.params) from None


def _approved_only(issue_id: int):
    """The UPDATE condition that holds an unapproved issue back while review is required.

    Part of the status move itself, not a check before it: an edit that withdraws the
    approval holds the row (`issues.claim_for_edit`), so the two cannot interleave."""
    if not review.review_required():
        return None
    return Issue.review_stage == ReviewStage.APPROVED


def _refuse_unapproved(issue_id: int) -> None:
    issue = db.session.get(Issue, issue_id)
    try:
        review.ensure_approved(issue)
    except review.ReviewError as exc:
        raise NotApproved(exc.code, **exc.params) from None


def _move(
    issue_id: int, allowed: tuple[IssueStatus, ...], to: IssueStatus, *, condition=None, **values
) -> Issue:
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        raise PublishError("issue-missing", id=issue_id)
    now = utcnow()
    where = [Issue.id == issue_id, Issue.status.in_(allowed)]
    if condition is not None:
        where.append(condition)
    moved = db.session.execute(
        update(Issue)
        .where(*where)
        .values(status=to, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(issue)
    if moved != 1:
        if issue.status in allowed and condition is not None:
            _refuse_unapproved(issue_id)
        raise PublishError("issue-status", id=issue_id, status=issue.status)
    return issue


def publish_issue(issue_id: int) -> int:
    """Move a draft or scheduled issue to `sending` and plan one delivery per eligible reader.

    Returns how many readers were planned. The status change and the plan are in the
    caller's one transaction: either both happen or neither. The sections are read after
    the status change, which holds the issue's row, so an article edit cannot slip a new
    section in between. In production, refused (`IdentityIncomplete`) while the
    publication has no postal address.
    """
    _refuse_without_identity()
    _move(
        issue_id,
        (IssueStatus.DRAFT, IssueStatus.SCHEDULED),
        IssueStatus.SENDING,
        condition=_approved_only(issue_id),
        published_at=utcnow(),
        scheduled_at=None,
    )
    topic_ids = issue_topic_ids(issue_id)
    if not topic_ids:
        raise PublishError("issue-empty", id=issue_id)
    planned = plan_deliveries(issue_id, topic_ids)
    readership.record_recipients(issue_id, topic_ids)
    webhooks.emit("issue.sent", _issue_data(issue_id, recipients=planned))
    return planned


def schedule_issue(issue_id: int, when: datetime) -> Issue:
    """Publish automatically at `when` (the sweeper publishes due issues). Refused like
    `publish_issue` while a production site has no postal address."""
    _refuse_without_identity()
    if when <= utcnow():
        raise PublishError("schedule-past")
    if not issue_topic_ids(issue_id):
        raise PublishError("issue-empty", id=issue_id)
    return _move(
        issue_id, (IssueStatus.DRAFT, IssueStatus.SCHEDULED), IssueStatus.SCHEDULED,
        condition=_approved_only(issue_id), scheduled_at=when,
    )  # fmt: skip


def unschedule_issue(issue_id: int) -> Issue:
    return _move(issue_id, (IssueStatus.SCHEDULED,), IssueStatus.DRAFT, scheduled_at=None)


def refuse_due(issue_id: int, reason: str) -> None:
    """The sweeper could not publish a due issue for want of approval or of a postal
    address: back to draft, with the reason in the audit log, instead of trying again every
    sweep."""
    try:
        unschedule_issue(issue_id)
    except PublishError:
        return  # staff unscheduled or cancelled it meanwhile
    audit.record("schedule-refused", issue_id=issue_id, detail=reason)


def due_issues() -> list[int]:
    return list(
        db.session.scalars(
            select(Issue.id).where(
                Issue.status == IssueStatus.SCHEDULED, Issue.scheduled_at <= utcnow()
            )
        )
    )


def pause_issue(issue_id: int, reason: str = "") -> Issue:
    """Stop sending; workers finish the message on the wire and give their rows back."""
    issue = _move(issue_id, (IssueStatus.SENDING,), IssueStatus.PAUSED, pause_reason=reason[:500])
    webhooks.emit("issue.paused", _issue_data(issue_id, reason=reason))
    return issue


def resume_issue(issue_id: int) -> Issue:
    return _move(issue_id, (IssueStatus.PAUSED,), IssueStatus.SENDING, pause_reason="")


def cancel_issue(issue_id: int) -> int:
    """Stop for good: rows not yet sent become `skipped`. Returns how many were skipped."""
    _move(
        issue_id,
        (IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SCHEDULED),
        IssueStatus.CANCELLED,
    )
    return db.session.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.PENDING)
        .values(
            status=DeliveryStatus.SKIPPED,
            smtp_reply=stored_reason("send-cancelled"),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    ).rowcount


def resend(issue_id: int, status: DeliveryStatus) -> int:
    """Try `failed` or `unknown` rows again (staff decide: an unknown one may be a duplicate).

    Readers who have left since are not brought back: the send re-checks every reader.
    """
    if status not in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
        raise PublishError("resend-status", status=str(status))
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        raise PublishError("issue-missing", id=issue_id)
    if issue.status == IssueStatus.CANCELLED:
        raise PublishError("issue-status", id=issue_id, status=issue.status)
    count = db.session.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.status == status)
        .values(
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=None,
            queued_at=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if count and issue.status == IssueStatus.SENT:
        _move(issue_id, (IssueStatus.SENT,), IssueStatus.SENDING)
    return count


def plan_deliveries(issue_id: int, topic_ids: set[int]) -> int:
    """Insert a pending Delivery for every active reader of at least one of `topic_ids`.

    One INSERT ... SELECT: the database streams the subscribers, so memory stays flat
    however long the list. Readers who left, bounced or complained are not active.
    """
    now = utcnow()
    chooses_a_topic = select(subscriber_topics.c.subscriber_id).where(
        subscriber_topics.c.topic_id.in_(topic_ids)
    )
    readers = select(
        literal(issue_id, Integer),
        Subscriber.id,
        literal(DeliveryStatus.PENDING.value, String),
        literal(0, Integer),
        literal("", String),
        literal("", String),
        literal(now, DateTime(timezone=True)),
        literal(now, DateTime(timezone=True)),
    ).where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id.in_(chooses_a_topic))
    columns = [
        "issue_id",
        "subscriber_id",
        "status",
        "attempts",
        "smtp_reply",
        "message_id",
        "created_at",
        "updated_at",
    ]
    db.session.execute(insert(Delivery).from_select(columns, readers))
    if db.engine.dialect.name == "postgresql":
        # The planner knows nothing yet of the rows just inserted: it took the new issue
        # for a small one, and claimed each batch by reading every pending row through the
        # (issue, status) index instead of its 500 ids by key (170 ms a batch at 1,000,000
        # readers) until autovacuum caught up. ANALYZE samples; it costs well under a second.
        db.session.execute(text("ANALYZE deliveries"))
    # Counted, not read from rowcount: drivers disagree on rowcount for INSERT ... SELECT.
    return db.session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue_id)
    )


def finish_if_done(issue_id: int) -> bool:
    """Mark a sending issue sent once none of its deliveries is pending or in flight (flushed:
    the caller commits). True when nothing is left."""
    # Every batch asks: look for one open row, not count them (a count reads every open
    # row's index entry, which adds up to quadratic work over a 1,000,000-reader send).
    open_row = db.session.scalar(
        select(Delivery.id)
        .where(Delivery.issue_id == issue_id, Delivery.status.in_(OPEN_STATUSES))
        .limit(1)
    )
    if open_row is not None:
        return False
    now = utcnow()
    finished = db.session.execute(
        update(Issue)
        .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING)
        .values(status=IssueStatus.SENT, sent_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if finished:  # this call, and no other, marked it sent
        webhooks.emit("issue.finished", _issue_data(issue_id, counts=progress(issue_id)))
    return True


def _issue_data(issue_id: int, **more) -> dict:
    """An issue as webhook events describe it."""
    issue = db.session.get(Issue, issue_id)
    db.session.refresh(issue)
    return {"issue": {"id": issue.id, "title": issue.title, "status": issue.status.value, **more}}


def progress(issue_id: int) -> dict[str, int]:
    """Delivery counts by status for one issue, from the maintained counters (counters.py):
    the sending page polls this every second, and an issue can have a million rows."""
    return progress_many([issue_id])[issue_id]


def progress_many(issue_ids: list[int]) -> dict[int, dict[str, int]]:
    """`progress` for several issues in one query (the dashboard's list)."""
    return {
        issue_id: {status.value: counts.get(status.value, 0) for status in DeliveryStatus}
        for issue_id, counts in counters.deliveries(issue_ids).items()
    }


def audience(issue_id: int) -> tuple[int, list[tuple[str, int]]]:
    """Who would get the issue if it were published now: (readers, [(section, readers)]),
    each section by its name in the page's language."""
    topic_ids = issue_topic_ids(issue_id)
    active = Subscriber.status == SubscriberStatus.ACTIVE
    per_section = db.session.execute(
        select(Topic.name, Topic.name_en, func.count(subscriber_topics.c.subscriber_id))
        .join(subscriber_topics, subscriber_topics.c.topic_id == Topic.id)
        .join(Subscriber, Subscriber.id == subscriber_topics.c.subscriber_id)
        .where(Topic.id.in_(topic_ids), active)
        .group_by(Topic.id, Topic.name, Topic.name_en, Topic.position)
        .order_by(Topic.position)
    ).all()
    total = db.session.scalar(
        select(func.count(func.distinct(subscriber_topics.c.subscriber_id)))
        .join(Subscriber, Subscriber.id == subscriber_topics.c.subscriber_id)
        .where(subscriber_topics.c.topic_id.in_(topic_ids), active)
    )
    return total or 0, [(topic_name(row), row[2]) for row in per_section]


RATE_WINDOW_SECONDS = 30


def send_rate(issue_id: int, seconds: int = RATE_WINDOW_SECONDS) -> float:
    """Messages per second over the last `seconds` of sending, from the rows' sent times.

    The window never reaches back before the first message: a run that started 10 s ago
    and sent 240 messages is sending 24 a second, not 240/30 = 8. Once the issue is no
    longer sending or paused, the window ends at its last message, so the finished page
    shows the pace it ran at rather than one decaying towards zero.
    """
    first, last = db.session.execute(
        select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
            Delivery.issue_id == issue_id, Delivery.sent_at.is_not(None)
        )
    ).one()
    if first is None:
        return 0.0
    first, last = _aware(first), _aware(last)
    status = db.session.scalar(select(Issue.status).where(Issue.id == issue_id))
    end = utcnow() if status in (IssueStatus.SENDING, IssueStatus.PAUSED) else last
    start = max(end - timedelta(seconds=seconds), first)
    recent = db.session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.sent_at >= start, Delivery.sent_at <= end)
    )
    # Answers are written in bulk (SEND_FLUSH_EVERY), so a run's first rows share one time:
    # a span under a second would turn one flush into thousands a second.
    return (recent or 0) / max((end - start).total_seconds(), 1.0)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sending_figures(issue_id: int) -> dict:
    """What the sending page shows: counts, how many of all rows are settled, the rate over
    the last `RATE_WINDOW_SECONDS` and the seconds left at that rate (None when unknown)."""
    counts = progress(issue_id)
    total = sum(counts.values())
    left = counts["pending"] + counts["sending"]
    rate = send_rate(issue_id)
    return {
        "counts": counts,
        "total": total,
        "done": total - left,
        "percent": round(100 * (total - left) / total) if total else 0,
        "rate": rate,
        "seconds_left": round(left / rate) if rate and left else None,
    }
