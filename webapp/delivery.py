"""Plan a send, claim a batch, record results: the never-twice rules live here.

The database is the ledger. Publishing inserts one `Delivery` row per eligible reader in the
same transaction that moves the issue to `sending`; the unique (issue, subscriber) pair means
nobody can be planned twice. A worker *claims* rows before sending (pending -> sending with a
lease), so a second worker, or a redelivered Celery task, finds nothing left to claim, and
it writes each result as soon as the server answers, so a crash loses at most the one
message in flight, which is then marked `unknown` rather than resent.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from itertools import groupby

from flask import current_app
from sqlalchemy import DateTime, Integer, String, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .issues import issue_content, issue_topic_ids
from .mailer import (
    MailerError,
    MessageSkeleton,
    Outcome,
    SendResult,
    SmtpSession,
    build_message,
    dkim_sign,
)
from .models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    RenderedDigest,
    Subscriber,
    SubscriberStatus,
    subscriber_topics,
    utcnow,
)
from .rendering import DigestTemplate, Personal, personalize, render_digest
from .tokens import Purpose, external_url, make_token

LEASE = timedelta(minutes=5)
OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


class PublishError(RuntimeError):
    """The issue cannot be published in its current state; the message says why."""


@dataclass(frozen=True)
class Recipient:
    """What sending needs of a reader, read once per batch (ORM objects expire per commit)."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    locale: str
    active: bool


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


def topics_key(topic_ids: frozenset[int] | set[int]) -> str:
    return ",".join(str(i) for i in sorted(topic_ids))


def render_issue(issue: Issue, topic_ids: frozenset[int], locale: str) -> DigestTemplate:
    """Render an issue as it stands now, for one set of sections (previews, and sending)."""
    config = current_app.config
    return render_digest(
        issue_content(issue, config["BULLETIN_NAME"]),
        topic_ids,
        locale=locale,
        postal_address=config["POSTAL_ADDRESS"],
        budget=config["EMAIL_HTML_BUDGET"],
    )


@dataclass(frozen=True)
class Digest:
    template: DigestTemplate
    skeleton: MessageSkeleton


class DigestStore:
    """The digests being sent: from this process's memory, else the database, else rendered.

    A digest is rendered once per (issue, set of sections, language) and stored in
    `rendered_digests`, so the other workers, here or on other machines, reuse it. The lock
    keeps this process's threads from rendering the same digest side by side; two
    processes can still race on a first render, and then the database keeps one.
    """

    def __init__(self, size: int = 64):
        self.size = size
        self._items: OrderedDict[tuple[int, str, str], Digest] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, issue_id: int, topic_ids: frozenset[int], locale: str) -> Digest:
        key = (issue_id, topics_key(topic_ids), locale)
        with self._lock:
            digest = self._items.get(key)
            if digest is None:
                template = self._load(*key) or self._render(issue_id, topic_ids, locale)
                skeleton = MessageSkeleton(
                    sender=current_app.config["MAIL_FROM"],
                    subject=template.subject,
                    headers=shared_headers(issue_id),
                )
                digest = self._items[key] = Digest(template, skeleton)
                if len(self._items) > self.size:
                    self._items.popitem(last=False)
            else:
                self._items.move_to_end(key)
        return digest

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    @staticmethod
    def _load(issue_id: int, topics: str, locale: str) -> DigestTemplate | None:
        row = db.session.scalar(
            select(RenderedDigest).where(
                RenderedDigest.issue_id == issue_id,
                RenderedDigest.topics == topics,
                RenderedDigest.locale == locale,
            )
        )
        if row is None:
            return None
        return DigestTemplate(
            subject=row.subject,
            html=row.html,
            text=row.text,
            topic_ids=frozenset(int(i) for i in row.topics.split(",")),
            full_article_ids=frozenset(int(i) for i in row.full_article_ids.split(",") if i),
        )

    def _render(self, issue_id: int, topic_ids: frozenset[int], locale: str) -> DigestTemplate:
        template = render_issue(db.session.get(Issue, issue_id), topic_ids, locale)
        db.session.add(
            RenderedDigest(
                issue_id=issue_id,
                topics=topics_key(topic_ids),
                locale=locale,
                subject=template.subject,
                html=template.html,
                text=template.text,
                full_article_ids=topics_key(template.full_article_ids),
                html_size=template.html_size,
            )
        )
        try:
            db.session.commit()
        except IntegrityError:  # another process stored it first: theirs and ours are equal
            db.session.rollback()
            return self._load(issue_id, topics_key(topic_ids), locale) or template
        return template


digests = DigestStore()


