"""Staff pages for review (送审 / 审核): submit, approve, return with a comment.

The rules (who may, from which stage, what an edit undoes) live in `webapp.review`; these
views turn forms into calls, commit (`transaction()`), and only then queue the reviewers'
emails (`after_commit()`).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from .. import queue, review
from ..errors import describe
from ..extensions import db
from ..models import Issue
from ..transactions import after_commit, transaction
from . import bp
from .forms import ActionForm, ReturnForm


def _refused(message: str):
    return render_template("admin/conflict.html", message=message), 409


@bp.post("/issues/<int:issue_id>/submit-review")
def submit_review(issue_id: int):
    """送审: the issue goes to every reviewer but the submitter, each by email."""
    db.get_or_404(Issue, issue_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        with transaction():
            review.submit(issue_id, current_user)
            addresses = [user.email for user in review.reviewers(besides=current_user.email)]
            for address in addresses:
                after_commit(lambda address=address: queue.send_review_request(issue_id, address))
    except review.ReviewError as exc:
        return _refused(describe(exc))
    if addresses:
        flash(_("已送审，审核通知和测试邮件已发给 %(who)s。", who=_("、").join(addresses)))
    else:
        flash(_("已送审。还没有其他审核人：请管理员添加审核人（角色 reviewer）。"))
    return redirect(url_for("admin.issue", issue_id=issue_id))


@bp.post("/issues/<int:issue_id>/approve")
def approve_review(issue_id: int):
    """审核通过: now it may be published or scheduled."""
    db.get_or_404(Issue, issue_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        with transaction():
            review.approve(issue_id, current_user)
    except review.ReviewError as exc:
        return _refused(describe(exc))
    flash(_("已审核通过，现在可以发布或定时发布。"))
    return redirect(url_for("admin.issue", issue_id=issue_id))


@bp.post("/issues/<int:issue_id>/return")
def return_review(issue_id: int):
    """退回修改, with a comment the editor reads on the issue page."""
    db.get_or_404(Issue, issue_id)
    form = ReturnForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(400)
        return _refused(_("；").join(str(e) for e in form.comment.errors))
    try:
        with transaction():
            review.return_for_changes(issue_id, current_user, form.comment.data or "")
    except review.ReviewError as exc:
        return _refused(describe(exc))
    flash(_("已退回修改。"))
    return redirect(url_for("admin.issue", issue_id=issue_id))
