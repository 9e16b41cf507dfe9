"""Subscribe, confirm, change topics, unsubscribe, suppress, erase, and export a reader's data.

Functions here flush and let the caller commit, so a view or task decides where the
transaction ends; emails are sent by the caller only after that commit. Every change to a
reader is written to `subscriber_events`, whose details never hold the address or the name:
they outlive an erased reader.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from sqlalchemy import Table, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from . import readership, webhooks
from .errors import BulletinError
from .extensions import db
from .i18n import normalize_locale
from .mailer import clean_display_name
from .models import (
    ConsentMethod,
    Delivery,
    EventKind,
    EventSource,
    Issue,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    Topic,
    subscriber_topics,
    utcnow,
)
from .tokens import ReaderLink, reader_payload

# Line breaks and other control characters (and the Unicode line separators).
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
# However often an address is submitted, it gets a sign-up email (its confirmation, or an active
# reader's preferences link) at most once in RESEND_AFTER and at most EMAILS_PER_DAY times in a
# day: a reader whose first email went to spam can ask again, nobody can flood an inbox.
RESEND_AFTER = timedelta(minutes=10)
EMAILS_PER_DAY = 3
DAY = timedelta(hours=24)
# Readers who left (or whose mail bounced) come back only through a new confirmation.
LEFT = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


class SubscriptionError(BulletinError):
    """Input a reader can fix: the code says what is wrong, `field` which input."""


@dataclass(frozen=True)
class Consent:
    """Evidence of a sign-up, gathered by the caller (domain code never reads the request)."""

    source: str  # "web-form v1", "csv import by staff@example.org", "cli import"
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class SubscribeResult:
    # None when nothing was stored (a suppressed address). Callers must not show the reader
    # anything that depends on it: only `needs_confirmation` decides whether an email goes.
    subscriber: Subscriber | None
    needs_confirmation: bool  # the caller sends the confirmation email after committing
    # An active reader signed up again: the caller emails them their preferences link.
    needs_preferences_link: bool = False

    @property
    def email_due(self) -> str:
        """The email this sign-up calls for: "confirmation", "preferences-link" or ""."""
        if self.needs_confirmation:
            return "confirmation"
        return "preferences-link" if self.needs_preferences_link else ""


def normalize_email(address: str) -> str:
    """Validate an address (syntax only, no DNS) and return it lower-cased.

    Non-ASCII before the @ is refused: mailing it needs SMTPUTF8 all the way, which Bulletin
    does not send. Non-ASCII domains are fine (they travel in their xn-- form).
    """
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if at and len(local) <= 64 and _DOT_ATOM.fullmatch(local):
        # The common case, a plain local part: email-validator's answer for it depends only on
        # the domain, checked once per domain. A 200,000-row import spends 2 s here instead of
        # 28 (tests/test_subscriptions.py checks both ways agree).
        checked_domain, ascii_length = _checked_domain(domain)
        if len(local) + 1 + ascii_length <= 254:
            return f"{local}@{checked_domain}".lower()
    return _validated(address).normalized.lower()


# RFC 5322 dot-atom in ASCII: what email-validator accepts before the @ without quoting.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@functools.lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> tuple[str, int]:
    """The domain as email-validator normalizes it, and the length of its ASCII form
    (raises SubscriptionError if it is invalid)."""
    checked = _validated(f"a@{domain}")
    return checked.domain, len(checked.ascii_domain)


def _validated(address: str) -> ValidatedEmail:
    try:
        return validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise SubscriptionError("email-invalid", field="email", detail=str(exc)) from None


def email_hash(address: str) -> str:
    """The SHA-256 hex digest of the normalized address: how a suppression is recognised."""
    try:
        address = normalize_email(address)
    except SubscriptionError:
        address = address.strip().lower()
    return hash_normalized(address)


def hash_normalized(address: str) -> str:
    """`email_hash` for an address that `normalize_email` already returned."""
    return hashlib.sha256(address.encode("utf-8")).hexdigest()


def is_suppressed(email: str) -> bool:
    """Whether this address must never be signed up or mailed again."""
    return _has_suppression(email_hash(email))


def _has_suppression(digest: str) -> bool:
    found = db.session.scalar(select(Suppression.id).where(Suppression.email_hash == digest))
    return found is not None


def insert_ignoring_conflicts(table: Table):
    """An INSERT that skips rows whose unique key already exists, on PostgreSQL and SQLite.

    Two requests signing up the same new address, or an import racing a sign-up, then both
    succeed instead of one failing on the unique constraint.
    """
    dialect = db.session.get_bind().dialect.name
    dialects = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    if dialect not in dialects:
        raise NotImplementedError(f"no INSERT ... ON CONFLICT DO NOTHING for {dialect}")
    return dialects[dialect](table).on_conflict_do_nothing()


def log_event(subscriber_id: int | None, kind: EventKind, source: str, **detail: Any) -> None:
    """Add one event to the log. `detail` must hold no personal data (ids, counts, names of
    fields are fine; addresses, names, IPs are not)."""
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else ""
    db.session.add(
        SubscriberEvent(
            subscriber_id=subscriber_id, kind=kind, source=str(source)[:20], detail=text
        )
    )
    # The readership report's unsubscribes per section, counted as they happen: a reader
    # who leaves altogether counts for every section they had (their sections are kept).
    if kind == EventKind.TOPICS_CHANGED:
        readership.count_departures(detail.get("removed", []))
    elif kind == EventKind.UNSUBSCRIBED:
        had = db.session.scalars(
            select(subscriber_topics.c.topic_id).where(
                subscriber_topics.c.subscriber_id == subscriber_id
            )
        )
        readership.count_departures([readership.LEFT_ALTOGETHER, *had])


def active_topics(topic_ids: set[int] | list[int]) -> list[Topic]:
    if not topic_ids:
        raise SubscriptionError("topics-none", field="topics")
    topics = db.session.scalars(
        select(Topic)
        .where(Topic.id.in_(topic_ids), Topic.active.is_(True))
        .order_by(Topic.position)
    ).all()
    if len(topics) != len(set(topic_ids)):
        raise SubscriptionError("topics-unknown", field="topics")
    return list(topics)


def _one_line(text: str | None, limit: int) -> str | None:
    """Evidence as the client sent it, on one line and within its column (None if empty):
    a browser's user agent is its own text, and must not break the export or the logs."""
    return _CONTROL_CHARS.sub(" ", text or "").strip()[:limit] or None


