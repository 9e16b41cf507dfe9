"""The staff home page: readers at a glance and the recent issues with their figures."""

from __future__ import annotations

from flask import render_template
from sqlalchemy import func, select

from .. import publishing
from ..extensions import db
from ..models import Issue, Subscriber
from . import bp
from .forms import ActionForm


@bp.get("/")
def dashboard():
    issues = db.session.scalars(select(Issue).order_by(Issue.created_at.desc()).limit(50)).all()
    counts = dict(
        db.session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        ).all()
    )
    progress = {i.id: publishing.progress(i.id) for i in issues}
    return render_template(
        "admin/dashboard.html", issues=issues, counts=counts, progress=progress, form=ActionForm()
    )
