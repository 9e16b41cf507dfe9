"""Issues and articles: create, import a document, and read an issue for rendering."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import func, select

from .extensions import db
from .importing import ImportReport, parse_document
from .models import Article, Issue, Topic
from .rendering import ArticleContent, IssueContent, SectionContent, safe_url
from .tokens import external_url


def slugify(name: str) -> str:
    """A URL-friendly slug that keeps CJK characters (browsers show them as typed)."""
    text = unicodedata.normalize("NFKC", name).strip().lower()
    return re.sub(r"[^\w]+", "-", text).strip("-") or "section"


def ensure_topics(names: list[str]) -> list[Topic]:
    """Topics for these section names, in order: matched by name, created when new."""
    topics = []
    next_position = (db.session.scalar(select(func.max(Topic.position))) or 0) + 1
    for name in names:
        topic = db.session.scalar(select(Topic).where(Topic.name == name))
        if topic is None:
            slug, n = slugify(name), 2
            base = slug
            while db.session.scalar(select(Topic.id).where(Topic.slug == slug)) is not None:
                slug, n = f"{base}-{n}", n + 1
            topic = Topic(name=name, slug=slug, position=next_position, active=True)
            next_position += 1
            db.session.add(topic)
            db.session.flush()
        topics.append(topic)
    return topics


def create_issue(title: str, *, period: str = "", number: int | None = None) -> Issue:
    """A new draft issue (flushed, not committed)."""
    issue = Issue(title=title, period=period, number=number)
    db.session.add(issue)
    db.session.flush()
    return issue


def add_article(
    issue: Issue,
    topic: Topic,
    title: str,
    body: str,
    *,
    lead: str = "",
    source_name: str = "",
    source_url: str = "",
) -> Article:
    """Append an article to an issue, after the ones already there."""
    article = Article(
        issue=issue,
        topic=topic,
        position=len(issue.articles),
        title=title,
        body=body,
        lead=lead,
        source_name=source_name,
        source_url=safe_url(source_url),  # only http(s): a source link must never run anything
    )
    db.session.add(article)
    db.session.flush()
    return article


def issue_topic_ids(issue_id: int) -> set[int]:
    return set(db.session.scalars(select(Article.topic_id).where(Article.issue_id == issue_id)))


def issue_content(issue: Issue, bulletin_name: str) -> IssueContent:
    """Read an issue into the plain structure `rendering` works from, sections in topic order."""
    by_topic: dict[int, list[Article]] = {}
    for article in issue.articles:
        by_topic.setdefault(article.topic_id, []).append(article)
    topics = db.session.scalars(
        select(Topic).where(Topic.id.in_(by_topic)).order_by(Topic.position, Topic.id)
    ).all()
    sections = tuple(
        SectionContent(
            topic_id=topic.id,
            name=topic.name,
            articles=tuple(
                ArticleContent(
                    id=a.id,
                    title=a.title,
                    source_name=a.source_name,
                    source_url=a.source_url,
                    body=a.body,
                    lead=a.lead,
                    web_url=external_url("public.article", issue_id=issue.id, article_id=a.id),
                )
                for a in by_topic[topic.id]
            ),
        )
        for topic in topics
    )
    return IssueContent(
        id=issue.id,
        title=issue.title,
        period=issue.period,
        bulletin_name=bulletin_name,
        web_url=external_url("public.issue", issue_id=issue.id),
        sections=sections,
        content_mode=issue.content_mode,
    )


def import_document(data: bytes | str) -> tuple[Issue, ImportReport]:
    """Create a new draft issue from a bulletin document; returns it with the import report.

    Sections become topics (matched by name, created when new). Raises `DocumentError` for a
    document we refuse, before anything is written. Importing the same document twice makes
    a second draft: an import never merges into an existing issue.
    """
    report = parse_document(data)
    topics = {t.name: t for t in ensure_topics([s.name for s in report.sections])}
    issue = create_issue(report.title, period=report.period or "")
    for imported in report.articles:
        add_article(
            issue,
            topics[imported.section],
            imported.title,
            imported.body,
            lead=imported.lead,
            source_name=imported.source_name or "",
            source_url=imported.source_url or "",
        )
    return issue, report
