"""Staff newsroom: writing the articles of a draft or scheduled issue (add, edit with a
server-side preview, delete, move).

The rules (what may change when, positions, leads, audit) live in `webapp.issues`; these
views turn forms into `ArticleDraft`s and the domain's refusals into messages.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup

from .. import issues
from ..errors import describe
from ..extensions import db
from ..importing import make_lead
from ..models import Article, Issue
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


def _form_page(form: ArticleForm, issue: Issue, article: Article | None, status: int = 200):
    """The article form; after "预览", the body rendered as readers will get it, below it."""
    preview = None
    if form.preview.data and form.body.data and not form.body.errors:
        preview = {
            # markdown_to_html sanitizes (nh3): whatever was typed, no script survives.
            "body_html": Markup(markdown_to_html(form.body.data)),
            "lead": (form.lead.data or "").strip() or make_lead(form.body.data),
            "lead_generated": not (form.lead.data or "").strip(),
        }
    return render_template(
        "admin/article_form.html", form=form, issue=issue, article=article, preview=preview
    ), status


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
    article = _article_of(issue_id, article_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    title = article.title
    try:
        with transaction():
            issues.delete_article(article)
    except issues.IssueNotEditable as exc:
        return _refused(issue_id, describe(exc))
    flash(_("已删除：%(title)s", title=title))
    return redirect(url_for("admin.issue", issue_id=issue_id, _anchor="articles"))


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
