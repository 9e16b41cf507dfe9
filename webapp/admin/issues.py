"""Staff pages for issues: dashboard, import, preview, test send, publish."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from .. import held_uploads, identity, preview, queue, review
from .. import issues as issue_service
from ..errors import describe, describe_document_error
from ..extensions import db
from ..importing import DocumentError, parse_document
from ..issues import (
    IssueNotEditable,
    change_content_mode,
    create_blank_issue,
    import_document,
    issue_article_counts,
    issue_topic_ids,
)
from ..models import Issue, Topic
from ..readers import check_size
from ..transactions import transaction
from . import bp
from .auth import is_admin
from .forms import (
    ActionForm,
    ContentModeForm,
    ImportSaveForm,
    ImportUploadForm,
    IssueDetailsForm,
    NewIssueForm,
    ReturnForm,
)
from .sending import sending_context


@bp.route("/issues/import", methods=["GET", "POST"])
@login_required
def import_issue():
    """Upload a document and see the importer's report; nothing is saved at this step.

    The upload is held on the server (see held_uploads) so that saving imports the very
    bytes that were checked, whatever their format.
    """
    form = ImportUploadForm()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("admin/import.html", form=form), status
    upload = form.document.data
    limit = current_app.config["IMPORT_MAX_BYTES"]
    data = upload.read(limit + 1)  # never more than the limit in memory
    try:
        report = parse_document(data, max_bytes=limit)
    except DocumentError as exc:
        form.document.errors.append(f"{upload.filename}: {describe_document_error(exc)}")
        return render_template("admin/import.html", form=form), 400
    ticket = held_uploads.hold_upload(data, current_user.id)
    # formdata=None: the request holds the upload under the same name, which would win.
    save = ImportSaveForm(formdata=None, upload=ticket, filename=upload.filename)
    return render_template("admin/import_report.html", report=report, form=save)


@bp.post("/issues/import/save")
@login_required
def save_import():
    form = ImportSaveForm()
    if not form.validate_on_submit():
        flash(_("表单已过期，请重新上传文件。"))
        return redirect(url_for("admin.import_issue"))
    try:
        path = held_uploads.held_path(form.upload.data, current_user.id)
    except held_uploads.HeldUploadError:
        flash(_("表单已过期，请重新上传文件。"))
        return redirect(url_for("admin.import_issue"))
    limit = current_app.config["IMPORT_MAX_BYTES"]
    try:
        # The limit again: it may have been lowered since the report, and the held file is
        # read only if it is within it.
        check_size(path.stat().st_size, limit)
        with transaction():
            issue, _report = import_document(path.read_bytes(), max_bytes=limit)
    except DocumentError as exc:
        upload = ImportUploadForm()
        upload.document.errors = [f"{form.filename.data}: {describe_document_error(exc)}"]
        return render_template("admin/import.html", form=upload), 400
    held_uploads.release(form.upload.data, current_user.id)
    flash(_("已保存为草稿 #%(id)s：%(title)s", id=issue.id, title=issue.title))
    return redirect(url_for("admin.issue", issue_id=issue.id))


def _issue_page(issue: Issue, details_form: IssueDetailsForm | None = None):
    publisher = identity.current()
    bulletin_name = publisher.name
    return render_template(
        "admin/issue.html",
        issue=issue,
        mode_form=ContentModeForm(mode=issue.content_mode),
        details_form=details_form or IssueDetailsForm(obj=issue),
        subject=issue_service.issue_subject(issue, bulletin_name),
        pattern_subject=issue_service.subject_from_pattern(
            issue, bulletin_name, issue_service.subject_pattern()
        ),
        pattern_subject_en=issue_service.subject_from_pattern(
            issue, publisher.name_en or bulletin_name, issue_service.subject_pattern("en")
        ),
        number_label=issue_service.number_label(issue),
        stage=review.stage_label(issue),
        review_on=review.review_required(),
        # The submitter never reviews their own issue; the domain refuses it too.
        may_review=review.can_review(current_user) and issue.submitted_by != current_user.email,
        return_form=ReturnForm(),
        deleted=issue_service.deleted_articles(issue.id),
        **sending_context(issue),
    )


@bp.get("/issues/<int:issue_id>")
@login_required
def issue(issue_id: int):
    return _issue_page(db.get_or_404(Issue, issue_id))


@bp.post("/issues/<int:issue_id>/details")
@login_required
def edit_issue_details(issue_id: int):
    """Save the title, period, number, subject and preheader of a draft or scheduled issue."""
    issue = db.get_or_404(Issue, issue_id)
    form = IssueDetailsForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        return _issue_page(issue, form), 400
    details = issue_service.IssueDetails(
        title=form.title.data or "",
        period=form.period.data or "",
        subject=form.subject.data or "",
        preheader=form.preheader.data or "",
        year=form.year.data,
        number=form.number.data,
        total_number=form.total_number.data,
    )
    try:
        with transaction():
            issue_service.edit_issue_details(issue.id, details)
    except issue_service.IssueNotEditable as exc:
        flash(describe(exc))
        return _issue_page(issue), 409
    except issue_service.IssueDetailsError as exc:
        getattr(form, exc.field).errors.append(describe(exc))
        return _issue_page(issue, form), 400
    flash(_("已保存本期信息。"))
    return redirect(url_for("admin.issue", issue_id=issue.id))


@bp.post("/issues/<int:issue_id>/mode")
@login_required
def set_content_mode(issue_id: int):
    db.get_or_404(Issue, issue_id)
    form = ContentModeForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        with transaction():
            # The same check, lock and audit entry as every other edit of the issue's content.
            issue = change_content_mode(issue_id, form.mode.data)
    except IssueNotEditable as exc:
        flash(describe(exc))
        return redirect(url_for("admin.issue", issue_id=issue_id)), 409
    flash(_("已保存正文形式。"))
    return redirect(url_for("admin.issue", issue_id=issue.id))


def _preview_request(issue: Issue):
    """The preview asked for by the query string: (preview, error message)."""
    subscriber = request.args.get("subscriber", "").strip()
    if subscriber and not is_admin():
        # Whether an address is a reader, and what they chose, is personal data.
        abort(403)
    try:
        if subscriber:
            return preview.for_subscriber(issue, subscriber), None
        topic_ids = request.args.getlist("topics", type=int)
        if "chosen" not in request.args:
            # A link (the first visit) shows every section; the form says that its boxes
            # were the choice (a hidden "chosen"), so with every box unticked it is an error.
            topic_ids = topic_ids or issue_topic_ids(issue.id)
        return preview.for_topics(issue, topic_ids, request.args.get("locale", "zh")), None
    except preview.PreviewError as exc:
        return None, describe(exc)


@bp.get("/issues/<int:issue_id>/preview")
@login_required
def preview_issue(issue_id: int):
    issue = db.get_or_404(Issue, issue_id)
    shown, error = _preview_request(issue)
    topics = db.session.scalars(
        select(Topic).where(Topic.id.in_(issue_topic_ids(issue_id))).order_by(Topic.position)
    ).all()
    return render_template(
        "admin/preview.html",
        issue=issue,
        topics=topics,
        preview=shown,
        error=error,
        sizes=preview.set_sizes(issue),
        budget=current_app.config["EMAIL_HTML_BUDGET"],
        form=ActionForm(),
    ), (200 if shown else 400)


@bp.get("/issues/<int:issue_id>/preview.html")
@login_required
def preview_frame(issue_id: int):
    """The digest's HTML alone, for the preview's iframe, sandboxed: no script, no forms."""
    shown, error = _preview_request(db.get_or_404(Issue, issue_id))
    if shown is None:
        abort(400, error)
    headers = {
        "Content-Security-Policy": "sandbox allow-popups allow-popups-to-escape-sandbox; "
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "frame-ancestors 'self'",
        "X-Frame-Options": "SAMEORIGIN",
    }
    return shown.html, 200, headers


@bp.post("/issues/<int:issue_id>/test")
@login_required
def send_test(issue_id: int):
    """Queue this section set's digest to the logged-in staff member's own address."""
    issue = db.get_or_404(Issue, issue_id)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    topic_ids = request.form.getlist("topics", type=int) or sorted(issue_topic_ids(issue.id))
    locale = request.form.get("locale", "zh")
    queue.send_test_issue(issue.id, topic_ids, locale, current_user.email)
    flash(_("测试邮件已排队，将发到 %(email)s。", email=current_user.email))
    return redirect(
        url_for("admin.preview_issue", issue_id=issue.id, topics=topic_ids, locale=locale)
    )


def _issues_page(form: NewIssueForm, status: int = 200):
    zone = ZoneInfo(current_app.config["TIMEZONE"])

    def local(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else "—"

    issues = db.session.scalars(select(Issue).order_by(Issue.created_at.desc(), Issue.id.desc()))
    return render_template(
        "admin/issues.html",
        issues=issues.all(),
        counts=issue_article_counts(),
        form=form,
        local=local,
        zone=zone,
        number=issue_service.number_label,
        stage=review.stage_label,
    ), status


@bp.get("/issues")
def issues():
    """Every issue, newest first, and the form for a blank one."""
    return _issues_page(NewIssueForm())


@bp.post("/issues/new")
def new_issue():
    form = NewIssueForm()
    if not form.validate_on_submit():
        return _issues_page(form, 400)
    with transaction():
        issue = create_blank_issue(form.title.data, form.period.data or "")
    flash(_("已新建草稿 #%(id)s：%(title)s。现在可以添加文章。", id=issue.id, title=issue.title))
    return redirect(url_for("admin.issue", issue_id=issue.id))