def prepare_digests(issue_id: int) -> int:
    """Render every digest the pending deliveries need before batches go out; returns how many.

    Streams (reader, section) pairs in reader order, so memory holds one reader at a time
    plus the distinct sets, however many readers there are.
    """
    issue_topics = issue_topic_ids(issue_id)
    rows = db.session.execute(
        select(Subscriber.id, Subscriber.locale, subscriber_topics.c.topic_id)
        .join(subscriber_topics, subscriber_topics.c.subscriber_id == Subscriber.id)
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .where(
            Delivery.issue_id == issue_id,
            Delivery.status == DeliveryStatus.PENDING,
            subscriber_topics.c.topic_id.in_(issue_topics),
        )
        .order_by(Subscriber.id)
        .execution_options(yield_per=5000)
    )
    needed = {
        (locale, frozenset(topic for _, _, topic in pairs))
        for (_, locale), pairs in groupby(rows, key=lambda row: (row[0], row[1]))
    }
    for locale, topic_ids in sorted(needed, key=lambda item: (item[0], sorted(item[1]))):
        digests.get(issue_id, topic_ids, locale)
    return len(needed)


def personal_links(subscriber_id: int, name: str, topic_ids: frozenset[int]) -> Personal:
    """The signed links one reader's copy carries."""
    unsubscribe = make_token(Purpose.UNSUBSCRIBE, {"s": subscriber_id})
    preferences = make_token(Purpose.PREFERENCES, {"s": subscriber_id})
    return Personal(
        name=name,
        preferences_url=external_url("public.preferences", token=preferences),
        unsubscribe_url=external_url("public.unsubscribe", token=unsubscribe),
        unsubscribe_subject=f"unsubscribe%20{unsubscribe}",
        stop_urls={
            topic_id: external_url(
                "public.unsubscribe",
                token=make_token(Purpose.UNSUBSCRIBE, {"s": subscriber_id, "t": topic_id}),
            )
            for topic_id in topic_ids
        },
    )


def shared_headers(issue_id: int) -> dict[str, str]:
    """The list headers every reader of an issue gets."""
    domain = current_app.config["MAIL_DOMAIN"]
    return {
        "List-Id": f"<bulletin.{domain}>",
        # RFC 8058: mail providers POST "List-Unsubscribe=One-Click" to the https URL below.
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Auto-Submitted": "auto-generated",
        "Feedback-ID": f"issue{issue_id}:bulletin:{domain}",
    }


def unsubscribe_header(personal: Personal) -> dict[str, str]:
    mailbox = current_app.config["UNSUBSCRIBE_MAILTO"]
    mailto = f"mailto:{mailbox}?subject={personal.unsubscribe_subject}"
    return {"List-Unsubscribe": f"<{personal.unsubscribe_url}>, <{mailto}>"}


def list_headers(personal: Personal, issue_id: int) -> dict[str, str]:
    return {**unsubscribe_header(personal), **shared_headers(issue_id)}


def compose(issue_id: int, reader: Recipient, topic_ids: frozenset[int]) -> tuple[str, bytes]:
    """One reader's message: returns (Message-ID, bytes to send).

    Assembled from the section set's skeleton; only the reader's parts are encoded here.
    """
    digest = digests.get(issue_id, topic_ids, reader.locale)
    personal = personal_links(reader.subscriber_id, reader.name, topic_ids)
    html, text = personalize(digest.template, personal, locale=reader.locale)
    message_id = make_msgid(domain=current_app.config["MAIL_DOMAIN"])
    data = digest.skeleton.render(
        to_email=reader.email,
        to_name=reader.name,
        text=text,
        html=html,
        message_id=message_id,
        headers=unsubscribe_header(personal),
    )
    settings = current_app.config["DKIM"]
    if settings:
        data = dkim_sign(data, **settings)
    return message_id, data


def digest_message(
    issue_id: int,
    template: DigestTemplate,
    personal: Personal,
    to_email: str,
    to_name: str,
    *,
    locale: str,
    subject: str | None = None,
) -> EmailMessage:
    """A digest personalized for one address, as a message (not yet signed)."""
    html, text = personalize(template, personal, locale=locale)
    return build_message(
        sender=current_app.config["MAIL_FROM"],
        to_email=to_email,
        to_name=to_name,
        subject=subject or template.subject,
        text=text,
        html=html,
        headers=list_headers(personal, issue_id),
        message_id=make_msgid(domain=current_app.config["MAIL_DOMAIN"]),
    )


def outgoing_bytes(message: EmailMessage) -> bytes:
    """The bytes to hand to SMTP, DKIM-signed when a key is configured."""
    data = message.as_bytes()
    settings = current_app.config["DKIM"]
    if settings:
        data = dkim_sign(data, **settings)
    return data


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