def record_consent(subscriber: Subscriber, consent: Consent, method: ConsentMethod) -> None:
    """Store the evidence of consent on the reader, overwriting older evidence."""
    subscriber.consented_at = utcnow()
    subscriber.consent_ip = _ip_or_none(consent.ip)
    subscriber.consent_user_agent = _one_line(consent.user_agent, 300)
    subscriber.consent_source = _one_line(consent.source, 200)
    subscriber.consent_method = method


def _ip_or_none(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def _find_or_create(address: str) -> tuple[Subscriber, bool]:
    """The reader with this address, created pending when there is none; (reader, created)."""
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == address))
    if subscriber is not None:
        return subscriber, False
    new_id = db.session.scalar(
        insert_ignoring_conflicts(Subscriber.__table__)
        .values(email=address, status=SubscriberStatus.PENDING)
        .returning(Subscriber.id)
    )
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == address))
    return subscriber, new_id is not None


def _set_topics(subscriber: Subscriber, topics: list[Topic], source: str) -> None:
    """Give the reader exactly these topics, and log the change if there is one."""
    before = {t.id for t in subscriber.topics}
    after = {t.id for t in topics}
    subscriber.topics = topics
    if before != after:
        log_event(
            subscriber.id,
            EventKind.TOPICS_CHANGED,
            source,
            added=sorted(after - before),
            removed=sorted(before - after),
        )


