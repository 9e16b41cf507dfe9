"""What staff see before publishing: an issue as a set of sections, or as one reader, gets it.

Previews render the issue as it stands (drafts change), cached by its edit time, and build
the very message a reader would receive, so the sizes and headers shown are the real ones.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import cached_property
from itertools import combinations
from typing import TYPE_CHECKING

from cachetools import LRUCache
from flask import current_app
from sqlalchemy import select

from . import identity, site_settings
from .digests import (
    digest_content,
    digest_message,
    html_part_size,
    outgoing_bytes,
    render_content,
    topics_key,
)
from .errors import BulletinError
from .extensions import db
from .i18n import Translator, normalize_locale, topic_name
from .issues import issue_topic_ids
from .mailer import SendResult, html_part
from .models import Issue, Subscriber, Topic
from .rendering import DigestTemplate, Identity, IssueContent, Personal, personalize
from .smtp import smtp_session

if TYPE_CHECKING:
    from collections.abc import Iterable


class PreviewError(BulletinError):
    """A preview that cannot be shown; the code says why."""


# Beyond this many sections an issue's sets are too many to render for a table (2^n - 1).
MAX_TOPICS_FOR_ALL_SETS = 4


@dataclass(frozen=True)
class Preview:
    topic_ids: frozenset[int]
    locale: str
    subject: str
    headers: list[tuple[str, str]]
    html: str
    text: str
    message_size: int  # the whole message as it would cross the wire
    html_size: int  # digests.html_part_size: the figure the sizes table shows too
    full_articles: int
    articles: int


@dataclass(frozen=True)
class SetSize:
    names: list[str]
    topic_ids: frozenset[int]
    html_size: int
    full_articles: int
    articles: int


# Rendered digests by (issue, edit time, sections, language, identity, counted links): a new
# edit, a change to the publication's name, address, colour or logo, or counting links
# switched on or off (read from the database on every preview, so a change made on another
# web machine counts too), renders afresh. One
# cache per app, so tests (each run builds its own app) never see another run's renders.
PREVIEW_CACHE_SIZE = 128


@dataclass
class _Source:
    """What one request renders an issue's digests from: the publication's identity and
    whether links are counted, read once (not once per set of the sizes table), and the
    issue's content, read at the first set not in the cache."""

    issue: Issue
    publisher: Identity = field(default_factory=identity.current)
    counted: bool = field(default_factory=lambda: bool(site_settings.get_value("counted_links")))

    @cached_property
    def content(self) -> IssueContent:
        return digest_content(self.issue, self.publisher, self.counted)


def _rendered(source: _Source, topic_ids: frozenset[int], locale: str) -> DigestTemplate:
    cache, lock = current_app.extensions.setdefault(
        "bulletin.previews", (LRUCache(maxsize=PREVIEW_CACHE_SIZE), threading.Lock())
    )
    issue = source.issue
    key = (
        issue.id, issue.updated_at, topics_key(topic_ids), locale, source.publisher,
        source.counted,
    )  # fmt: skip
    with lock:
        template = cache.get(key)
        if template is None:
            template = cache[key] = render_content(
                source.content, topic_ids, locale, source.publisher
            )
        return template


def _sample_personal(topic_ids: Iterable[int], locale: str, name: str = "") -> Personal:
    """Links that go nowhere: a preview carries no reader's live credentials."""
    _ = Translator(locale)
    return Personal(
        name=name or _("读者"),
        preferences_url="#preferences",
        unsubscribe_url="#unsubscribe",
        stop_urls={topic_id: "#stop" for topic_id in topic_ids},
        unsubscribe_subject="unsubscribe",
    )


def _preview(source: _Source, topic_ids: frozenset[int], locale: str, message: EmailMessage):
    template = _rendered(source, topic_ids, locale)
    issue = source.issue
    html = message.get_body(("html",)).get_content()
    text_part = message.get_body(("plain",))
    return Preview(
        topic_ids=topic_ids,
        locale=locale,
        subject=template.subject,
        headers=[(name, str(value)) for name, value in message.items()],
        html=html,
        text=text_part.get_content(),
        message_size=len(outgoing_bytes(message)),
        html_size=html_part_size(message),
        full_articles=len(template.full_article_ids),
        articles=_article_count(issue, topic_ids),
    )


def _article_count(issue: Issue, topic_ids: frozenset[int]) -> int:
    return sum(1 for article in issue.articles if article.topic_id in topic_ids)


