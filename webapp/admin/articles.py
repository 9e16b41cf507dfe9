"""Staff newsroom: the list of every issue, a blank issue, and writing the articles of a
draft or scheduled issue (add, edit with a server-side preview, delete, move).

The rules (what may change when, positions, leads, audit) live in `webapp.issues`; these
views turn forms into `ArticleDraft`s and the domain's refusals into messages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import select
from wtforms import SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import URL, DataRequired, Length, Optional, StopValidation, ValidationError

from .. import issues as issue_service
from ..errors import describe
from ..extensions import db
from ..importing import make_lead
from ..models import Article, Issue
from ..rendering import markdown_to_html, safe_url
from . import bp
from .forms import ActionForm
from .issues import issue as issue_page

# ---------------------------------------------------------------------------------- forms


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class NewIssueForm(FlaskForm):
    title = StringField(
        lazy_gettext("标题"),
        filters=[_strip],
        validators=[
            DataRequired(lazy_gettext("请填写标题。")),
            Length(max=200, message=lazy_gettext("标题最多 200 个字。")),
        ],
    )
    period = StringField(
        lazy_gettext("期号或日期（可不填）"),
        filters=[_strip],
        validators=[Optional(), Length(max=100, message=lazy_gettext("最多 100 个字。"))],
    )
    submit = SubmitField(lazy_gettext("新建一期"))


def _http_only(form, field) -> None:
    value = (field.data or "").strip()
    if value and safe_url(value) != value:
        # Stop here: this message says what is wrong; URL()'s would only add noise.
        raise StopValidation(_("来源链接只接受 http:// 或 https:// 开头的网址。"))


def _name_with_url(form, field) -> None:
    # Digests and web pages show the link on the source's name; a URL without one would
    # never be seen by a reader.
    if (form.source_url.data or "").strip() and not (field.data or "").strip():
        raise ValidationError(_("填写了来源链接，也请填写来源名称：读者点的是名称。"))


def _body_size(form, field) -> None:
    if len((field.data or "").encode("utf-8")) > issue_service.BODY_MAX_BYTES:
        limit = issue_service.BODY_MAX_BYTES // 1024
        raise ValidationError(_("正文超过 %(size)s KB，请拆成几篇。", size=limit))


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _offered_choice(form, field) -> None:
    # Instead of SelectField's own check, whose message is WTForms' English.
    if field.data not in {value for value, _label in field.choices}:
        raise ValidationError(_("请选择一个在用的栏目。"))


class ArticleForm(FlaskForm):
    title = StringField(
        lazy_gettext("标题"),
        filters=[_strip],
        validators=[
            DataRequired(lazy_gettext("请填写标题。")),
            Length(max=issue_service.TITLE_MAX, message=lazy_gettext("标题最多 300 个字。")),
        ],
    )
    topic_id = SelectField(
        lazy_gettext("栏目"),
        coerce=_int_or_none,
        validate_choice=False,
        validators=[_offered_choice],
    )
    source_name = StringField(
        lazy_gettext("来源名称（可不填）"),
        filters=[_strip],
        validators=[
            _name_with_url,
            Length(
                max=issue_service.SOURCE_NAME_MAX, message=lazy_gettext("来源名称最多 300 个字。")
            ),
        ],
    )
    source_url = StringField(
        lazy_gettext("来源链接（可不填，只接受 http:// 或 https://）"),
        filters=[_strip],
        validators=[
            Optional(),
            _http_only,
            URL(require_tld=False, message=lazy_gettext("这不是一个完整的网址。")),
            Length(max=issue_service.SOURCE_URL_MAX, message=lazy_gettext("网址太长。")),
        ],
    )
    lead = TextAreaField(lazy_gettext("导语（可不填，留空则自动生成）"))
    body = TextAreaField(
        lazy_gettext("正文（Markdown）"),
        validators=[DataRequired(lazy_gettext("请填写正文。")), _body_size],
    )
    preview = SubmitField(lazy_gettext("预览"))
    submit = SubmitField(lazy_gettext("保存"))

    def __init__(self, *args, current_topic_id: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.topic_id.choices = [
            (t.id, t.name if t.active else _("%(name)s（已归档）", name=t.name))
            for t in issue_service.topic_choices(current_topic_id)
        ]

    def draft(self) -> issue_service.ArticleDraft:
        return issue_service.ArticleDraft(
            topic_id=self.topic_id.data,
            title=self.title.data or "",
            body=self.body.data or "",
            lead=self.lead.data or "",
            source_name=self.source_name.data or "",
            source_url=self.source_url.data or "",
        )


# ------------------------------------------------------------------------------ the list


def _issues_page(form: NewIssueForm, status: int = 200):
    zone = ZoneInfo(current_app.config["TIMEZONE"])

    def local(moment: datetime | None) -> str:
        # SQLite hands back naive datetimes; every stored time is UTC.
        if moment is None:
            return "—"
        return (
            moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M")
        )

    issues = db.session.scalars(select(Issue).order_by(Issue.created_at.desc(), Issue.id.desc()))
    return render_template(
        "admin/issues.html",
        issues=issues.all(),
        counts=issue_service.issue_article_counts(),
        form=form,
        local=local,
        zone=zone,
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
    issue = issue_service.create_blank_issue(form.title.data, form.period.data or "")
    db.session.commit()
    flash(_("已新建草稿 #%(id)s：%(title)s。现在可以添加文章。", id=issue.id, title=issue.title))
    return redirect(url_for("admin.issue", issue_id=issue.id))


# ----------------------------------------------------------------------------- articles


def _article_of(issue_id: int, article_id: int) -> Article:
    article = db.get_or_404(Article, article_id)
    if article.issue_id != issue_id:
        abort(404)
    return article


def _refused(issue_id: int, message: str):
    """The issue page with the reason on top, as a 409: the content shown is unchanged."""
    db.session.rollback()
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
        saved = write(form.draft())
    except issue_service.IssueNotEditable as exc:
        return _refused(issue.id, describe(exc))
    except issue_service.ArticleError as exc:
        db.session.rollback()
        getattr(form, exc.field).errors.append(describe(exc))
        return _form_page(form, issue, article, 400)
    db.session.commit()
    flash(_("已保存：%(title)s", title=saved.title))
    return redirect(url_for("admin.issue", issue_id=issue.id, _anchor="articles"))


def _editable_or_refused(issue: Issue):
    try:
        issue_service.ensure_editable(issue)
    except issue_service.IssueNotEditable as exc:
        return _refused(issue.id, describe(exc))
    return None


@bp.route("/issues/<int:issue_id>/articles/new", methods=["GET", "POST"])
def new_article(issue_id: int):
    issue = db.get_or_404(Issue, issue_id)
    if refused := _editable_or_refused(issue):
        return refused
    form = ArticleForm()
    return _save(form, issue, None, lambda draft: issue_service.add_staff_article(issue.id, draft))


@bp.route("/issues/<int:issue_id>/articles/<int:article_id>/edit", methods=["GET", "POST"])
def edit_article(issue_id: int, article_id: int):
    issue = db.get_or_404(Issue, issue_id)
    article = _article_of(issue_id, article_id)
    if refused := _editable_or_refused(issue):
        return refused
    form = ArticleForm(obj=article, current_topic_id=article.topic_id)
    return _save(form, issue, article, lambda draft: issue_service.edit_article(article, draft))


@bp.post("/issues/<int:issue_id>/articles/<int:article_id>/delete")
def delete_article(issue_id: int, article_id: int):
    article = _article_of(issue_id, article_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    title = article.title
    try:
        issue_service.delete_article(article)
    except issue_service.IssueNotEditable as exc:
        return _refused(issue_id, describe(exc))
    db.session.commit()
    flash(_("已删除：%(title)s", title=title))
    return redirect(url_for("admin.issue", issue_id=issue_id, _anchor="articles"))


@bp.post("/issues/<int:issue_id>/articles/<int:article_id>/move")
def move_article(issue_id: int, article_id: int):
    """One step up or down within the article's section (`direction` is "up" or "down")."""
    article = _article_of(issue_id, article_id)
    direction = request.form.get("direction")
    if not ActionForm().validate_on_submit() or direction not in ("up", "down"):
        abort(400)
    try:
        moved = issue_service.move_article(article, -1 if direction == "up" else 1)
    except issue_service.IssueNotEditable as exc:
        return _refused(issue_id, describe(exc))
    if moved:
        db.session.commit()
    else:
        db.session.rollback()
        if direction == "up":
            flash(_("《%(title)s》已在本栏目最前。", title=article.title))
        else:
            flash(_("《%(title)s》已在本栏目最后。", title=article.title))
    return redirect(url_for("admin.issue", issue_id=issue_id, _anchor="articles"))
