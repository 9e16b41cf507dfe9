"""Staff pages for readership (editors too: every figure is an aggregate): the per-issue
report, its CSV, and the click-rate chart shown on the dashboard."""

from __future__ import annotations

from flask import Response, render_template
from flask_babel import gettext as _
from markupsafe import Markup

from .. import charts, readership, readership_report
from ..extensions import db
from ..models import Issue
from . import bp

# Enough distinct colours for a bulletin's sections; every other series is also dashed, so
# they differ by more than colour.
PALETTE = ("#1d4ed8", "#9b1c1c", "#047857", "#b45309", "#6d28d9", "#0e7490", "#be185d")


@bp.get("/issues/<int:issue_id>/readership")
def readership_page(issue_id: int):
    issue = db.get_or_404(Issue, issue_id)
    report = readership_report.issue_report(issue)
    return render_template(
        "admin/readership.html",
        issue=issue,
        report=report,
        counting_on=readership.counting_on(),
        scanner_agents=readership.SCANNER_AGENTS,
    )


@bp.get("/issues/<int:issue_id>/readership.csv")
def readership_csv(issue_id: int):
    issue = db.get_or_404(Issue, issue_id)
    body = readership_report.report_csv(readership_report.issue_report(issue))
    return Response(
        "\ufeff" + body,  # the BOM makes spreadsheet programs read the Chinese as UTF-8
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="issue-{issue_id}-readership.csv"'},
    )


def rate_chart() -> tuple[readership_report.RateHistory, Markup | None]:
    """The last issues' click rate per section, as figures and as a chart (None: no issue)."""
    history = readership_report.rate_history()
    if not history.issues or not history.topics:
        return history, None
    labels = [
        _("第%(number)s期", number=i.number) if i.number else f"#{i.id}" for i in history.issues
    ]
    series = [
        charts.Series(
            f"section-{topic_id}",
            name,
            history.rates[topic_id],
            color=PALETTE[n % len(PALETTE)],
            dashed=n % 2 == 1,
        )
        for n, (topic_id, name) in enumerate(history.topics)
    ]
    chart = charts.svg_chart(
        [i.published_at.date() for i in history.issues],
        series,
        title=_("近 %(count)s 期各栏目的点击率", count=len(history.issues)),
        description=_("每期每个栏目的链接点击次数，按每千位收件人计；数据表见图下。"),
        x_label=_("期"),
        y_label=_("每千人点击"),
        chart_id="readership-chart",
        labels=labels,
        tick_every=1,
    )
    return history, chart
