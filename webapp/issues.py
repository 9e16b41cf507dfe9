"""Issues and articles: create, import a document, write and arrange articles, and read an
issue for rendering.

Staff edits (`add_staff_article`, `edit_article`, `delete_article`, `move_article`) only touch
a draft or scheduled issue: once an issue is sending, what readers get is the record. Each
edit flushes with its audit entry and leaves the commit to the caller.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import func, select, update

from . import audit, review, site_settings
from .errors import BulletinError
from .extensions import db
from .importing import ImportReport, make_lead, parse_document
from .models import Article, DeletedArticle, Issue, IssueStatus, Topic, utcnow
from .rendering import (
    CONTENT_MODES,
    ArticleContent,
    IssueContent,
    TopicContent,
    format_number,
    safe_url,
)
from .tokens import external_url
from .topics import unique_slug

# Statuses whose content staff may still change. Anything later has gone (or is going) to
# readers, and the digests already rendered from it must stay what was sent.
EDITABLE_STATUSES = (IssueStatus.DRAFT, IssueStatus.SCHEDULED)

TITLE_MAX = 300  # Article.title
ISSUE_TITLE_MAX = 200  # Issue.title
SUBJECT_MAX = 300  # Issue.subject, Issue.preheader
PERIOD_MAX = 100  # Issue.period

# The names a subject pattern may use, and what each stands for.
PATTERN_FIELDS = ("name", "title", "year", "n", "total", "period")
SOURCE_NAME_MAX = 300  # Article.source_name
SOURCE_URL_MAX = 2000  # Article.source_url
# A long article is ~20 KB; no one types 500 KB. Rendering stays fast up to here.
BODY_MAX_BYTES = 500 * 1024


class IssueNotEditable(BulletinError):
    """The issue's content cannot change now; the code says why."""


class ArticleError(BulletinError):
    """An article value we refuse; `field` names the form field it belongs to."""


@dataclass(frozen=True)
class ArticleDraft:
    """What staff typed for an article, before it is checked and saved."""

    topic_id: int
    title: str
    body: str
    lead: str = ""
    source_name: str = ""
    source_url: str = ""


def ensure_topics(names: list[str]) -> list[Topic]:
    """Topics for these section names, in order: matched by name, created when new."""
    topics = []
    next_position = (db.session.scalar(select(func.max(Topic.position))) or 0) + 1
    for name in names:
        topic = db.session.scalar(select(Topic).where(Topic.name == name))
        if topic is None:
            topic = Topic(name=name, slug=unique_slug(name), position=next_position, active=True)
            next_position += 1
            db.session.add(topic)
            db.session.flush()
        topics.append(topic)
    return topics


def create_issue(
    title: str,
    *,
    period: str = "",
    year: int | None = None,
    number: int | None = None,
    total_number: int | None = None,
) -> Issue:
    """A new draft issue (flushed, not committed).

    The year is the period's (when it names one) or this year; a number not given is
    suggested from the issues before it (`suggest_numbers`)."""
    year = year or year_of(period) or current_year()
    suggested_number, suggested_total = suggest_numbers(year)
    issue = Issue(
        title=title,
        period=period,
        year=year,
        number=number or suggested_number,
        total_number=total_number or suggested_total,
    )
    db.session.add(issue)
    db.session.flush()
    return issue


# ================================================================= numbers and the subject


def current_year() -> int:
    """This year in the staff time zone (at midnight on 31 December UTC, Beijing is in the
    next year already)."""
    return datetime.now(ZoneInfo(current_app.config["TIMEZONE"])).year


def year_of(period: str | None) -> int | None:
    """The first year a period names ("2022年8月1日-2022年8月31日" -> 2022), or None."""
    found = re.search(r"(?<!\d)((?:19|20)\d\d)(?!\d)", period or "")
    return int(found.group(1)) if found else None


def suggest_numbers(year: int, *, exclude_id: int | None = None) -> tuple[int, int]:
    """(第N期, 总第N期) for a new issue of `year`: one past the highest of that year, and one
    past the highest overall. Cancelled issues count too: their numbers may have been
    announced, and an office never reuses a number."""
    others = Issue.id != (exclude_id or 0)
    in_year = db.session.scalar(select(func.max(Issue.number)).where(others, Issue.year == year))
    overall = db.session.scalar(select(func.max(Issue.total_number)).where(others))
    return (in_year or 0) + 1, (overall or 0) + 1


