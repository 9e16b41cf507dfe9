"""Staff pages for sections (admins): the list with reader counts, and the changes to it.

Every change is a POST with a CSRF token that redirects back to the list; a refused change
shows the list again with the reason, and changes nothing.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, SubmitField
from wtforms.validators import AnyOf, DataRequired

from .. import directory, sections
from ..extensions import db
from ..models import Topic
from . import bp
from .auth import admin_only


class SectionNameForm(FlaskForm):
    """Create a section, or rename one (the same field, posted to another address)."""

    name = StringField("名称", validators=[DataRequired("请填写栏目名称。")])
    submit = SubmitField("保存")


class MoveForm(FlaskForm):
    # Filled in by the 上移 / 下移 button pressed.
    direction = HiddenField(validators=[AnyOf(["up", "down"])])


class ButtonForm(FlaskForm):
    """Only a CSRF token, for archive and unarchive."""


def _message(exc: sections.SectionError) -> str:
    if isinstance(exc, sections.DuplicateSectionName):
        existing = exc.existing
        if exc.slug:
            return (
                f"“{exc.name}”与栏目“{existing.name}”的标识 {existing.slug} 相同，"
                "导入读者名单时会分不清。请换一个名称。"
            )
        if exc.name == existing.name:
            return f"已经有名为“{existing.name}”的栏目。请换一个名称。"
        return (
            f"“{exc.name}”与已有的栏目“{existing.name}”只差大小写、全角半角或空格，"
            "读者会以为是同一个栏目。请换一个名称。"
        )
    if isinstance(exc, sections.ConcurrentSectionChange):
        return "另一位管理员刚刚修改了栏目，请刷新页面后再试。"
    if isinstance(exc, sections.SectionNameTooLong):
        return f"栏目名称最多 {sections.NAME_MAX_LENGTH} 个字。"
    if isinstance(exc, sections.EmptySectionName):
        return "请填写栏目名称。"
    if isinstance(exc, sections.LastActiveSection):
        return "这是最后一个开放的栏目，归档后订阅页将无栏目可选。请先添加或恢复另一个栏目。"
    return str(exc)


def _page(*, create_form=None, rename=None, error: str = "", status: int = 200):
    """The list; after a refused change, with the reason (status 400). `rename` is the
    refused rename: {"id", "value", "errors"}, shown on that section's row."""
    counts = {c.topic_id: c for c in directory.counts_by_topic()}
    return render_template(
        "admin/sections.html",
        topics=sections.ordered(),
        counts=counts,
        create_form=create_form or SectionNameForm(formdata=None),
        rename=rename or {},
        max_length=sections.NAME_MAX_LENGTH,
        error=error,
    ), status


def _refused(exc: sections.SectionError, **page):
    db.session.rollback()
    if isinstance(exc, sections.UnknownSection):
        abort(404)
    # A refused name is explained beside its field; other refusals at the top of the page.
    page.setdefault("error", "" if page else _message(exc))
    return _page(status=400, **page)


@bp.get("/sections")
@admin_only
def sections_list():
    return _page()


@bp.post("/sections")
@admin_only
def section_create():
    form = SectionNameForm()
    if not form.validate_on_submit():
        return _page(create_form=form, status=400)
    try:
        topic = sections.create_section(form.name.data)
    except sections.SectionError as exc:
        form.name.errors = [_message(exc)]
        return _refused(exc, create_form=form)
    db.session.commit()
    flash(f"已添加栏目“{topic.name}”。")
    return redirect(url_for("admin.sections_list"))


@bp.post("/sections/<int:topic_id>/rename")
@admin_only
def section_rename(topic_id: int):
    form = SectionNameForm()
    if not form.validate_on_submit():
        rename = {"id": topic_id, "value": form.name.data or "", "errors": form.name.errors}
        return _page(rename=rename, status=400)
    try:
        topic = sections.rename_section(topic_id, form.name.data)
    except sections.SectionError as exc:
        rename = {"id": topic_id, "value": form.name.data, "errors": [_message(exc)]}
        return _refused(exc, rename=rename)
    db.session.commit()
    flash(f"栏目已改名为“{topic.name}”。")
    return redirect(url_for("admin.sections_list"))


@bp.post("/sections/<int:topic_id>/move")
@admin_only
def section_move(topic_id: int):
    form = MoveForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        moved = sections.move_section(topic_id, -1 if form.direction.data == "up" else 1)
    except sections.SectionError as exc:
        return _refused(exc)
    db.session.commit()
    if not moved:
        flash("这个栏目已经在最前面。" if form.direction.data == "up" else "这个栏目已经在最后面。")
    return redirect(url_for("admin.sections_list"))


@bp.post("/sections/<int:topic_id>/archive")
@admin_only
def section_archive(topic_id: int):
    return _set_active(topic_id, active=False)


@bp.post("/sections/<int:topic_id>/unarchive")
@admin_only
def section_unarchive(topic_id: int):
    return _set_active(topic_id, active=True)


def _set_active(topic_id: int, *, active: bool):
    if not ButtonForm().validate_on_submit():
        abort(400)
    change = sections.unarchive_section if active else sections.archive_section
    try:
        change(topic_id)
    except sections.SectionError as exc:
        return _refused(exc)
    db.session.commit()
    name = db.session.get(Topic, topic_id).name
    flash(f"已恢复栏目“{name}”，订阅页重新显示它。" if active else f"已归档栏目“{name}”。")
    return redirect(url_for("admin.sections_list"))
