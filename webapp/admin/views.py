"""Staff pages: login, the issue list, publishing."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user
from sqlalchemy import func, select

from .. import delivery, staff
from ..extensions import db, login_manager
from ..models import Issue, StaffUser, Subscriber
from . import bp
from .forms import ActionForm, LoginForm

login_manager.login_view = "admin.login"


@login_manager.user_loader
def load_user(user_id: str) -> StaffUser | None:
    return db.session.get(StaffUser, int(user_id))


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = staff.authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user)
            return redirect(url_for("admin.dashboard"))
        form.password.errors.append("邮箱或密码不正确。")
    return render_template("admin/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    return redirect(url_for("admin.login"))


@bp.get("/")
@login_required
def dashboard():
    issues = db.session.scalars(select(Issue).order_by(Issue.created_at.desc()).limit(50)).all()
    counts = dict(
        db.session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        ).all()
    )
    progress = {i.id: delivery.progress(i.id) for i in issues}
    return render_template(
        "admin/dashboard.html", issues=issues, counts=counts, progress=progress, form=ActionForm()
    )


@bp.post("/issues/<int:issue_id>/publish")
@login_required
def publish(issue_id: int):
    form = ActionForm()
    if not form.validate_on_submit():
        return "bad request", 400
    try:
        planned = delivery.publish_issue(issue_id)
    except delivery.PublishError as exc:
        db.session.rollback()
        flash(str(exc))
        return render_template("admin/conflict.html", message=str(exc)), 409
    db.session.commit()
    from tasks.sending import dispatch_issue

    dispatch_issue.delay(issue_id)
    flash(f"已开始发送，共 {planned} 位读者。")
    return redirect(request.referrer or url_for("admin.dashboard"))