class SubjectPatternError(BulletinError):
    """A subject pattern we refuse (for the settings form)."""


class _Lenient(dict):
    def __missing__(self, key: str) -> str:
        return ""


def check_subject_pattern(pattern: str) -> str:
    """The pattern, stripped, if it only uses `PATTERN_FIELDS`; raises `SubjectPatternError`
    saying what is wrong (for the settings form)."""
    pattern = pattern.strip()
    if not pattern:
        raise SubjectPatternError("subject-pattern-missing")
    try:
        names = [name for _text, name, _spec, _conv in string.Formatter().parse(pattern) if name]
    except ValueError:
        raise SubjectPatternError("subject-pattern-braces") from None
    unknown = [name for name in names if name not in PATTERN_FIELDS]
    if unknown:
        raise SubjectPatternError(
            "subject-pattern-unknown",
            fields=" ".join(f"{{{f}}}" for f in PATTERN_FIELDS),
            unknown=" ".join(f"{{{u}}}" for u in unknown),
        )
    return pattern


def subject_from_pattern(issue: Issue, bulletin_name: str, pattern: str) -> str:
    """The subject the pattern gives this issue; a field the issue lacks is left out."""
    values = _Lenient(
        name=bulletin_name,
        title=issue.title,
        period=issue.period or "",
        year=issue.year or "",
        n=issue.number or "",
        total=issue.total_number or "",
    )
    try:
        subject = string.Formatter().vformat(pattern, (), values)
    except (ValueError, IndexError, AttributeError):
        subject = ""  # a broken pattern must not stop a send: fall back to the title
    return " ".join(subject.split())[:SUBJECT_MAX] or issue.title


def subject_pattern(locale: str = "zh") -> str:
    """The subject pattern staff set once for every issue (/admin/settings), for readers
    of `locale`."""
    return site_settings.get_value("subject_pattern_en" if locale == "en" else "subject_pattern")


def _subjects(issue: Issue, bulletin_name: str, bulletin_name_en: str) -> tuple[str, str]:
    """(Chinese readers' subject, English readers'), both patterns read in one query."""
    if issue.subject:
        return issue.subject, issue.subject
    patterns = site_settings.get_values(["subject_pattern", "subject_pattern_en"])
    return (
        subject_from_pattern(issue, bulletin_name, patterns["subject_pattern"]),
        subject_from_pattern(issue, bulletin_name_en, patterns["subject_pattern_en"]),
    )


def issue_subject(issue: Issue, bulletin_name: str, locale: str = "zh") -> str:
    """The subject line readers of `locale` will see: the issue's own (staff wrote it, in
    whatever language), else the staff's pattern for that language."""
    return issue.subject or subject_from_pattern(issue, bulletin_name, subject_pattern(locale))


@dataclass(frozen=True)
class IssueDetails:
    """What staff typed for an issue's masthead and envelope, before it is checked and saved."""

    title: str
    period: str = ""
    subject: str = ""
    preheader: str = ""
    year: int | None = None
    number: int | None = None
    total_number: int | None = None


class IssueDetailsError(ArticleError):
    """An issue value we refuse; `field` names the form field."""


def edit_issue_details(issue_id: int, details: IssueDetails) -> Issue:
    """Change an issue's title, period, subject, preheader and number (flushed, audited).

    Raises `IssueNotEditable` or `IssueDetailsError`. An empty subject follows the pattern,
    an empty preheader is made from the article titles.
    """
    issue = claim_for_edit(issue_id)
    title = details.title.strip()
    if not title:
        raise IssueDetailsError("article-title-missing", field="title")
    for field, value, limit in (
        ("title", title, ISSUE_TITLE_MAX),
        ("period", details.period.strip(), PERIOD_MAX),
        ("subject", details.subject.strip(), SUBJECT_MAX),
        ("preheader", details.preheader.strip(), SUBJECT_MAX),
    ):
        if len(value) > limit:
            raise IssueDetailsError("issue-field-too-long", field=field, count=limit)
    for field, value in (
        ("year", details.year),
        ("number", details.number),
        ("total_number", details.total_number),
    ):
        if value is not None and not 0 < value < 100000:
            raise IssueDetailsError("issue-number-invalid", field=field)
    issue.title = title
    issue.period = details.period.strip()
    issue.subject = details.subject.strip()
    issue.preheader = details.preheader.strip()
    issue.year = details.year
    issue.number = details.number
    issue.total_number = details.total_number
    db.session.flush()
    audit.record("edit-issue", issue_id=issue.id, detail=issue_subject(issue, ""))
    return issue


