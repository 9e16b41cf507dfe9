"""The demo bulletin (webapp/demo/bulletin-2022-08.md) as an `IssueContent`, without a database.

Sections get topic ids 1..4 in the order of the contents and articles ids 1..7 in document
order, so a test can render the digest for any set of sections with `render_digest()`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from webapp.importing import ImportReport, parse_document
from webapp.rendering import ArticleContent, IssueContent, TopicContent

SAMPLE_DOCUMENT = Path(__file__).resolve().parent.parent / "webapp" / "demo" / "bulletin-2022-08.md"
BULLETIN_NAME = "工作简报"
BASE_URL = "https://bulletin.example.org"
ISSUE_ID = 1


@lru_cache(maxsize=1)
def _report() -> ImportReport:
    return parse_document(SAMPLE_DOCUMENT.read_bytes())


def sample_content(mode: str = "auto") -> IssueContent:
    """The sample issue with all its sections; `mode` is the content mode (full/leads/auto)."""
    report = _report()
    articles: dict[str, list[ArticleContent]] = {s.name: [] for s in report.sections}
    for number, imported in enumerate(report.articles, start=1):
        articles[imported.section].append(
            ArticleContent(
                id=number,
                title=imported.title,
                source_name=imported.source_name or "",
                source_url=imported.source_url or "",
                body=imported.body,
                lead=imported.lead,
                web_url=f"{BASE_URL}/issues/{ISSUE_ID}/articles/{number}",
            )
        )
    sections = tuple(
        TopicContent(topic_id=topic_id, name=section.name, articles=tuple(articles[section.name]))
        for topic_id, section in enumerate(report.sections, start=1)
    )
    return IssueContent(
        id=ISSUE_ID,
        title=report.title,
        period=report.period or "",
        bulletin_name=BULLETIN_NAME,
        web_url=f"{BASE_URL}/issues/{ISSUE_ID}",
        sections=sections,
        content_mode=mode,
    )
