"""Staff pages for sending an issue: publish now or later, pause, resume, cancel, resend,
and the live counts. Every action is a POST with a CSRF token; conflicts answer 409."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit, delivery, delivery_log, identity, publishing, review
from ..confirmation import confirmed
from ..delivery import start_send
from ..errors import describe, describe_stored, stored_reason
from ..extensions import db
from ..labels import label
from ..models import DeliveryStatus, Issue, IssueStatus, ReviewStage
from ..queue import dispatch_issue
from ..security import id_arg
from ..transactions import after_commit, transaction
from . import bp
from .auth import admin_only, is_admin
from .forms import ActionForm, ScheduleForm


def _act(
    issue_id: int, action, done: str, *, name: str, queue: bool = False, land: str = "sending"
):
    """Run one status change; a change the issue's state does not allow is a 409 page.

    `done` is the translated message flashed afterwards; `%(count)s` in it is the outcome.
    Staff land on the sending page (`land`="sending"), where they watch what they started,
    or on the issue's page ("issue") for changes that send nothing."""
    db.get_or_404(Issue, issue_id)
    if not ActionForm().validate_on_submit():
        return render_template("admin/conflict.html", message=_("表单已过期，请刷新后重试。")), 400
    try:
        with transaction():
            outcome = action()
            # A count (readers planned, rows skipped or requeued) is worth keeping with it.
            detail = str(outcome) if isinstance(outcome, int) else ""
            audit.record(name, issue_id=issue_id, detail=detail)
            if queue:
                after_commit(lambda: dispatch_issue(issue_id))
    except publishing.PublishError as exc:
        return render_template("admin/conflict.html", message=describe(exc)), 409
    flash(done % {"count": outcome})
    endpoint = "admin.sending_page" if land == "sending" else "admin.issue"
    return redirect(url_for(endpoint, issue_id=issue_id))


@bp.context_processor
def _last_stop():
    # For the sending panel, on every page that includes it.
    return {"last_stop": delivery.last_stop}


@bp.post("/issues/<int:issue_id>/publish")
def publish(issue_id: int):
    return _act(
        issue_id,
        lambda: start_send(issue_id, dispatch_issue),
        _("已开始发送，共 %(count)s 位读者。"),
        name="publish",
    )


@bp.post("/issues/<int:issue_id>/pause")
def pause(issue_id: int):
    reason = stored_reason("paused-by", current_user.email)
    return _act(
        issue_id, lambda: publishing.pause_issue(issue_id, reason), _("已暂停发送。"), name="pause"
    )


@bp.post("/issues/<int:issue_id>/resume")
def resume(issue_id: int):
    return _act(
        issue_id,
        lambda: publishing.resume_issue(issue_id),
        _("已继续发送。"),
        name="resume",
        queue=True,
    )


@bp.post("/issues/<int:issue_id>/cancel")
def cancel(issue_id: int):
    """Cancel for good: the first POST says how many readers would not get the issue."""
    issue = db.get_or_404(Issue, issue_id)
    if not confirmed():
        if not ActionForm().validate_on_submit():
            abort(400)
        counts = publishing.progress(issue_id)
        if issue.status == IssueStatus.SCHEDULED:
            what = _("取消发送：定时发布取消，本期不会发出。")
        else:
            left = counts["pending"] + counts["sending"]
            what = _("取消发送：还有 %(count)s 位读者不会收到本期。", count=f"{left:,}")
        return render_template(
            "admin/confirm_action.html",
            title=_("取消发送"),
            what=what,
            note=_("取消后不能恢复；已经发出的邮件不受影响。"),
            action=url_for("admin.cancel", issue_id=issue_id),
            button=_("确认取消发送"),
            back=url_for("admin.sending_page", issue_id=issue_id),
        )
    return _act(
        issue_id,
        lambda: publishing.cancel_issue(issue_id),
        _("已取消发送，%(count)s 位读者不再发送。"),
        name="cancel",
    )


@bp.post("/issues/<int:issue_id>/resend/<status>")
def resend(issue_id: int, status: str):
    if status not in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
        message = _("只能重发失败或未知的邮件。")
        return render_template("admin/conflict.html", message=message), 400
    return _act(
        issue_id,
        lambda: publishing.resend(issue_id, DeliveryStatus(status)),
        _("已重新排队 %(count)s 封。"),
        name=f"resend-{status}",
        queue=True,
    )