def number_label(issue: Issue) -> str:
    """ "2022年第8期 · 总第45期" for staff pages and the archive, in the request's language."""
    return format_number(_, issue.year, issue.number, issue.total_number)


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


def issue_content(issue: Issue, bulletin_name: str, bulletin_name_en: str = "") -> IssueContent:
    """Read an issue into the plain structure `rendering` works from, sections in topic order
    (`bulletin_name_en`: the English readers' name in their subject; empty: the Chinese)."""
    subject, subject_en = _subjects(issue, bulletin_name, bulletin_name_en or bulletin_name)
    by_topic: dict[int, list[Article]] = {}
    for article in issue.articles:
        by_topic.setdefault(article.topic_id, []).append(article)
    topics = db.session.scalars(
        select(Topic).where(Topic.id.in_(by_topic)).order_by(Topic.position, Topic.id)
    ).all()
    sections = tuple(
        TopicContent(
            topic_id=topic.id,
            name=topic.name,
            name_en=topic.name_en,
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
        subject=subject,
        subject_en=subject_en,
        preheader=issue.preheader,
        year=issue.year,
        number=issue.number,
        total_number=issue.total_number,
    )


def import_document(
    data: bytes | str, *, max_bytes: int | None = None
) -> tuple[Issue, ImportReport]:
    """Create a new draft issue from a bulletin document; returns it with the import report.

    Sections become topics (matched by name, created when new). Raises `DocumentError` for a
    document we refuse, before anything is written. Importing the same document twice makes
    a second draft: an import never merges into an existing issue. ``max_bytes`` defaults to
    the IMPORT_MAX_MB setting.
    """
    limit = max_bytes if max_bytes is not None else current_app.config["IMPORT_MAX_BYTES"]
    report = parse_document(data, max_bytes=limit)
    topics = {t.name: t for t in ensure_topics([s.name for s in report.sections])}
    # The number the document states wins over the suggestion; a document that prints only
    # "总第45期" still gets 第N期 suggested for its year.
    issue = create_issue(
        report.title,
        period=report.period or "",
        year=report.year,
        number=report.number,
        total_number=report.total_number,
    )
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


# ============================================================================ staff newsroom


def create_blank_issue(title: str, period: str = "") -> Issue:
    """A new, empty draft issue for staff to write articles into (flushed, audited)."""
    issue = create_issue(title.strip(), period=period.strip())
    audit.record("create-issue", issue_id=issue.id, detail=issue.title)
    return issue


def issue_article_counts() -> dict[int, int]:
    """Articles per issue id, in one query (issues without articles are absent)."""
    return dict(
        db.session.execute(select(Article.issue_id, func.count()).group_by(Article.issue_id)).all()
    )


def topic_choices(current_topic_id: int | None = None) -> list[Topic]:
    """The sections an article may be put in: the active ones, plus the one it is already in.

    An article keeps an archived section when it is edited for a typo; it cannot be moved
    into one.
    """
    condition = Topic.active.is_(True)
    if current_topic_id is not None:
        condition = condition | (Topic.id == current_topic_id)
    return list(
        db.session.scalars(select(Topic).where(condition).order_by(Topic.position, Topic.id))
    )


def claim_for_edit(issue_id: int) -> Issue:
    """Mark an issue as changed now, if it may still change; raises `IssueNotEditable`.

    One conditional UPDATE, like the status moves in `publishing`: it bumps `updated_at`
    (previews are cached by it) and holds the row until the caller commits, so an edit and
    a publish cannot interleave: a publish that commits first makes this refuse, and one
    that comes second waits for this edit's commit.
    """
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        raise LookupError(f"issue {issue_id} does not exist")
    claimed = db.session.execute(
        update(Issue)
        .where(Issue.id == issue_id, Issue.status.in_(EDITABLE_STATUSES))
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(issue, ["status", "updated_at"])
    if claimed != 1:
        ensure_editable(issue)  # its status is why the UPDATE matched nothing; says which
        raise IssueNotEditable("issue-changed", id=issue_id)
    review.reopen_after_edit(issue)
    return issue


def change_content_mode(issue_id: int, mode: str) -> Issue:
    """Choose full articles, leads only or automatic for the whole issue (flushed, audited).
    Raises `IssueNotEditable` once sending has started."""
    if mode not in CONTENT_MODES:
        raise ValueError(f"unknown content mode {mode!r}")
    issue = claim_for_edit(issue_id)
    issue.content_mode = mode
    db.session.flush()
    audit.record("content-mode", issue_id=issue.id, detail=mode)
    return issue


def ensure_editable(issue: Issue) -> None:
    """Raise `IssueNotEditable` unless the issue is a draft or scheduled. A check for pages
    that show an edit form; the edit itself is guarded by `claim_for_edit`."""
    if issue.status not in EDITABLE_STATUSES:
        raise IssueNotEditable("issue-not-editable", id=issue.id, status=issue.status)


def _checked(draft: ArticleDraft, *, current_topic_id: int | None = None) -> tuple[dict, Topic]:
    """The draft's values as stored, and its section; raises `ArticleError`.

    The form checks the same things for the person typing; these checks hold for every
    caller. The source URL matters most: email templates link it as it is stored.
    """
    title = draft.title.strip()
    if not title:
        raise ArticleError("article-title-missing", field="title")
    if len(title) > TITLE_MAX:
        raise ArticleError("article-title-too-long", field="title", count=TITLE_MAX)
    if not draft.body.strip():
        raise ArticleError("article-body-missing", field="body")
    if len(draft.body.encode("utf-8")) > BODY_MAX_BYTES:
        raise ArticleError("article-body-too-long", field="body", size=BODY_MAX_BYTES // 1024)
    source_url = source_url_as_typed(draft.source_url)
    if source_url and (safe_url(source_url) != source_url or len(source_url) > SOURCE_URL_MAX):
        raise ArticleError("article-source-url", field="source_url")
    source_name = draft.source_name.strip()
    if len(source_name) > SOURCE_NAME_MAX:
        raise ArticleError(
            "article-source-name-too-long", field="source_name", count=SOURCE_NAME_MAX
        )
    topic = db.session.get(Topic, draft.topic_id)
    if topic is None or not (topic.active or topic.id == current_topic_id):
        raise ArticleError("article-topic-closed", field="topic_id")
    values = {
        "title": title,
        "body": draft.body,
        "lead": draft.lead.strip(),
        "source_name": source_name,
        "source_url": source_url,
    }
    return values, topic


def source_url_as_typed(url: str) -> str:
    """A source link as staff type it, completed: "www.example.com" means
    "https://www.example.com" (a bare "www." address is a web site; nothing else is guessed).
    """
    url = (url or "").strip()
    return f"https://{url}" if url[:4].lower() == "www." else url


def _renumber(issue: Issue) -> None:
    """Positions 0..n-1 in the order readers see the articles: by section, then as arranged.

    Digests group articles by section in section order whatever their positions, so
    keeping positions in that order makes "up" and "down" on the staff page mean what a
    reader will see.
    """
    db.session.flush()
    db.session.expire(issue, ["articles"])
    ordered = sorted(issue.articles, key=lambda a: (a.topic.position, a.topic_id, a.position, a.id))
    for position, article in enumerate(ordered):
        article.position = position
    db.session.flush()
    db.session.expire(issue, ["articles"])


def add_staff_article(issue_id: int, draft: ArticleDraft) -> Article:
    """Write a new article at the end of its section (flushed, audited).

    Raises `IssueNotEditable` or `ArticleError`. An empty lead is made from the body.
    """
    issue = claim_for_edit(issue_id)
    values, topic = _checked(draft)
    article = add_article(
        issue,
        topic,
        values["title"],
        values["body"],
        lead=values["lead"] or make_lead(values["body"]),
        source_name=values["source_name"],
        source_url=values["source_url"],
    )
    _renumber(issue)
    audit.record("add-article", issue_id=issue.id, detail=article.title)
    return article


def edit_article(article: Article, draft: ArticleDraft) -> Article:
    """Change an article's text, source or section (flushed, audited).

    Raises `IssueNotEditable` or `ArticleError`. An article moved to another section goes
    to the end of it. An empty lead is made from the body, and so is one that was still
    the lead made from the old body: staff who rewrote the body and left that lead alone
    get one that matches the new text, while a lead they wrote themselves is kept.
    """
    issue = claim_for_edit(article.issue_id)
    values, topic = _checked(draft, current_topic_id=article.topic_id)
    lead = values["lead"]
    if not lead or (values["body"] != article.body and lead == make_lead(article.body)):
        lead = make_lead(values["body"])
    if topic.id != article.topic_id:
        article.topic = topic
        article.position = len(issue.articles)  # past every other: the end of its section
    article.title = values["title"]
    article.body = values["body"]
    article.lead = lead
    article.source_name = values["source_name"]
    article.source_url = values["source_url"]
    _renumber(issue)
    audit.record("edit-article", issue_id=issue.id, detail=article.title)
    return article


# What a deleted article keeps, and gets back when it is restored where it was.
KEPT_FIELDS = ("topic_id", "position", "title", "source_name", "source_url", "body", "lead")


def delete_article(article: Article, *, deleted_by: str = "") -> DeletedArticle:
    """Remove an article; the others close up (flushed, audited). Raises `IssueNotEditable`.

    The article is kept in `deleted_articles`, so that it can be restored while the issue
    is a draft (`restore_article`). A scheduled issue keeps at least one article:
    scheduling refuses an empty issue, and the sweeper could not publish one.
    """
    issue = claim_for_edit(article.issue_id)
    if issue.status == IssueStatus.SCHEDULED and len(issue.articles) <= 1:
        raise IssueNotEditable("issue-last-article")
    kept = DeletedArticle(
        issue_id=issue.id,
        deleted_by=deleted_by,
        **{name: getattr(article, name) for name in KEPT_FIELDS},
    )
    db.session.add(kept)
    issue.articles.remove(article)  # delete-orphan: the row goes at the flush
    _renumber(issue)
    audit.record("delete-article", issue_id=issue.id, detail=kept.title)
    return kept


def deleted_articles(issue_id: int) -> list[DeletedArticle]:
    """The articles deleted from an issue, most recent first."""
    return list(
        db.session.scalars(
            select(DeletedArticle)
            .where(DeletedArticle.issue_id == issue_id)
            .order_by(DeletedArticle.deleted_at.desc(), DeletedArticle.id.desc())
        )
    )


def restore_article(deleted: DeletedArticle) -> Article:
    """Put a deleted article back where it was (flushed, audited); only while the issue is
    a draft, once content might have gone out it stays deleted. Raises `IssueNotEditable`."""
    issue = db.session.get(Issue, deleted.issue_id)
    if issue.status != IssueStatus.DRAFT:
        raise IssueNotEditable("article-restore-draft-only", id=issue.id)
    issue = claim_for_edit(deleted.issue_id)
    for other in issue.articles:
        if other.position >= deleted.position:
            other.position += 1  # make room at its old place
    article = Article(issue=issue, **{name: getattr(deleted, name) for name in KEPT_FIELDS})
    db.session.add(article)
    db.session.delete(deleted)
    _renumber(issue)
    audit.record("restore-article", issue_id=issue.id, detail=article.title)
    return article


def move_article(article: Article, step: int) -> bool:
    """Swap an article with its neighbour in its section: `step` -1 is up, +1 is down.

    Returns False, changing nothing, when it is already first (or last) in its section.
    Raises `IssueNotEditable`. Flushed and audited when it moves.
    """
    if step not in (-1, 1):
        raise ValueError("step must be -1 or 1")
    issue = claim_for_edit(article.issue_id)
    section = sorted(
        (a for a in issue.articles if a.topic_id == article.topic_id),
        key=lambda a: (a.position, a.id),
    )
    index = section.index(article) + step
    if not 0 <= index < len(section):
        return False
    neighbour = section[index]
    article.position, neighbour.position = neighbour.position, article.position
    _renumber(issue)
    audit.record("move-article", issue_id=issue.id, detail=article.title)
    return True
