"""Atom feeds of the archive: every published issue, and each section's articles.

Built with feedgen (it writes valid Atom 1.0 and escapes what it must); links are absolute
under `BASE_URL`, like the links in emails, so a feed reader that fetched the feed from
anywhere can follow them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from feedgen.feed import FeedGenerator
from markupsafe import escape
from sqlalchemy import select

from .extensions import db
from .issues import issue_subject, number_label
from .models import Article, Issue, IssueStatus, Topic
from .tokens import external_url

# The archive shows issues once sending has begun; the feeds show the same ones.
PUBLISHED = (IssueStatus.SENDING, IssueStatus.SENT)
ENTRIES = 50


def _aware(moment: datetime | None) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    moment = moment or datetime(1970, 1, 1, tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _feed(feed_id: str, title: str, subtitle: str, self_url: str, language: str, author: str):
    feed = FeedGenerator()
    feed.id(feed_id)
    feed.title(title)
    feed.subtitle(subtitle)
    feed.link(href=external_url("public.index"), rel="alternate")
    feed.link(href=self_url, rel="self")
    feed.language(language)
    feed.author(name=author)
    return feed


def _published_issues(limit: int = ENTRIES) -> list[Issue]:
    return list(
        db.session.scalars(
            select(Issue)
            .where(Issue.status.in_(PUBLISHED))
            .order_by(Issue.published_at.desc(), Issue.id.desc())
            .limit(limit)
        )
    )


def issues_feed(bulletin_name: str, *, subtitle: str, language: str = "zh-CN") -> bytes:
    """The Atom feed of published issues, newest first: each entry links the web version and
    carries the issue's articles as titles, leads and links."""
    issues = _published_issues()
    self_url = external_url("public.issues_feed")
    feed = _feed(self_url, bulletin_name, subtitle, self_url, language, bulletin_name)
    feed.updated(max((_aware(i.published_at) for i in issues), default=_aware(None)))
    for issue in reversed(issues):  # feedgen prepends each entry: add the oldest first
        url = external_url("public.issue", issue_id=issue.id)
        entry = feed.add_entry()
        entry.id(url)
        label = number_label(issue)
        entry.title(f"{issue.title}（{label}）" if label else issue.title)
        entry.link(href=url, rel="alternate")
        entry.published(_aware(issue.published_at))
        entry.updated(_aware(issue.sent_at or issue.published_at))
        entry.summary(issue.preheader or issue_subject(issue, bulletin_name))
        entry.content(_issue_html(issue), type="html")
    return feed.atom_str(pretty=True)


def _issue_html(issue: Issue) -> str:
    def link(article: Article) -> str:
        return external_url("public.article", issue_id=issue.id, article_id=article.id)

    items = "".join(
        f'<li><a href="{escape(link(a))}">{escape(a.title)}</a><br>{escape(a.lead)}</li>'
        for a in issue.articles
    )
    return f"<ul>{items}</ul>"


def section_feed(topic: Topic, bulletin_name: str, *, language: str = "zh-CN") -> bytes:
    """The Atom feed of one section: its articles in published issues, newest first."""
    self_url = external_url("public.section_feed", slug=topic.slug)
    feed = _feed(
        self_url, f"{bulletin_name} · {topic.name}", topic.name, self_url, language, bulletin_name
    )
    rows = db.session.execute(
        select(Article, Issue)
        .join(Issue, Issue.id == Article.issue_id)
        .where(Article.topic_id == topic.id, Issue.status.in_(PUBLISHED))
        .order_by(Issue.published_at.desc(), Article.position.desc())
        .limit(ENTRIES)
    ).all()
    feed.updated(max((_aware(i.published_at) for _a, i in rows), default=_aware(None)))
    for article, issue in reversed(rows):
        url = external_url("public.article", issue_id=issue.id, article_id=article.id)
        entry = feed.add_entry()
        entry.id(url)
        entry.title(article.title)
        entry.link(href=url, rel="alternate")
        entry.published(_aware(issue.published_at))
        entry.updated(_aware(issue.sent_at or issue.published_at))
        entry.summary(article.lead or article.title)
        entry.category(term=topic.slug, label=topic.name)
    return feed.atom_str(pretty=True)


def active_sections() -> list[Topic]:
    """The sections offered a feed on the archive page, in their order."""
    return list(
        db.session.scalars(
            select(Topic).where(Topic.active.is_(True)).order_by(Topic.position, Topic.id)
        )
    )
