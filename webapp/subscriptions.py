"""Subscribe, confirm, change topics, unsubscribe.

Functions here flush and let the caller commit, so a view or task decides where the
transaction ends; emails are sent by the caller only after that commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select

from .extensions import db
from .mailer import clean_display_name
from .models import Subscriber, SubscriberStatus, Topic, utcnow


class SubscriptionError(ValueError):
    """Input a reader can fix: the message says what is wrong, `field` which input."""

    def __init__(self, message: str, field: str = "email"):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SubscribeResult:
    subscriber: Subscriber
    needs_confirmation: bool  # the caller sends the confirmation email after committing


def normalize_email(address: str) -> str:
    """Validate an address (syntax only, no DNS) and return it lower-cased."""
    try:
        checked = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriptionError(f"not a valid email address: {exc}") from None
    return checked.normalized.lower()


def active_topics(topic_ids: set[int] | list[int]) -> list[Topic]:
    if not topic_ids:
        raise SubscriptionError("choose at least one section", field="topics")
    topics = db.session.scalars(
        select(Topic)
        .where(Topic.id.in_(topic_ids), Topic.active.is_(True))
        .order_by(Topic.position)
    ).all()
    if len(topics) != len(set(topic_ids)):
        raise SubscriptionError("one of the chosen sections does not exist", field="topics")
    return list(topics)


def subscribe(email: str, name: str, topic_ids: set[int] | list[int]) -> SubscribeResult:
    """Record a sign-up: a new or returning address becomes pending with these topics.

    An active reader keeps their status (their topic choice is updated); everyone else
    must confirm by email before getting any bulletin.
    """
    address = normalize_email(email)
    topics = active_topics(topic_ids)
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == address))
    if subscriber is None:
        subscriber = Subscriber(email=address, status=SubscriberStatus.PENDING)
        db.session.add(subscriber)
    subscriber.name = clean_display_name(name)
    subscriber.topics = topics
    needs_confirmation = subscriber.status != SubscriberStatus.ACTIVE
    if needs_confirmation:
        subscriber.status = SubscriberStatus.PENDING
    db.session.flush()
    return SubscribeResult(subscriber, needs_confirmation)


def confirm(subscriber_id: int) -> Subscriber:
    """Make a pending reader active (idempotent for one who already is)."""
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise SubscriptionError("this subscription no longer exists")
    if subscriber.status == SubscriberStatus.PENDING:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = utcnow()
    db.session.flush()
    return subscriber


def unsubscribe(subscriber_id: int, topic_id: int | None = None) -> Subscriber | None:
    """Stop everything, or just one section (`topic_id`). Idempotent; unknown ids are a no-op.

    Leaving the last section is leaving altogether.
    """
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    if topic_id is not None:
        subscriber.topics = [t for t in subscriber.topics if t.id != topic_id]
        if subscriber.topics:
            db.session.flush()
            return subscriber
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = utcnow()
    db.session.flush()
    return subscriber
