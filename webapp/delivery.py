"""Plan a send, claim a batch, record results: the never-twice rules live here.

The database is the ledger. Publishing inserts one `Delivery` row per eligible reader in the
same transaction that moves the issue to `sending`; the unique (issue, subscriber) pair means
nobody can be planned twice. A worker *claims* rows before sending (pending -> sending with a
lease), so a second worker, or a redelivered Celery task, finds nothing left to claim, and
it writes each result as soon as the server answers, so a crash loses at most the one
message in flight, which is then marked `unknown` rather than resent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parseaddr

from flask import current_app
from sqlalchemy import DateTime, Integer, String, func, insert, literal, select, update

from .digests import Recipient, compose
from .extensions import db
from .issues import issue_topic_ids
from .mailer import (
    MailerError,
    Outcome,
    SendResult,
    SmtpSession,
)
from .models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    subscriber_topics,
    utcnow,
)

LEASE = timedelta(minutes=5)
OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


class PublishError(RuntimeError):
    """The issue cannot be published in its current state; the message says why."""


@dataclass
class BatchResult:
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    retry_ids: list[int] = field(default_factory=list)  # temporary failures, to try again


def publish_issue(issue_id: int) -> int:
    """Move a draft or scheduled issue to `sending` and plan one delivery per eligible reader.

    Returns how many readers were planned. The status change is a conditional UPDATE, so of
    two publishers racing (or a double click) exactly one wins; the other gets PublishError.
    Flushes only: the caller commits and then enqueues `tasks.sending.dispatch_issue`.
    """
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        raise PublishError(f"issue {issue_id} does not exist")
    topic_ids = issue_topic_ids(issue_id)
    if not topic_ids:
        raise PublishError(f"issue {issue_id} has no articles")
    now = utcnow()
    moved = db.session.execute(
        update(Issue)
        .where(Issue.id == issue_id, Issue.status.in_([IssueStatus.DRAFT, IssueStatus.SCHEDULED]))
        .values(status=IssueStatus.SENDING, published_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        db.session.refresh(issue)
        raise PublishError(f"issue {issue_id} is already {issue.status.value}")
    db.session.refresh(issue)
    return plan_deliveries(issue_id, topic_ids)


def plan_deliveries(issue_id: int, topic_ids: set[int]) -> int:
    """Insert a pending Delivery for every active reader of at least one of `topic_ids`.

    One INSERT ... SELECT: the database streams the subscribers, so memory does not grow
    with the list.
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
    # Counted, not read from rowcount: drivers disagree on rowcount for INSERT ... SELECT.
    return db.session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue_id)
    )


def pending_batches(issue_id: int, size: int) -> Iterator[list[int]]:
    """Ids of this issue's pending deliveries, in batches, read in keyset pages."""
    last_id = 0
    while True:
        ids = list(
            db.session.scalars(
                select(Delivery.id)
                .where(
                    Delivery.issue_id == issue_id,
                    Delivery.status == DeliveryStatus.PENDING,
                    Delivery.id > last_id,
                )
                .order_by(Delivery.id)
                .limit(size)
            )
        )
        if not ids:
            return
        yield ids
        last_id = ids[-1]