def reader_for_link(link: ReaderLink) -> Subscriber | None:
    """The reader a signed link belongs to, or None when that reader is gone.

    A link carries the reader's random key, so it dies with them. Links signed before keys
    existed (no key) still work until they expire, but only for a reader whose row is older
    than the link: a reader created after the link was signed cannot be the one it was
    sent to (on SQLite, before ids stopped being reused, they could share its id).
    """
    subscriber = db.session.get(Subscriber, link.subscriber_id)
    if subscriber is None:
        return None
    if link.key is not None:
        same = hmac.compare_digest(link.key.encode(), subscriber.link_key.encode())
        return subscriber if same else None
    # Link times are whole seconds, so compare in whole seconds: a link signed in the same
    # second as the row was created is the reader's own confirmation link.
    created = int(subscriber.created_at.timestamp())
    return subscriber if link.signed_at.timestamp() >= created else None


def link_payload(subscriber: Subscriber) -> dict:
    """The payload to sign into a link to this reader."""
    return reader_payload(subscriber.id, subscriber.link_key)


def claim_confirmation(
    subscriber: Subscriber,
    status: SubscriberStatus = SubscriberStatus.PENDING,
    source: str = EventSource.WEB,
) -> bool:
    """Reserve the right to email this reader about their sign-up now, and log it (a
    `CONFIRMATION_SENT` event, which `release_claim` takes back if the email never leaves).

    True only while they are in `status`, at least RESEND_AFTER after the last such email and
    for at most EMAILS_PER_DAY of them in 24 hours. A conditional UPDATE, so of many
    concurrent sign-ups of one address exactly one is told to send.
    """
    db.session.flush()
    now = utcnow()
    emailed_today = (
        select(func.count())
        .select_from(SubscriberEvent)
        .where(
            SubscriberEvent.subscriber_id == subscriber.id,
            SubscriberEvent.kind == EventKind.CONFIRMATION_SENT,
            SubscriberEvent.created_at > now - DAY,
        )
        .scalar_subquery()
    )
    claimed = db.session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber.id,
            Subscriber.status == status,
            or_(
                Subscriber.confirmation_sent_at.is_(None),
                Subscriber.confirmation_sent_at <= now - RESEND_AFTER,
            ),
            emailed_today < EMAILS_PER_DAY,
        )
        .values(confirmation_sent_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(subscriber, ["confirmation_sent_at", "updated_at"])
    if claimed == 1:
        email = "confirmation" if status == SubscriberStatus.PENDING else "preferences-link"
        log_event(subscriber.id, EventKind.CONFIRMATION_SENT, source, email=email)
    return claimed == 1


def release_claim(subscriber_id: int) -> None:
    """Take back a claim whose email never left (see tasks.mail): the stamp is cleared and
    its CONFIRMATION_SENT event removed, so the reader's next sign-up may ask again."""
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return
    subscriber.confirmation_sent_at = None
    last = db.session.scalar(
        select(SubscriberEvent)
        .where(
            SubscriberEvent.subscriber_id == subscriber_id,
            SubscriberEvent.kind == EventKind.CONFIRMATION_SENT,
        )
        .order_by(SubscriberEvent.created_at.desc(), SubscriberEvent.id.desc())
        .limit(1)
    )
    if last is not None:
        db.session.delete(last)
    db.session.flush()


def subscribe(
    email: str,
    name: str,
    topic_ids: set[int] | list[int],
    *,
    locale: str = "zh",
    consent: Consent | None = None,
    source: str = EventSource.WEB,
) -> SubscribeResult:
    """Record a sign-up. The outcome is invisible to the person submitting the form.

    - a suppressed address: nothing is stored and no email goes;
    - a new, pending or departed (unsubscribed, bounced, complained) address becomes pending
      with these topics and this consent evidence, and must confirm by email;
    - an active reader keeps everything; they are emailed their preferences link instead
      (`needs_preferences_link`), since whoever submitted the form may not be them.
      (Anyone can send the form, so it does not rename a confirmed reader: names change
      through the signed preferences link, `update_preferences`.)

    `needs_confirmation` is True only when a confirmation email should go now (see
    `claim_confirmation` for how often); the caller sends it after committing.
    """
    address = normalize_email(email)
    topics = active_topics(topic_ids)
    if _has_suppression(hash_normalized(address)):
        return SubscribeResult(None, False)
    subscriber, created = _find_or_create(address)
    previous = subscriber.status
    if previous == SubscriberStatus.ACTIVE:
        # Anyone can type an address into the form: an active reader's choices change only
        # through their signed preferences link, which we email them (as often as a
        # confirmation: claim_confirmation).
        notify = claim_confirmation(subscriber, SubscriberStatus.ACTIVE, source)
        return SubscribeResult(subscriber, False, needs_preferences_link=notify)

    subscriber.name = clean_display_name(name)
    subscriber.locale = normalize_locale(locale)
    subscriber.topics = topics
    subscriber.status = SubscriberStatus.PENDING
    record_consent(subscriber, consent or Consent(source=str(source)), ConsentMethod.DOUBLE_OPT_IN)
    detail: dict[str, Any] = {"topics": [t.id for t in topics]}
    if not created:
        detail["was"] = previous.value
    log_event(subscriber.id, EventKind.SUBSCRIBED, source, **detail)
    return SubscribeResult(subscriber, claim_confirmation(subscriber, source=source))


def add_consented(
    email: str,
    name: str,
    topic_ids: set[int] | list[int],
    *,
    locale: str = "zh",
    consent: Consent,
    source: str,
) -> Subscriber | None:
    """Record a reader whose consent staff vouch for, `consent` being the evidence (the API's
    "consented" sign-up; a CSV import's one-at-a-time twin): active at once, no email.

    A suppressed address stores nothing (None). A new or pending address becomes active with
    these topics. An active reader is left as they are; one who left (unsubscribed, bounced,
    complained) comes back only through their own confirmation: `SubscriptionError`.
    """
    address = normalize_email(email)
    topics = active_topics(topic_ids)
    if _has_suppression(hash_normalized(address)):
        return None
    subscriber, _created = _find_or_create(address)
    if subscriber.status in LEFT:
        raise SubscriptionError("subscriber-left", status=subscriber.status.value)
    if subscriber.status == SubscriberStatus.PENDING:
        subscriber.name = clean_display_name(name)
        subscriber.locale = normalize_locale(locale)
        subscriber.topics = topics
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = utcnow()
        record_consent(subscriber, consent, ConsentMethod.IMPORTED_CONSENTED)
        log_event(subscriber.id, EventKind.IMPORTED, source, topics=[t.id for t in topics])
    db.session.flush()
    return subscriber


def change_by_staff(
    subscriber_id: int,
    *,
    topic_ids: list[int] | None = None,
    locale: str | None = None,
    name: str | None = None,
    source: str = EventSource.STAFF,
) -> Subscriber:
    """Staff change a reader's sections, language or name (what is None stays). Unlike the
    reader's own preferences link, this never brings back a reader who left: that takes
    their own confirmation (`SubscriptionError`)."""
    subscriber = _get(subscriber_id)
    if subscriber.status in LEFT:
        raise SubscriptionError("subscriber-left", status=subscriber.status.value)
    return update_preferences(
        subscriber_id,
        [t.id for t in subscriber.topics if t.active] if topic_ids is None else topic_ids,
        subscriber.name if name is None else name,
        subscriber.locale if locale is None else locale,
        source,
    )


def _get(subscriber_id: int) -> Subscriber:
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise SubscriptionError("subscriber-missing", id=subscriber_id)
    return subscriber


def confirm(subscriber_id: int, *, source: str = EventSource.EMAIL_LINK) -> Subscriber:
    """Make a pending reader active (idempotent for one who already is)."""
    subscriber = _get(subscriber_id)
    if subscriber.status == SubscriberStatus.PENDING:
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = utcnow()
        # Readers who signed up before consent evidence was kept: the click is the evidence.
        subscriber.consent_method = subscriber.consent_method or ConsentMethod.DOUBLE_OPT_IN
        subscriber.consented_at = subscriber.consented_at or subscriber.confirmed_at
        log_event(subscriber.id, EventKind.CONFIRMED, source)
        db.session.flush()
        webhooks.emit("subscriber.confirmed", webhooks.subscriber_data(subscriber))
    db.session.flush()
    return subscriber


def unsubscribe(
    subscriber_id: int, topic_id: int | None = None, *, source: str = EventSource.WEB
) -> Subscriber | None:
    """Stop everything, or just one section (`topic_id`). Idempotent; unknown ids are a no-op.

    Leaving the last section is leaving altogether.
    """
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    if topic_id is not None:
        remaining = [t for t in subscriber.topics if t.id != topic_id]
        _set_topics(subscriber, remaining, source)
        if remaining:
            db.session.flush()
            return subscriber
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = utcnow()
        log_event(subscriber.id, EventKind.UNSUBSCRIBED, source)
        db.session.flush()
        webhooks.emit("subscriber.unsubscribed", webhooks.subscriber_data(subscriber))
    db.session.flush()
    return subscriber


def update_preferences(
    subscriber_id: int,
    topic_ids: set[int] | list[int],
    name: str,
    locale: str,
    source: str = EventSource.WEB,
    *,
    consent: Consent | None = None,
) -> Subscriber:
    """Save what a reader chose on their (signed) preferences page.

    An unsubscribed reader who chooses sections again is resubscribed at once: the signed
    link proves they own the address, as a confirmation click would. `consent` is the
    evidence of that choice. A suppressed address is never reactivated, and readers whose
    mail bounced or who complained keep their status (their sections are still saved).
    """
    subscriber = _get(subscriber_id)
    # Archived sections are not on the page, so not in the form: keep the reader's choice
    # of them, in case staff bring a section back.
    topics = active_topics(topic_ids) + [t for t in subscriber.topics if not t.active]
    cleaned_name, chosen_locale = clean_display_name(name), normalize_locale(locale)
    changed = [
        field
        for field, old, new in (
            ("name", subscriber.name, cleaned_name),
            ("locale", subscriber.locale, chosen_locale),
        )
        if old != new
    ]
    subscriber.name, subscriber.locale = cleaned_name, chosen_locale
    if changed:
        log_event(subscriber.id, EventKind.PROFILE_CHANGED, source, fields=changed)

    if subscriber.status == SubscriberStatus.UNSUBSCRIBED and not is_suppressed(subscriber.email):
        subscriber.topics = topics
        subscriber.status = SubscriberStatus.ACTIVE
        record_consent(
            subscriber, consent or Consent(source="preferences link"), ConsentMethod.DOUBLE_OPT_IN
        )
        log_event(subscriber.id, EventKind.RESUBSCRIBED, source, topics=[t.id for t in topics])
    else:
        _set_topics(subscriber, topics, source)
    db.session.flush()
    return subscriber


def change_topics(
    subscriber_id: int, topic_ids: set[int] | list[int], *, source: str = EventSource.STAFF
) -> Subscriber:
    """Give a reader exactly these (offered) sections, as staff chose on the reader's page;
    archived sections the reader had are kept, as on the reader's own preferences page.
    Logs the change; the reader's status is left as it is."""
    subscriber = _get(subscriber_id)
    topics = active_topics(topic_ids) + [t for t in subscriber.topics if not t.active]
    _set_topics(subscriber, topics, source)
    db.session.flush()
    return subscriber


def add_topic(subscriber_id: int, topic_id: int, *, source: str = EventSource.STAFF) -> Subscriber:
    """Add one offered section to a reader's choice (a no-op if they have it). Logs it."""
    subscriber = _get(subscriber_id)
    [topic] = active_topics([topic_id])
    if topic not in subscriber.topics:
        _set_topics(subscriber, [*subscriber.topics, topic], source)
    db.session.flush()
    return subscriber


def request_confirmation(subscriber_id: int, *, source: str = EventSource.STAFF) -> Subscriber:
    """Staff ask for a pending reader's confirmation email again (they say it never came).

    Unlike a sign-up this does not wait out RESEND_AFTER or EMAILS_PER_DAY: staff decide. The
    stamp is taken and the event logged (it counts towards the reader's daily emails); the
    caller queues the email after committing.
    """
    subscriber = _get(subscriber_id)
    if subscriber.status != SubscriberStatus.PENDING:
        raise SubscriptionError("subscriber-not-pending", status=subscriber.status.value)
    subscriber.confirmation_sent_at = utcnow()
    log_event(subscriber.id, EventKind.CONFIRMATION_SENT, source)
    db.session.flush()
    return subscriber


# --- the same changes for many readers at once (staff bulk changes, webapp/bulk.py) -------
# Set-based: a few statements per chunk of readers instead of two round trips per reader,
# with the same rules and the same events as the functions above for one reader.


def _log_events(subscriber_ids: list[int], kind: EventKind, source: str, **detail: Any) -> None:
    if not subscriber_ids:
        return
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else ""
    now = utcnow()
    db.session.execute(
        insert(SubscriberEvent.__table__),
        [
            {"subscriber_id": i, "kind": kind, "source": str(source)[:20], "detail": text,
             "created_at": now}
            for i in subscriber_ids
        ],
    )  # fmt: skip


def unsubscribe_many(subscriber_ids: list[int], *, source: str) -> list[int]:
    """`unsubscribe` (everything) for each of these readers; returns those it changed."""
    if not subscriber_ids:
        return []
    now = utcnow()
    changed = db.session.scalars(
        update(Subscriber)
        .where(
            Subscriber.id.in_(subscriber_ids),
            Subscriber.status != SubscriberStatus.UNSUBSCRIBED,
        )
        .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=now, updated_at=now)
        .returning(Subscriber.id)
        .execution_options(synchronize_session=False)
    ).all()
    _log_events(sorted(changed), EventKind.UNSUBSCRIBED, source)
    return list(changed)