def for_topics(issue: Issue, topic_ids: Iterable[int], locale: str = "zh") -> Preview:
    """The issue as a reader of these sections gets it (sections without articles ignored).

    No section at all is an error, not "every section": a reader always has at least one.
    """
    chosen = frozenset(topic_ids)
    if not chosen:
        raise PreviewError("preview-none-chosen")
    chosen &= issue_topic_ids(issue.id)
    if not chosen:
        raise PreviewError("preview-no-articles")
    locale = normalize_locale(locale)
    source = _Source(issue)
    return _preview(source, chosen, locale, _sample_message(source, chosen, locale))


def _sample_message(source: _Source, topic_ids: frozenset[int], locale: str) -> EmailMessage:
    """The digest of these sections as a sample reader gets it: what previews measure."""
    template = _rendered(source, topic_ids, locale)
    personal = _sample_personal(topic_ids, locale)
    return digest_message(
        source.issue.id, template, personal, "reader@example.org", personal.name, locale=locale
    )


def _sample_html_part(source: _Source, topic_ids: frozenset[int], locale: str) -> EmailMessage:
    """The HTML part of `_sample_message`, without the rest of the message: what the sizes
    table measures (with `html_part_size`, as previews do), at a fraction of the cost."""
    template = _rendered(source, topic_ids, locale)
    html, _text = personalize(template, _sample_personal(topic_ids, locale), locale=locale)
    return html_part(html)


def for_subscriber(issue: Issue, email: str) -> Preview:
    """The issue as this reader would get it: their sections, name and language.

    Its links go nowhere: a signed preferences or unsubscribe link is the reader's credential,
    and whoever previews must not hold one.
    """
    subscriber = db.session.scalar(
        select(Subscriber).where(Subscriber.email == email.strip().lower())
    )
    if subscriber is None:
        raise PreviewError("preview-no-subscriber", email=email)
    chosen = frozenset(t.id for t in subscriber.topics) & issue_topic_ids(issue.id)
    if not chosen:
        raise PreviewError("preview-no-topics", email=subscriber.email)
    source = _Source(issue)
    template = _rendered(source, chosen, subscriber.locale)
    personal = _sample_personal(chosen, subscriber.locale, subscriber.name)
    message = digest_message(
        issue.id,
        template,
        personal,
        subscriber.email,
        subscriber.name,
        locale=subscriber.locale,
    )
    return _preview(source, chosen, subscriber.locale, message)


def set_sizes(issue: Issue, locale: str = "zh") -> list[SetSize]:
    """HTML size (`html_part_size`) of the digest for each set of sections (every set, when
    there are few), as a sample reader gets it: the preview of a set shows the same figure."""
    topics = db.session.scalars(
        select(Topic).where(Topic.id.in_(issue_topic_ids(issue.id))).order_by(Topic.position)
    ).all()
    if len(topics) <= MAX_TOPICS_FOR_ALL_SETS:
        sets = [c for n in range(1, len(topics) + 1) for c in combinations(topics, n)]
    else:
        sets = [(t,) for t in topics] + [tuple(topics)]
    locale = normalize_locale(locale)
    source = _Source(issue)
    sizes = []
    for chosen in sets:
        ids = frozenset(t.id for t in chosen)
        template = _rendered(source, ids, locale)
        sizes.append(
            SetSize(
                names=[topic_name(t) for t in chosen],  # in the page's language
                topic_ids=ids,
                html_size=html_part_size(_sample_html_part(source, ids, locale)),
                full_articles=len(template.full_article_ids),
                articles=_article_count(issue, ids),
            )
        )
    return sizes


def send_test(
    issue_id: int, topic_ids: Iterable[int], locale: str, to_email: str, to_name: str = ""
) -> SendResult:
    """Send this section set's digest to a staff member, marked as a test in the subject."""
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        raise LookupError(f"issue {issue_id} does not exist")
    preview = for_topics(issue, topic_ids, locale)
    template = _rendered(_Source(issue), preview.topic_ids, preview.locale)
    _ = Translator(preview.locale)
    message = digest_message(
        issue.id,
        template,
        _sample_personal(preview.topic_ids, preview.locale),
        to_email,
        to_name,
        locale=preview.locale,
        subject=_("[测试] %(subject)s", subject=template.subject),
    )
    with smtp_session() as session:
        return session.send(
            current_app.config["MAIL_FROM_ADDRESS"], to_email, outgoing_bytes(message)
        )
