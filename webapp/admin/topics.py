"""Staff pages for topics (the pages say sections; admins only): the list with subscriber
counts, and the changes to it.

Every change is a POST with a CSRF token that redirects back to the list; a refused change
shows the list again with the reason, and changes nothing.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, SubmitField
from wtforms.validators import AnyOf, DataRequired

from .. import directory, topics
from ..confirmation import confirmed
from ..errors import describe
from ..extensions import db
from ..models import Topic
from ..transactions import transaction
from . import bp
from .auth import admin_only


class TopicNameForm(FlaskForm):
    """Create a section, or rename one (the same field, posted to another address)."""

    name = StringField(
        lazy_gettext("名称"), validators=[DataRequired(lazy_gettext("请填写栏目名称。"))]
    )
    # Optional: English pages and emails show the Chinese name when it is empty.
    name_en = StringField(lazy_gettext("英文名称"))
    submit = SubmitField(lazy_gettext("保存"))


class MoveForm(FlaskForm):
    # Filled in by the 上移 / 下移 button pressed.
    direction = HiddenField(validators=[AnyOf(["up", "down"])])


class ButtonForm(FlaskForm):
    """Only a CSRF token, for archive and unarchive."""


def _page(*, create_form=None, rename=None, error: str = "", status: int = 200):
    """The list; after a refused change, with the reason (status 400). `rename` is the
    refused rename: {"id", "value", "errors"}, shown on that section's row."""
    counts = {c.topic_id: c for c in directory.counts_by_topic()}
    return render_template(
        "admin/sections.html",
        topics=topics.ordered(),
        counts=counts,
        create_form=create_form or TopicNameForm(formdata=None),
        rename=rename or {},
        max_length=topics.NAME_MAX_LENGTH,
        error=error,
    ), status


def _refused(exc: topics.TopicError, **page):
    if exc.code == "topic-missing":
        abort(404)
    # A refused name is explained beside its field; other refusals at the top of the page.
    page.setdefault("error", "" if page else describe(exc))
    return _page(status=400, **page)


@bp.get("/sections")
@admin_only
def sections_list():
    return _page()


@bp.post("/sections")
@admin_only
def section_create():
    form = TopicNameForm()
    if not form.validate_on_submit():
        return _page(create_form=form, status=400)
    try:
        with transaction():
            topic = topics.create_topic(form.name.data, form.name_en.data)
    except topics.TopicError as exc:
        form.name.errors = [describe(exc)]
        return _refused(exc, create_form=form)
    flash(_("已添加栏目“%(name)s”。", name=topic.name))
    return redirect(url_for("admin.sections_list"))


@bp.post("/sections/<int:topic_id>/rename")
@admin_only
def section_rename(topic_id: int):
    form = TopicNameForm()
    if not form.validate_on_submit():
        rename = {
            "id": topic_id,
            "value": form.name.data or "",
            "value_en": form.name_en.data or "",
            "errors": form.name.errors,
        }
        return _page(rename=rename, status=400)
    # A form without the field (an older page) leaves the English name as it is.
    name_en = form.name_en.data if "name_en" in request.form else None
    try:
        with transaction():
            topic = topics.rename_topic(topic_id, form.name.data, name_en)
    except topics.TopicError as exc:
        rename = {
            "id": topic_id,
            "value": form.name.data,
            "value_en": form.name_en.data or "",
            "errors": [describe(exc)],
        }
        return _refused(exc, rename=rename)
    flash(_("栏目已改名为“%(name)s”。", name=topic.name))
    return redirect(url_for("admin.sections_list"))


@bp.post("/sections/<int:topic_id>/move")
@admin_only
def section_move(topic_id: int):
    form = MoveForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        with transaction():
            moved = topics.move_topic(topic_id, -1 if form.direction.data == "up" else 1)
    except topics.TopicError as exc:
        return _refused(exc)
    if not moved:
        if form.direction.data == "up":
            flash(_("这个栏目已经在最前面。"))
        else:
            flash(_("这个栏目已经在最后面。"))
    return redirect(url_for("admin.sections_list"))


@bp.post("/sections/<int:topic_id>/archive")
@admin_only
def section_archive(topic_id: int):
    """Archive: the first POST says what readers and editors will no longer see."""
    topic = db.get_or_404(Topic, topic_id)
    if not confirmed():
        if not ButtonForm().validate_on_submit():
            abort(400)
        return render_template(
            "admin/confirm_action.html",
            title=_("归档栏目"),
            what=_(
                "归档“%(name)s”：订阅页和新文章里不再出现这个栏目；"
                "已订阅的 %(count)s 位读者保留它，但之后的各期不会再有它的文章。",
                name=topic.name,
                count=f"{topics.readers_of(topic_id):,}",
            ),
            note=_("归档后可以随时恢复。"),
            action=url_for("admin.section_archive", topic_id=topic_id),
            button=_("确认归档"),
            back=url_for("admin.sections_list"),
        )
    return _set_active(topic_id, active=False)


@bp.post("/sections/<int:topic_id>/unarchive")
@admin_only
def section_unarchive(topic_id: int):
    return _set_active(topic_id, active=True)


def _set_active(topic_id: int, *, active: bool):
    if not ButtonForm().validate_on_submit():
        abort(400)
    change = topics.unarchive_topic if active else topics.archive_topic
    try:
        with transaction():
            change(topic_id)
    except topics.TopicError as exc:
        return _refused(exc)
    name = db.session.get(Topic, topic_id).name
    if active:
        flash(_("已恢复栏目“%(name)s”，订阅页重新显示它。", name=name))
    else:
        flash(_("已归档栏目“%(name)s”。", name=name))
    return redirect(url_for("admin.sections_list"))
