"""Digests: render an issue once per section set, and compose each reader's message from it.

Rendering (premailer) happens once per (issue, set of sections, language), when sending
starts; the result is stored in `rendered_digests` so that every worker, on any machine,
reuses it. Composing a reader's message is then only their greeting, their signed links and
the MIME assembly from the set's skeleton.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from itertools import groupby

from cachetools import LRUCache
from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from . import identity, readership, site_settings
from .extensions import db
from .issues import issue_content, issue_topic_ids
from .mailer import Base64Template, MessageSkeleton, build_message, dkim_sign
from .models import (
    Delivery,
    DeliveryStatus,
    Issue,
    RenderedDigest,
    Subscriber,
    subscriber_topics,
)
from .rendering import (
    DigestTemplate,
    Identity,
    IssueContent,
    Personal,
    html_values,
    personal_values,
    personalize,
    pieces,
    render_digest,
)
from .tokens import Purpose, external_url, make_token, reader_payload


@dataclass(frozen=True)
class Recipient:
    """What sending needs of a reader, read once per batch (ORM objects expire per commit)."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    locale: str
    active: bool
    link_key: str = ""  # signed into the reader's links (tokens.reader_payload)


def topics_key(topic_ids: frozenset[int] | set[int]) -> str:
    return ",".join(str(i) for i in sorted(topic_ids))


def render_issue(
    issue: Issue, topic_ids: frozenset[int], locale: str, publisher: Identity | None = None
) -> DigestTemplate:
    """Render an issue as it stands now, for one set of sections (previews, and sending),
    with the publication's identity (`publisher`, else the one stored now)."""
    publisher = publisher or identity.current()
    return render_content(digest_content(issue, publisher), topic_ids, locale, publisher)


def digest_content(issue: Issue, publisher: Identity, counted: bool | None = None) -> IssueContent:
    """An issue as it stands now, as its digests show it (`render_content` renders it).

    Whether article and source links are counted (go through /r/; `counted`, else the
    setting) is decided here, when the digest is rendered: the stored digest of an issue
    already sending keeps its links, and the identity it started with."""
    content = issue_content(issue, publisher.name, publisher.name_en)
    if site_settings.get_value("counted_links") if counted is None else counted:
        content = readership.with_counted_links(content)
    return content


def render_content(
    content: IssueContent, topic_ids: frozenset[int], locale: str, publisher: Identity
) -> DigestTemplate:
    """One set of sections of `digest_content`, within the configured HTML budget: for a
    caller that renders many sets of one issue and reads it once."""
    return render_digest(
        content,
        topic_ids,
        locale=locale,
        identity=publisher,
        budget=current_app.config["EMAIL_HTML_BUDGET"],
    )


@dataclass(frozen=True)
class Digest:
    """A rendered digest and what every reader's message is assembled from."""

    template: DigestTemplate
    skeleton: MessageSkeleton
    text_body: Base64Template
    html_body: Base64Template

    @classmethod
    def of(cls, template: DigestTemplate, issue_id: int, locale: str) -> Digest:
        skeleton = MessageSkeleton(
            sender=identity.sender(locale),
            subject=template.subject,
            headers=shared_headers(issue_id),
        )
        return cls(
            template,
            skeleton,
            Base64Template(pieces(template.text)),
            Base64Template(pieces(template.html)),
        )


DIGEST_CACHE_SIZE = 64  # digests kept in each worker process's memory


def digest_for(issue_id: int, topic_ids: frozenset[int], locale: str) -> Digest:
    """A digest to send: from this process's memory, else the database, else rendered.

    A digest is rendered once per (issue, set of sections, language) by `prepare_digests`
    and stored in `rendered_digests`, so every worker, here or on other machines, loads it.
    One that was not prepared (a reader changed sections since) is rendered here and kept
    in memory only: a lookup never writes. The lock keeps this process's threads from
    rendering the same digest side by side.
    """
    kept = current_app.extensions.get("bulletin.digests")
    if kept is None:  # not setdefault: that would build a cache per message to throw away
        kept = current_app.extensions.setdefault(
            "bulletin.digests", (LRUCache(maxsize=DIGEST_CACHE_SIZE), threading.Lock())
        )
    cache, lock = kept
    key = (issue_id, topics_key(topic_ids), locale)
    with lock:
        digest = cache.get(key)
        if digest is None:
            template = _load(*key) or render_issue(
                db.session.get(Issue, issue_id), topic_ids, locale
            )
            digest = cache[key] = Digest.of(template, issue_id, locale)
    return digest


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


