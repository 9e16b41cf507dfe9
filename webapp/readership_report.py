"""The readership report: per issue, what each section and article earned, from counts only.

Everything here is an aggregate: recipients per section (kept when the issue was
published), clicks and page views per article (from `read_counts`), and unsubscribes per
section in the 7 days after the issue (counted by the hour as readers leave, never listed).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from .extensions import db
from .i18n import topic_name
from .models import (
    Article,
    Issue,
    ReadCount,
    SectionDepartures,
    Topic,
    TopicRecipients,
)
from .readership import (
    COUNTED_STATUSES,
    ISSUE_PAGE,
    LEFT_ALTOGETHER,
    LinkKind,
    recipients_query,
)
from .spreadsheet import formula_safe

UNSUBSCRIBE_WINDOW = timedelta(days=7)
CHART_ISSUES = 12


def per_thousand(clicks: int, recipients: int) -> float | None:
    """Clicks per 1,000 recipients, one decimal; None when nobody received the section."""
    return round(clicks * 1000 / recipients, 1) if recipients else None


@dataclass
class ArticleFigures:
    id: int
    title: str
    topic_id: int
    read_more: int = 0  # clicks on the article's web-version links in the email (title, 阅读全文)
    source: int = 0  # clicks on its source link in the email
    page_views: int = 0  # views of its web page, from anywhere

    @property
    def clicks(self) -> int:
        return self.read_more + self.source


@dataclass
class TopicFigures:
    topic_id: int
    name: str
    name_en: str | None = None  # for English pages (i18n.topic_name)
    recipients: int = 0
    unsubscribes: int = 0  # readers who stopped this section in the window
    articles: list[ArticleFigures] = field(default_factory=list)

    @property
    def clicks(self) -> int:
        return sum(a.clicks for a in self.articles)

    @property
    def rate(self) -> float | None:
        return per_thousand(self.clicks, self.recipients)


@dataclass
class IssueReport:
    issue: Issue
    topics: list[TopicFigures]
    counted: int  # clicks and page views counted
    filtered: int  # requests left out as scanners or prefetchers
    issue_page_views: int
    left_altogether: int  # readers who unsubscribed from everything in the window
    window_start: datetime | None
    window_end: datetime | None
    recipients_recorded: bool  # False: counted now from the readers' current topics


def issue_report(issue: Issue) -> IssueReport:
    """The figures for one issue, in a few aggregate queries whatever the audience's size."""
    articles = db.session.execute(
        select(Article.id, Article.title, Article.topic_id)
        .where(Article.issue_id == issue.id)
        .order_by(Article.position, Article.id)
    ).all()
    topic_ids = {a.topic_id for a in articles}
    names = db.session.execute(
        select(Topic.id, Topic.name, Topic.name_en)
        .where(Topic.id.in_(topic_ids))
        .order_by(Topic.position, Topic.id)
    ).all()
    topics = {t.id: TopicFigures(t.id, t.name, t.name_en) for t in names}
    by_id: dict[int, ArticleFigures] = {}
    for a in articles:
        by_id[a.id] = ArticleFigures(a.id, a.title, a.topic_id)
        topics[a.topic_id].articles.append(by_id[a.id])

    counted = filtered = issue_page_views = 0
    rows = db.session.execute(
        select(
            ReadCount.article_id,
            ReadCount.kind,
            func.sum(ReadCount.counted),
            func.sum(ReadCount.filtered),
        )
        .where(ReadCount.issue_id == issue.id)
        .group_by(ReadCount.article_id, ReadCount.kind)
    )
    for article_id, kind, n, f in rows:
        counted, filtered = counted + (n or 0), filtered + (f or 0)
        if article_id == ISSUE_PAGE:
            issue_page_views += n or 0
            continue
        figures = by_id.get(article_id)
        if figures is None:
            continue
        if kind == LinkKind.WEB:
            figures.read_more += n or 0
        elif kind == LinkKind.SOURCE:
            figures.source += n or 0
        elif kind == LinkKind.PAGE:
            figures.page_views += n or 0

    recorded = dict(
        db.session.execute(
            select(TopicRecipients.topic_id, TopicRecipients.recipients).where(
                TopicRecipients.issue_id == issue.id
            )
        ).all()
    )
    recipients_recorded = bool(recorded)
    if not recorded and issue.status in COUNTED_STATUSES:
        # Published before recipients were recorded: the readers' topics as they are now.
        recorded = dict(db.session.execute(recipients_query(issue.id, topic_ids)).all())
    for topic_id, n in recorded.items():
        if topic_id in topics:
            topics[topic_id].recipients = n

    left = 0
    start = issue.published_at
    end = start + UNSUBSCRIBE_WINDOW if start else None
    if start:
        left = _unsubscribes(topics, start, end)
    return IssueReport(
        issue=issue,
        topics=list(topics.values()),
        counted=counted,
        filtered=filtered,
        issue_page_views=issue_page_views,
        left_altogether=left,
        window_start=start,
        window_end=end,
        recipients_recorded=recipients_recorded,
    )


