"""Staff newsroom: writing the articles of a draft or scheduled issue (add, edit with a
server-side preview, delete, move).

The rules (what may change when, positions, leads, audit) live in `webapp.issues`; these
views turn forms into `ArticleDraft`s and the domain's refusals into messages.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup

from .. import issues
from ..confirmation import confirmed
from ..errors import describe
from ..extensions import db
from ..importing import make_lead
from ..models import Article, DeletedArticle, Issue, IssueStatus
from ..rendering import markdown_to_html
from ..transactions import rollback, transaction
from . import bp
from .forms import ActionForm, ArticleForm
from .issues import issue as issue_page

# ----------------------------------------------------------------------------- articles


def _article_of(issue_id: int, article_id: int) -> Article:
    article = db.get_or_404(Article, article_id)
    if article.issue_id != issue_id:
        abort(404)
    return article


def _refused(issue_id: int, message: str):
    """The issue page with the reason on top, as a 409: the content shown is unchanged."""
    rollback()  # whatever the refused edit locked or loaded
    flash(message)
    return issue_page(issue_id), 409


def _preview_of(body: str, lead: str) -> dict:
    """The body rendered as readers will get it, and the lead they will see."""
    return {
        # markdown_to_html sanitizes (nh3): whatever was typed, no script survives.
        "body_html": Markup(markdown_to_html(body)),
        "lead": lead.strip() or make_lead(body),
        "lead_generated": not lead.strip(),
    }


def _form_page(form: ArticleForm, issue: Issue, article: Article | None, status: int = 200):
    """The article form; after "预览", the body rendered as readers will get it, beside it."""
    preview = None
    if form.preview.data and form.body.data and not form.body.errors:
        preview = _preview_of(form.body.data, form.lead.data or "")
    return render_template(
        "admin/article_form.html", form=form, issue=issue, article=article, preview=preview
    ), status


@bp.post("/articles/preview")
def article_preview():
    """The live preview beside the editor (editor.js posts the form here as staff type): the
    same fragment the "预览" round trip shows. Staff only and CSRF-checked, like every POST."""
    body = request.form.get("body", "")
    if len(body.encode("utf-8")) > issues.BODY_MAX_BYTES:
        message = _("正文超过 %(size)s KB，请拆成几篇。", size=issues.BODY_MAX_BYTES // 1024)
        return render_template("admin/_article_preview.html", too_long=message), 413
    return render_template(
        "admin/_article_preview.html",
        title=request.form.get("title", "").strip(),
        source_name=request.form.get("source_name", "").strip(),
        preview=_preview_of(body, request.form.get("lead", "")) if body.strip() else None,
    )


def _save(form: ArticleForm, issue: Issue, article: Article | None, write):
    """Preview, or run `write` and commit; a refusal becomes a field error or a 409 page."""
    if not form.validate_on_submit():
        if request.method == "POST" and "csrf_token" in form.errors:
            abort(400)
        # A preview shows what is missing too, but it is not a failed save.
        failed_save = request.method == "POST" and not form.preview.data
        return _form_page(form, issue, article, 400 if failed_save else 200)
    if form.preview.data:
        return _form_page(form, issue, article)
    try:
        with transaction():
            saved = write(form.draft())
    except issues.IssueNotEditable as exc:
        return _refused(issue.id, describe(exc))
    except issues.ArticleError as exc:
        getattr(form, exc.field).errors.append(describe(exc))
        return _form_page(form, issue, article, 400)
    flash(_("已保存：%(title)s", title=saved.title))
    return redirect(url_for("admin.issue", issue_id=issue.id, _anchor="articles"))


def _editable_or_refused(issue: Issue):
    try:
        issues.ensure_editable(issue)
    except issues.IssueNotEditable as exc:
        return _refused(issue.id, describe(exc))
    return None


@bp.route("/issues/<int:issue_id>/articles/new", methods=["GET", "POST"])
def new_article(issue_id: int):
    issue = db.get_or_404(Issue, issue_id)
    if refused := _editable_or_refused(issue):
        return refused
    form = ArticleForm()
    return _save(form, issue, None, lambda draft: issues.add_staff_article(issue.id, draft))


@bp.route("/issues/<int:issue_id>/articles/<int:article_id>/edit", methods=["GET", "POST"])
def edit_article(issue_id: int, article_id: int):
    issue = db.get_or_404(Issue, issue_id)
    article = _article_of(issue_id, article_id)
    if refused := _editable_or_refused(issue):
        return refused
    form = ArticleForm(obj=article, current_topic_id=article.topic_id)
    return _save(form, issue, article, lambda draft: issues.edit_article(article, draft))


@bp.post("/issues/<int:issue_id>/articles/<int:article_id>/delete")
def delete_article(issue_id: int, article_id: int):
    """Delete an article: the first POST asks (names the article), the second deletes."""
    article = _article_of(issue_id, article_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    issue = db.session.get(Issue, issue_id)
    if refused := _editable_or_refused(issue):
        return refused  # no point asking to confirm what cannot be done
    if not confirmed():
        return render_template(
            "admin/confirm_action.html",
            title=_("删除文章"),
            what=_("删除《%(title)s》：它将从第 %(id)s 期移除。", title=article.title, id=issue_id),
            note=_("草稿中删除的文章可以在本期页面恢复。")
            if issue.status == IssueStatus.DRAFT
            else _("这一期已定时发布：要恢复删除的文章，需先取消定时。"),
            action=url_for("admin.delete_article", issue_id=issue_id, article_id=article_id),
            button=_("确认删除"),
            back=url_for("admin.issue", issue_id=issue_id, _anchor=f"article-{article_id}"),
        )
    title = article.title
    try:
        with transaction():
            issues.delete_article(article, deleted_by=current_user.email)
    except issues.IssueNotEditable as exc:
        return _refused(issue_id, describe(exc))
    flash(_("已删除：%(title)s（可在下方“已删除的文章”中恢复）", title=title))
    return redirect(url_for("admin.issue", issue_id=issue_id, _anchor="articles"))


@bp.post("/issues/<int:issue_id>/deleted/<int:deleted_id>/restore")
def restore_article(issue_id: int, deleted_id: int):
    """Undo a deletion while the issue is a draft."""
    deleted = db.get_or_404(DeletedArticle, deleted_id)
    if deleted.issue_id != issue_id:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        with transaction():
            article = issues.restore_article(deleted)
    except issues.IssueNotEditable as exc:
        return _refused(issue_id, describe(exc))
    flash(_("已恢复：%(title)s", title=article.title))
    return redirect(url_for("admin.issue", issue_id=issue_id, _anchor=f"article-{article.id}"))


class _AlreadyThere(Exception):
    """The article is already first (or last) in its section: nothing to save."""


@bp.post("/issues/<int:issue_id>/articles/<int:article_id>/move")
def move_article(issue_id: int, article_id: int):
    """One step up or down within the article's section (`direction` is "up" or "down")."""
    article = _article_of(issue_id, article_id)
    direction = request.form.get("direction")
    if not ActionForm().validate_on_submit() or direction not in ("up", "down"):
        abort(400)
    try:
        with transaction():
            if not issues.move_article(article, -1 if direction == "up" else 1):
                raise _AlreadyThere  # rolled back: claiming the issue for edit touched it
    except issues.IssueNotEditable as exc:
        return _refused(issue_id, describe(exc))
    except _AlreadyThere:
        if direction == "up":
            flash(_("《%(title)s》已在本栏目最前。", title=article.title))
        else:
            flash(_("《%(title)s》已在本栏目最后。", title=article.title))
    return redirect(url_for("admin.issue", issue_id=issue_id, _anchor="articles"))