def remove_topic_many(subscriber_ids: list[int], topic_id: int, *, source: str) -> list[int]:
    """`unsubscribe(id, topic_id)` for each of these readers: the section goes, and readers
    left without any section leave altogether. Returns the readers it changed."""
    if not subscriber_ids:
        return []
    had = sorted(
        db.session.scalars(
            delete(subscriber_topics)
            .where(
                subscriber_topics.c.subscriber_id.in_(subscriber_ids),
                subscriber_topics.c.topic_id == topic_id,
            )
            .returning(subscriber_topics.c.subscriber_id)
        ).all()
    )
    _log_events(had, EventKind.TOPICS_CHANGED, source, added=[], removed=[topic_id])
    if had:
        still = set(
            db.session.scalars(
                select(subscriber_topics.c.subscriber_id)
                .where(subscriber_topics.c.subscriber_id.in_(had))
                .distinct()
            )
        )
        unsubscribe_many([i for i in had if i not in still], source=source)
    return had


def add_topic_many(subscriber_ids: list[int], topic_id: int, *, source: str) -> list[int]:
    """`add_topic` for each of these readers who still subscribe (pending or active); readers
    who left keep their choice. Returns the readers it changed."""
    [topic] = active_topics([topic_id])
    if not subscriber_ids:
        return []
    has_it = (
        select(subscriber_topics.c.subscriber_id)
        .where(
            subscriber_topics.c.subscriber_id == Subscriber.id,
            subscriber_topics.c.topic_id == topic.id,
        )
        .exists()
    )
    targets = sorted(
        db.session.scalars(
            select(Subscriber.id).where(
                Subscriber.id.in_(subscriber_ids), Subscriber.status.not_in(LEFT), ~has_it
            )
        )
    )
    if targets:
        db.session.execute(
            insert(subscriber_topics),
            [{"subscriber_id": i, "topic_id": topic.id} for i in targets],
        )
        now = utcnow()
        db.session.execute(
            update(Subscriber)
            .where(Subscriber.id.in_(targets))
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
    _log_events(targets, EventKind.TOPICS_CHANGED, source, added=[topic.id], removed=[])
    return targets


def suppress(email: str, reason: SuppressionReason, *, source: str) -> None:
    """Never mail or sign up this address again; a reader who has it stops getting mail.

    For erasure use `erase`, which also deletes the reader.
    """
    if reason == SuppressionReason.ERASED:
        raise ValueError("use erase() to erase a reader")
    _add_suppression(email_hash(email), reason)
    try:
        address = normalize_email(email)
    except SubscriptionError:
        return
    subscriber = db.session.scalar(select(Subscriber).where(Subscriber.email == address))
    if subscriber is None:
        return
    status, kind = {
        SuppressionReason.HARD_BOUNCE: (SubscriberStatus.BOUNCED, EventKind.BOUNCED),
        SuppressionReason.COMPLAINT: (SubscriberStatus.COMPLAINED, EventKind.COMPLAINED),
        SuppressionReason.STAFF: (SubscriberStatus.UNSUBSCRIBED, EventKind.UNSUBSCRIBED),
    }[reason]
    if subscriber.status != status:
        subscriber.status = status
        subscriber.unsubscribed_at = utcnow()
        log_event(subscriber.id, kind, source, reason=reason.value)
        db.session.flush()
        webhooks.emit(f"subscriber.{status.value}", webhooks.subscriber_data(subscriber))
    db.session.flush()


def _add_suppression(digest: str, reason: SuppressionReason) -> None:
    # A second suppression of one address keeps the first reason (and date).
    db.session.execute(
        insert_ignoring_conflicts(Suppression.__table__).values(
            email_hash=digest, reason=reason, created_at=utcnow()
        )
    )


def erase(subscriber_id: int, source: str = EventSource.STAFF) -> bool:
    """Delete a reader and everything that names them; keep only the suppression hash.

    Their deliveries are deleted (an SMTP reply can quote the address), their events stay
    without a subscriber id (details hold no personal data), and an `erased` event is
    written without any id or address. Returns False when there is no such reader.
    """
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return False
    _add_suppression(hash_normalized(subscriber.email), SuppressionReason.ERASED)
    # Done here rather than left to the foreign keys' ON DELETE rules, so the objects this
    # session already holds are updated too.
    db.session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber_id))
    db.session.execute(
        update(SubscriberEvent)
        .where(SubscriberEvent.subscriber_id == subscriber_id)
        .values(subscriber_id=None)
    )
    db.session.delete(subscriber)
    log_event(None, EventKind.ERASED, source)
    db.session.flush()
    return True


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def export_data(subscriber_id: int) -> dict[str, Any]:
    """Everything stored about one reader, as JSON-able data (their right of access)."""
    subscriber = _get(subscriber_id)
    events = db.session.scalars(
        select(SubscriberEvent)
        .where(SubscriberEvent.subscriber_id == subscriber_id)
        .order_by(SubscriberEvent.created_at, SubscriberEvent.id)
    )
    deliveries = db.session.execute(
        select(Issue.id, Issue.title, Delivery.status, Delivery.sent_at)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id)
    )
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "locale": subscriber.locale,
        "status": subscriber.status.value,
        "sections": [{"id": t.id, "name": t.name} for t in subscriber.topics],
        "created_at": _iso(subscriber.created_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "consent": {
            "consented_at": _iso(subscriber.consented_at),
            "ip": subscriber.consent_ip,
            "user_agent": subscriber.consent_user_agent,
            "source": subscriber.consent_source,
            "method": subscriber.consent_method.value if subscriber.consent_method else None,
            "confirmation_sent_at": _iso(subscriber.confirmation_sent_at),
        },
        "events": [
            {
                "kind": e.kind.value,
                "source": e.source,
                "detail": json.loads(e.detail) if e.detail.startswith("{") else e.detail,
                "created_at": _iso(e.created_at),
            }
            for e in events
        ],
        "deliveries": [
            {"issue_id": i, "issue_title": title, "status": status.value, "sent_at": _iso(sent)}
            for i, title, status, sent in deliveries
        ],
    }
