"""The staff home page: readers at a glance, sign-ups over time, and the recent issues with
their figures."""

from __future__ import annotations

from flask import render_template
from sqlalchemy import select

from .. import charts, directory, publishing
from ..extensions import db
from ..models import Issue, SubscriberStatus
from . import bp
from .forms import ActionForm

CHART_DAYS = 90

STATUS_LABELS = {
    SubscriberStatus.ACTIVE: "正在接收",
    SubscriberStatus.PENDING: "待确认",
    SubscriberStatus.UNSUBSCRIBED: "已退订",
    SubscriberStatus.BOUNCED: "退信",
    SubscriberStatus.COMPLAINED: "投诉",
}


def _signup_chart(daily: charts.DailyCounts):
    busiest = max(range(len(daily.days)), key=lambda i: daily.signups[i])
    summary = (
        f"{daily.days[0]:%Y-%m-%d} 至 {daily.days[-1]:%Y-%m-%d}（UTC）每天的新订阅和退订："
        f"新订阅共 {daily.total_signups} 次，退订共 {daily.total_unsubscribes} 次"
    )
    if daily.total_signups:
        day, count = daily.days[busiest], daily.signups[busiest]
        summary += f"；新订阅最多的一天是 {day:%Y-%m-%d}，{count} 次"
    return charts.svg_chart(
        daily.days,
        [
            charts.Series("signups", "新订阅", daily.signups, color="#1d4ed8"),
            charts.Series("unsubscribes", "退订", daily.unsubscribes, color="#9b1c1c", dashed=True),
        ],
        title=f"近 {len(daily.days)} 天的新订阅与退订",
        description=summary + "。",
        x_label="日期（UTC）",
        y_label="次数",
        chart_id="signups-chart",
    )


@bp.get("/")
def dashboard():
    issues = db.session.scalars(select(Issue).order_by(Issue.created_at.desc()).limit(50)).all()
    progress = {i.id: publishing.progress(i.id) for i in issues}
    daily = charts.daily_counts(CHART_DAYS)
    return render_template(
        "admin/dashboard.html",
        issues=issues,
        progress=progress,
        by_status=directory.counts_by_status(),
        by_topic=directory.counts_by_topic(),
        status_labels=STATUS_LABELS,
        daily=daily,
        # Days with any activity, newest first: the chart's figures as a table.
        active_days=[
            (day, signed_up, left)
            for day, signed_up, left in reversed(
                list(zip(daily.days, daily.signups, daily.unsubscribes, strict=True))
            )
            if signed_up or left
        ],
        chart=_signup_chart(daily),
        form=ActionForm(),
    )
