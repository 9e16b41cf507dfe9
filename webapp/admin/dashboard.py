"""The staff home page: readers at a glance, sign-ups over time, and the recent issues with
their figures."""

from __future__ import annotations

from flask import render_template
from flask_babel import gettext as _
from sqlalchemy import select

from .. import charts, directory, publishing
from ..extensions import db
from ..labels import LABELS
from ..models import Issue, SubscriberStatus
from . import bp
from .forms import ActionForm
from .readership import rate_chart as readership_rate_chart

CHART_DAYS = 90


def _signup_chart(daily: charts.DailyCounts):
    busiest = max(range(len(daily.days)), key=lambda i: daily.signups[i])
    summary = _(
        "%(first)s 至 %(last)s（UTC）每天的新订阅和退订："
        "新订阅共 %(signups)s 次，退订共 %(unsubscribes)s 次",
        first=f"{daily.days[0]:%Y-%m-%d}",
        last=f"{daily.days[-1]:%Y-%m-%d}",
        signups=daily.total_signups,
        unsubscribes=daily.total_unsubscribes,
    )
    if daily.total_signups:
        day, count = daily.days[busiest], daily.signups[busiest]
        summary += _(
            "；新订阅最多的一天是 %(day)s，%(count)s 次", day=f"{day:%Y-%m-%d}", count=count
        )
    return charts.svg_chart(
        daily.days,
        [
            charts.Series("signups", _("新订阅"), daily.signups, color="#1d4ed8"),
            charts.Series(
                "unsubscribes", _("退订"), daily.unsubscribes, color="#9b1c1c", dashed=True
            ),
        ],
        title=_("近 %(days)s 天的新订阅与退订", days=len(daily.days)),
        description=summary + _("。"),
        x_label=_("日期（UTC）"),
        y_label=_("次数"),
        chart_id="signups-chart",
    )


@bp.get("/")
def dashboard():
    issues = db.session.scalars(select(Issue).order_by(Issue.created_at.desc()).limit(50)).all()
    progress = publishing.progress_many([i.id for i in issues])
    daily = charts.daily_counts(CHART_DAYS)
    rates, rate_chart = readership_rate_chart()
    return render_template(
        "admin/dashboard.html",
        issues=issues,
        progress=progress,
        by_status=directory.counts_by_status(),
        by_topic=directory.counts_by_topic(),
        status_labels=LABELS[SubscriberStatus],
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
        rates=rates,
        rate_chart=rate_chart,
        form=ActionForm(),
    )