def _store(issue_id: int, topic_ids: frozenset[int], locale: str) -> None:
    """Render one digest and store it (flushed); a copy another process stored first wins."""
    template = render_issue(db.session.get(Issue, issue_id), topic_ids, locale)
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    db.session.execute(
        dialect.insert(RenderedDigest)
        .values(
            issue_id=issue_id,
            topics=topics_key(topic_ids),
            locale=locale,
            subject=template.subject,
            html=template.html,
            text=template.text,
            full_article_ids=topics_key(template.full_article_ids),
            html_size=template.html_size,
        )
        .on_conflict_do_nothing()
    )


def prepare_digests(issue_id: int) -> int:
    """Render and store (flushed: the caller commits) every digest the pending deliveries
    need, before batches go out; returns how many they need.

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
        if _load(issue_id, topics_key(topic_ids), locale) is None:
            _store(issue_id, topic_ids, locale)
    return len(needed)


def personal_links(
    subscriber_id: int, link_key: str, name: str, topic_ids: frozenset[int]
) -> Personal:
    """The signed links one reader's copy carries.

    A section's stop link is the unsubscribe link with `?section=ID`: its token already lets
    the holder unsubscribe the reader from everything, so stopping one section needs no
    signature of its own. (Signing one per section was a third of composing a message.)
    """
    payload = reader_payload(subscriber_id, link_key)
    unsubscribe = make_token(Purpose.UNSUBSCRIBE, payload)
    preferences = make_token(Purpose.PREFERENCES, payload)
    unsubscribe_url = external_url("public.unsubscribe", token=unsubscribe)
    return Personal(
        name=name,
        preferences_url=external_url("public.preferences", token=preferences),
        unsubscribe_url=unsubscribe_url,
        unsubscribe_subject=f"unsubscribe%20{unsubscribe}",
        stop_urls={topic_id: f"{unsubscribe_url}?section={topic_id}" for topic_id in topic_ids},
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

    Assembled from the section set's skeleton and pre-encoded bodies; only the reader's parts
    are encoded here.
    """
    digest = digest_for(issue_id, topic_ids, reader.locale)
    personal = personal_links(reader.subscriber_id, reader.link_key, reader.name, topic_ids)
    values = personal_values(personal, locale=reader.locale)
    message_id = make_msgid(domain=current_app.config["MAIL_DOMAIN"])
    data = digest.skeleton.render(
        to_email=reader.email,
        to_name=reader.name,
        text=digest.text_body.fill(values),
        html=digest.html_body.fill(html_values(values)),
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
        sender=identity.sender(locale),
        to_email=to_email,
        to_name=to_name,
        subject=subject or template.subject,
        text=text,
        html=html,
        headers=list_headers(personal, issue_id),
        message_id=make_msgid(domain=current_app.config["MAIL_DOMAIN"]),
    )


def html_part_size(message: EmailMessage) -> int:
    """The one size staff see for a digest: the bytes of its HTML part as sent to this reader
    (personalized, UTF-8, before the transfer encoding), which is what Gmail's ~102 KB
    clipping and `EMAIL_HTML_BUDGET` are about."""
    return len(message.get_body(("html",)).get_content().encode("utf-8"))


def outgoing_bytes(message: EmailMessage) -> bytes:
    """The bytes to hand to SMTP, DKIM-signed when a key is configured."""
    data = message.as_bytes()
    settings = current_app.config["DKIM"]
    if settings:
        data = dkim_sign(data, **settings)
    return data