def _unsubscribes(topics: dict[int, TopicFigures], start: datetime, end: datetime) -> int:
    """Count, per section, readers who stopped it between start and end, by the hour they
    left (from the hour of `start`); return how many left altogether. A reader who left
    altogether counts for each section they had. One query over at most 168 rows a section,
    whatever the number of readers (readership.count_departures keeps the counts)."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    left = 0
    for topic_id, n in db.session.execute(
        select(SectionDepartures.topic_id, func.sum(SectionDepartures.readers))
        .where(
            SectionDepartures.topic_id.in_([LEFT_ALTOGETHER, *topics]),
            SectionDepartures.hour >= hour,
            SectionDepartures.hour < hour + (end - start),
        )
        .group_by(SectionDepartures.topic_id)
    ):
        if topic_id == LEFT_ALTOGETHER:
            left = n or 0
        else:
            topics[topic_id].unsubscribes = n or 0
    return left


# -- the dashboard's view: click rate per section over the last issues ------------------------


@dataclass(frozen=True)
class RateHistory:
    issues: list[Issue]  # oldest first
    topics: list[tuple[int, str]]  # (topic id, name in the page's language), in section order
    rates: dict[int, list[float]]  # topic id -> clicks per 1,000 recipients, one per issue


def rate_history(limit: int = CHART_ISSUES) -> RateHistory:
    """Each section's click rate in the last `limit` published issues (0 where a section was
    not in an issue)."""
    issues = list(
        db.session.scalars(
            select(Issue)
            .where(Issue.status.in_(COUNTED_STATUSES), Issue.published_at.is_not(None))
            .order_by(Issue.published_at.desc(), Issue.id.desc())
            .limit(limit)
        )
    )[::-1]
    ids = [i.id for i in issues]
    clicks = {
        (issue_id, topic_id): n or 0
        for issue_id, topic_id, n in db.session.execute(
            select(ReadCount.issue_id, Article.topic_id, func.sum(ReadCount.counted))
            .join(Article, Article.id == ReadCount.article_id)
            .where(
                ReadCount.issue_id.in_(ids),
                ReadCount.kind.in_([LinkKind.WEB.value, LinkKind.SOURCE.value]),
            )
            .group_by(ReadCount.issue_id, Article.topic_id)
        )
    }
    recipients = {
        (r.issue_id, r.topic_id): r.recipients
        for r in db.session.scalars(
            select(TopicRecipients).where(TopicRecipients.issue_id.in_(ids))
        )
    }
    topic_ids = {topic_id for _, topic_id in recipients}
    topics = [
        (t.id, topic_name(t))
        for t in db.session.execute(
            select(Topic.id, Topic.name, Topic.name_en)
            .where(Topic.id.in_(topic_ids))
            .order_by(Topic.position, Topic.id)
        )
    ]
    rates = {
        topic_id: [
            per_thousand(
                clicks.get((issue_id, topic_id), 0), recipients.get((issue_id, topic_id), 0)
            )
            or 0.0
            for issue_id in ids
        ]
        for topic_id, _ in topics
    }
    return RateHistory(issues, topics, rates)


# -- CSV -------------------------------------------------------------------------------------

CSV_HEADER = [
    "row",
    "section",
    "article",
    "recipients",
    "clicks",
    "clicks_per_1000_recipients",
    "read_more_clicks",
    "source_clicks",
    "page_views",
    "unsubscribes_7_days",
]


def report_csv(report: IssueReport) -> str:
    """The report as CSV: a line per section, then a line per article; formula-safe cells."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for s in report.topics:
        rate = "" if s.rate is None else f"{s.rate:.1f}"
        writer.writerow(
            ["section", formula_safe(s.name), "", s.recipients, s.clicks, rate, "", "", "",
             s.unsubscribes]
        )  # fmt: skip
    for s in report.topics:
        for a in s.articles:
            writer.writerow(
                ["article", formula_safe(s.name), formula_safe(a.title), "", a.clicks, "",
                 a.read_more, a.source, a.page_views, ""]
            )  # fmt: skip
    writer.writerow(
        ["issue_page", "", "", "", "", "", "", "", report.issue_page_views, report.left_altogether]
    )
    writer.writerow(["filtered_as_scanners", "", "", "", report.filtered, "", "", "", "", ""])
    return out.getvalue()