def claim(delivery_ids: list[int]) -> list[int]:
    """Atomically take the still-pending rows among `delivery_ids` (or expired leases).

    Concurrent claimers of the same rows serialize on the row locks; the loser's WHERE
    no longer matches, so each row is claimed once.
    """
    now = utcnow()
    claimed = db.session.scalars(
        update(Delivery)
        .where(
            Delivery.id.in_(delivery_ids),
            (Delivery.status == DeliveryStatus.PENDING)
            | ((Delivery.status == DeliveryStatus.SENDING) & (Delivery.lease_expires_at < now)),
        )
        .values(
            status=DeliveryStatus.SENDING,
            lease_expires_at=now + LEASE,
            attempts=Delivery.attempts + 1,
            updated_at=now,
        )
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(claimed)


def smtp_session() -> SmtpSession:
    config = current_app.config
    return SmtpSession(
        config["SMTP_HOST"],
        config["SMTP_PORT"],
        username=config["SMTP_USERNAME"],
        password=config["SMTP_PASSWORD"],
        starttls=config["SMTP_STARTTLS"],
        timeout=config["SMTP_TIMEOUT"],
    )


def _record(delivery_id: int, status: DeliveryStatus, reply: str, message_id: str = "") -> None:
    now = utcnow()
    values = {
        "status": status,
        "smtp_reply": reply[:1000],
        "updated_at": now,
        "lease_expires_at": None,
    }
    if message_id:
        values["message_id"] = message_id
    if status == DeliveryStatus.SENT:
        values["sent_at"] = now
    db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    # Written before the next message goes out: a crash after this point cannot resend it.
    db.session.commit()


def _release(delivery_ids: list[int]) -> None:
    """Give claimed rows back (a temporary problem): they go out on the retry."""
    if delivery_ids:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.SENDING)
            .values(status=DeliveryStatus.PENDING, lease_expires_at=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    db.session.commit()


def send_batch(issue_id: int, delivery_ids: list[int]) -> BatchResult:
    """Claim these deliveries, send each over one SMTP connection and record every answer.

    Safe to run twice with the same ids: rows already claimed or finished are not touched.
    Raises MailerError (after releasing the claim) when the SMTP server cannot be reached.
    """
    result = BatchResult()
    status = db.session.scalar(select(Issue.status).where(Issue.id == issue_id))
    if status != IssueStatus.SENDING:
        return result
    claimed = claim(delivery_ids)
    db.session.commit()
    if not claimed:
        return result
    issue_topics = issue_topic_ids(issue_id)
    readers = _recipients(claimed)
    chosen = _chosen_topics([r.subscriber_id for r in readers])

    envelope_from = parseaddr(current_app.config["MAIL_FROM"])[1]
    remaining = [r.delivery_id for r in readers]
    session = smtp_session()
    try:
        for reader in readers:
            topic_ids = frozenset(chosen.get(reader.subscriber_id, set()) & issue_topics)
            # Re-checked at send time: the reader may have left since the issue was planned.
            if not reader.active or not topic_ids:
                _record(reader.delivery_id, DeliveryStatus.SKIPPED, "reader left before sending")
                result.skipped += 1
                remaining.remove(reader.delivery_id)
                continue
            message_id, data = compose(issue_id, reader, topic_ids)
            outcome = session.send(envelope_from, reader.email, data)
            remaining.remove(reader.delivery_id)
            _apply(reader, outcome, message_id, result)
    except MailerError:
        _release(remaining)
        raise
    finally:
        session.close()
    finish_if_done(issue_id)
    return result


def _recipients(delivery_ids: list[int]) -> list[Recipient]:
    rows = db.session.execute(
        select(
            Delivery.id,
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.locale,
            Subscriber.status,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(delivery_ids))
        .order_by(Delivery.id)
    ).all()
    return [
        Recipient(d, s, email, name, locale, status == SubscriberStatus.ACTIVE)
        for d, s, email, name, locale, status in rows
    ]


def _chosen_topics(subscriber_ids: list[int]) -> dict[int, set[int]]:
    chosen: dict[int, set[int]] = {}
    rows = db.session.execute(
        select(subscriber_topics.c.subscriber_id, subscriber_topics.c.topic_id).where(
            subscriber_topics.c.subscriber_id.in_(subscriber_ids)
        )
    )
    for subscriber_id, topic_id in rows:
        chosen.setdefault(subscriber_id, set()).add(topic_id)
    return chosen


def _apply(reader: Recipient, outcome: SendResult, message_id: str, result: BatchResult) -> None:
    delivery_id = reader.delivery_id
    if outcome.outcome == Outcome.SENT:
        _record(delivery_id, DeliveryStatus.SENT, outcome.reply, message_id)
        result.sent += 1
    elif outcome.outcome == Outcome.AMBIGUOUS:
        _record(delivery_id, DeliveryStatus.UNKNOWN, outcome.reply, message_id)
        result.unknown += 1
    elif outcome.outcome == Outcome.TEMPORARY:
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(
                status=DeliveryStatus.PENDING,
                smtp_reply=outcome.reply[:1000],
                lease_expires_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        result.retry_ids.append(delivery_id)
    else:
        if outcome.outcome == Outcome.PERMANENT:
            # A hard bounce: this address is not mailed again.
            db.session.execute(
                update(Subscriber)
                .where(Subscriber.id == reader.subscriber_id)
                .values(status=SubscriberStatus.BOUNCED)
                .execution_options(synchronize_session=False)
            )
        _record(delivery_id, DeliveryStatus.FAILED, outcome.reply)
        result.failed += 1


def finish_if_done(issue_id: int) -> bool:
    """Mark the issue sent once none of its deliveries is pending or in flight."""
    open_rows = db.session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.status.in_(OPEN_STATUSES))
    )
    if open_rows:
        return False
    now = utcnow()
    db.session.execute(
        update(Issue)
        .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING)
        .values(status=IssueStatus.SENT, sent_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return True


def progress(issue_id: int) -> dict[str, int]:
    """Delivery counts by status for one issue."""
    counts = dict(
        db.session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.issue_id == issue_id)
            .group_by(Delivery.status)
        ).all()
    )
    return {status.value: counts.get(status, 0) for status in DeliveryStatus}