@bp.post("/issues/<int:issue_id>/schedule")
def schedule(issue_id: int):
    db.get_or_404(Issue, issue_id)
    form = ScheduleForm()
    if not form.validate_on_submit():
        errors = _("；").join(str(error) for error in form.when.errors)
        errors = errors or _("表单已过期，请刷新后重试。")
        return render_template("admin/conflict.html", message=errors), 400
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    when = form.when.data.replace(tzinfo=zone)
    try:
        with transaction():
            publishing.schedule_issue(issue_id, when)
            audit.record("schedule", issue_id=issue_id, detail=f"{when.isoformat()}")
    except publishing.PublishError as exc:
        return render_template("admin/conflict.html", message=describe(exc)), 409
    flash(_("将于 %(when)s（%(zone)s）自动发布。", when=f"{when:%Y-%m-%d %H:%M}", zone=zone.key))
    return redirect(url_for("admin.issue", issue_id=issue_id))


@bp.post("/issues/<int:issue_id>/unschedule")
def unschedule(issue_id: int):
    return _act(
        issue_id,
        lambda: publishing.unschedule_issue(issue_id),
        _("已取消定时发布。"),
        name="unschedule",
        land="issue",
    )


@bp.get("/issues/<int:issue_id>/progress.json")
def progress_json(issue_id: int):
    issue = db.get_or_404(Issue, issue_id)
    figures = publishing.sending_figures(issue_id)
    return jsonify(
        status=issue.status.value,
        status_label=label(issue.status),
        pause_reason=describe_stored(issue.pause_reason),
        counts=figures["counts"],
        total=figures["total"],
        done=figures["done"],
        percent=figures["percent"],
        rate=round(figures["rate"], 1),
        seconds_left=figures["seconds_left"],
        rate_label=rate_label(figures["rate"]),
        time_left_label=time_left_label(figures["seconds_left"]),
    )


def rate_label(rate: float) -> str:
    return _("%(rate)s 封/秒", rate=f"{rate:,.1f}") if rate else "—"


def time_left_label(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return _("约 %(seconds)s 秒", seconds=max(seconds, 1))
    if seconds < 3600:
        return _("约 %(minutes)s 分 %(seconds)s 秒", minutes=seconds // 60, seconds=seconds % 60)
    return _(
        "约 %(hours)s 小时 %(minutes)s 分", hours=seconds // 3600, minutes=seconds % 3600 // 60
    )


@bp.get("/issues/<int:issue_id>/publish")
def confirm_publish(issue_id: int):
    """Before publishing: how many readers get it, per section; then publish or schedule."""
    issue = db.get_or_404(Issue, issue_id)
    total, per_section = publishing.audience(issue_id)
    return render_template(
        "admin/publish_confirm.html",
        issue=issue,
        total=total,
        per_section=per_section,
        needs_approval=issue.status == IssueStatus.DRAFT
        and review.review_required()
        and issue.review_stage != ReviewStage.APPROVED,
        stage=review.stage_label(issue),
        identity_problem=_identity_problem(),
        **sending_context(issue),
    )


def _identity_problem() -> str:
    """Why publishing would be refused for want of a postal address, said before the click."""
    try:
        identity.ensure_publishable()
    except identity.IdentityError as exc:
        return describe(exc)
    return ""


@bp.get("/issues/<int:issue_id>/sending")
def sending_page(issue_id: int):
    """Live progress, then the per-recipient log with a filter, pages and a CSV."""
    issue = db.get_or_404(Issue, issue_id)
    status = request.args.get("status") or None
    status = DeliveryStatus(status) if status in set(DeliveryStatus) else None
    search = request.args.get("q", "")
    rows, next_after = [], None
    if is_admin():  # the per-recipient log names readers; editors see the counts above it
        rows, next_after = delivery_log.page(
            issue_id, status=status, search=search, after_id=id_arg("after") or 0
        )
    return render_template(
        "admin/sending_page.html",
        issue=issue,
        rows=rows,
        next_after=next_after,
        status=status,
        search=search,
        statuses=list(DeliveryStatus),
        history=audit.entries(issue_id=issue_id),
        **sending_context(issue),
    )


@bp.get("/issues/<int:issue_id>/deliveries.csv")
@admin_only
def deliveries_csv(issue_id: int):
    db.get_or_404(Issue, issue_id)
    status = request.args.get("status") or None
    status = DeliveryStatus(status) if status in set(DeliveryStatus) else None
    return Response(
        stream_with_context(delivery_log.csv_lines(issue_id, status=status)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="issue-{issue_id}-deliveries.csv"'},
    )


def sending_context(issue: Issue) -> dict:
    zone = ZoneInfo(current_app.config["TIMEZONE"])
    figures = publishing.sending_figures(issue.id)
    return {
        "progress": figures["counts"],
        "figures": figures,
        "rate_label": rate_label(figures["rate"]),
        "time_left_label": time_left_label(figures["seconds_left"]),
        "form": ActionForm(),
        "schedule_form": ScheduleForm(),
        "zone": zone,
        "scheduled_local": issue.scheduled_at.astimezone(zone) if issue.scheduled_at else None,
        "refresh": request.args.get("refresh", type=int),
    }
