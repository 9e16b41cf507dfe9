"""Topics (the pages say sections, 栏目) as staff manage them: create, rename, reorder,
archive and unarchive.

Functions flush and leave the commit to the caller; each change writes an audit entry in
the same transaction. Archiving only sets `Topic.active`: the subscribe form, the readers'
preferences page and the CSV import already offer active sections only. Readers who chose
an archived section keep it, so unarchiving brings it back for them (unless they saved
their preferences meanwhile: that page offers, and so keeps, only open sections).
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from . import audit
from .errors import BulletinError
from .extensions import db
from .models import Subscriber, SubscriberStatus, Topic, subscriber_topics

NAME_MAX_LENGTH = 100  # Topic.name is String(100)


class TopicError(BulletinError):
    """A change to topics that cannot be made; the code says why."""


def ordered() -> list[Topic]:
    """Every section, archived ones included, in the bulletin's order."""
    return list(db.session.scalars(select(Topic).order_by(Topic.position, Topic.id)))


def create_topic(name: str, name_en: str | None = None) -> Topic:
    """Add an open section at the end, with a unique slug made from its (Chinese) name and,
    optionally, an English name for English pages and emails."""
    name = _clean_name(name)
    _refuse_duplicate(name)
    name_en = _clean_english_name(name_en)
    topics = _renumber()
    topic = Topic(
        name=name, name_en=name_en, slug=unique_slug(name), position=len(topics) + 1, active=True
    )
    db.session.add(topic)
    _flush(name)
    audit.record("section-create", detail=f"#{topic.id} {topic.name} ({topic.slug})")
    return topic


def rename_topic(topic_id: int, name: str, name_en: str | None = None) -> Topic:
    """Give a section a new name and English name ("" removes the English name, None leaves
    it). The slug stays, so CSV files that name the section by its slug and links already
    sent keep working."""
    topic = _get(topic_id)
    name = _clean_name(name)
    name_en = topic.name_en if name_en is None else _clean_english_name(name_en, topic.id)
    if name == topic.name and name_en == topic.name_en:
        return topic
    if name != topic.name:
        _refuse_duplicate(name, exclude_id=topic.id)
    changes = []
    if name != topic.name:
        changes.append(f"{topic.name} → {name}")
    if name_en != topic.name_en:
        changes.append(f"English: {topic.name_en or '—'} → {name_en or '—'}")
    topic.name, topic.name_en = name, name_en
    _flush(name)
    audit.record("section-rename", detail=f"#{topic.id} " + "; ".join(changes))
    return topic


def move_topic(topic_id: int, offset: int) -> bool:
    """Move a section up (offset -1) or down (+1) in the order, renumbering every section
    1..n so positions stay dense. False when it is already first or last."""
    if offset not in (-1, 1):
        raise ValueError(f"a section moves one place at a time, not {offset}")
    topic = _get(topic_id)
    topics = _renumber()
    index = topics.index(topic)
    target = index + offset
    if not 0 <= target < len(topics):
        return False
    other = topics[target]
    topic.position, other.position = other.position, topic.position
    db.session.flush()
    audit.record(
        "section-move-up" if offset < 0 else "section-move-down",
        detail=f"#{topic.id} {topic.name}: {index + 1} → {target + 1}",
    )
    return True


def archive_topic(topic_id: int) -> bool:
    """Stop offering a section to new readers, issues and imports; readers who chose it keep
    it. False when it was already archived."""
    topic = _get(topic_id)
    if not topic.active:
        return False
    others_open = db.session.scalar(
        select(func.count()).select_from(Topic).where(Topic.active.is_(True), Topic.id != topic.id)
    )
    if not others_open:
        # With no open section the subscribe form could accept nobody.
        raise TopicError("topic-last-open")
    topic.active = False
    db.session.flush()
    audit.record("section-archive", detail=f"#{topic.id} {topic.name}")
    return True


def unarchive_topic(topic_id: int) -> bool:
    """Offer an archived section again. False when it was not archived."""
    topic = _get(topic_id)
    if topic.active:
        return False
    topic.active = True
    db.session.flush()
    audit.record("section-unarchive", detail=f"#{topic.id} {topic.name}")
    return True


def _get(topic_id: int) -> Topic:
    topic = db.session.get(Topic, topic_id)
    if topic is None:
        raise TopicError("topic-missing", id=topic_id)
    return topic


def _clean_name(name: str) -> str:
    # Line breaks and runs of spaces in a pasted name would show up in every email.
    name = " ".join((name or "").split())
    if not name:
        raise TopicError("topic-name-missing")
    if len(name) > NAME_MAX_LENGTH:
        raise TopicError("topic-name-too-long", count=NAME_MAX_LENGTH)
    return name


def _clean_english_name(name_en: str | None, exclude_id: int | None = None) -> str | None:
    """An English name, or None for none; two sections may not share one."""
    name_en = " ".join((name_en or "").split())
    if not name_en:
        return None
    if len(name_en) > NAME_MAX_LENGTH:
        raise TopicError("topic-name-too-long", count=NAME_MAX_LENGTH)
    for topic in ordered():
        if topic.id != exclude_id and topic.name_en and _key(topic.name_en) == _key(name_en):
            raise TopicError("topic-name-taken", name=name_en)
    return name_en


def _key(text: str) -> str:
    """What makes two names the same to a reader: full-width or half-width, case, spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def _refuse_duplicate(name: str, *, exclude_id: int | None = None) -> None:
    # The CSV import finds sections by lower-cased name or slug, so a name that matches
    # another section's slug would make a CSV file ambiguous too.
    key = _key(name)
    for topic in ordered():
        if topic.id == exclude_id:
            continue
        if name == topic.name:
            raise TopicError("topic-name-taken", name=name)
        if key == _key(topic.name):
            raise TopicError("topic-name-alike", name=name, existing=topic.name)
        if key == _key(topic.slug):
            raise TopicError("topic-name-is-slug", name=name, existing=topic.name, slug=topic.slug)


def slugify(name: str) -> str:
    """A URL-friendly slug that keeps CJK characters (browsers show them as typed)."""
    text = unicodedata.normalize("NFKC", name).strip().lower()
    return re.sub(r"[^\w]+", "-", text).strip("-") or "section"


def unique_slug(name: str) -> str:
    """A slug for a new section's name that no section has yet (-2, -3... when taken)."""
    base = slug = slugify(name)[:90]
    n = 2
    while db.session.scalar(select(Topic.id).where(Topic.slug == slug)) is not None:
        slug, n = f"{base}-{n}", n + 1
    return slug


def _renumber() -> list[Topic]:
    """Positions 1..n in the current order (closing gaps left by imports or older data)."""
    topics = ordered()
    for position, topic in enumerate(topics, start=1):
        topic.position = position
    return topics


def _flush(name: str) -> None:
    # The unique constraints catch a twin created by another admin at the same moment;
    # the caller rolls back.
    try:
        db.session.flush()
    except IntegrityError as exc:
        raise TopicError("topic-changed") from exc


def readers_of(topic_id: int) -> int:
    """Active subscribers who chose this topic (what archiving it would affect)."""
    return (
        db.session.scalar(
            select(func.count())
            .select_from(subscriber_topics)
            .join(Subscriber, Subscriber.id == subscriber_topics.c.subscriber_id)
            .where(
                subscriber_topics.c.topic_id == topic_id,
                Subscriber.status == SubscriberStatus.ACTIVE,
            )
        )
        or 0
    )
