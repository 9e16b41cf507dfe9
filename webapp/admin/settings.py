"""Site settings (admins): one form, one field per setting in `site_settings.SETTINGS`.

A field is named after its setting's key, so adding a setting is a `Definition` there and a
field here.
"""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField, SubmitField
from wtforms.validators import ValidationError

from .. import audit, issues, site_settings
from ..errors import describe
from ..transactions import transaction
from . import bp
from .auth import admin_only


class SettingsForm(FlaskForm):
    counted_links = BooleanField(
        lazy_gettext("统计邮件中的链接点击（只计总数，不记录任何读者）"),
        description=lazy_gettext(
            "开启时，邮件里“阅读全文”和来源链接经由本站跳转并按期、按文章累计点击次数，"
            "网页版的阅读次数也一并累计；关闭后，之后生成的邮件直接链接到目标网址，"
            "也不再累计任何次数。已经开始发送的一期保持生成时的链接。"
        ),
    )
    review_required = BooleanField(
        lazy_gettext("发布前必须审核（送审后由审核人或管理员审核通过）"),
        description=lazy_gettext(
            "开启时，只有审核通过的一期才能发布或定时发布，审核通过后的任何修改都会让它回到草稿。"
            "人少的团队可以关闭。"
        ),
    )
    subject_pattern = StringField(
        lazy_gettext("邮件主题格式"),
        description=lazy_gettext(
            "每期邮件的主题，除非在该期页面另写一个。可用 {name}（简报名称）、{year}（年份）、"
            "{n}（本年第几期）、{total}（总第几期）、{title}（标题）、{period}（期间），"
            "例如 {name} {year}年第{n}期。留空则恢复默认格式。"
        ),
    )
    subject_pattern_en = StringField(
        lazy_gettext("英文读者的邮件主题格式"),
        description=lazy_gettext(
            "选择英文的读者收到的主题，可用的字段同上，"
            "{name} 是简报的英文名称（未设置时用中文名称），例如 {name} No. {n}, {year}。"
            "该期页面另写的主题对所有读者都适用。留空则恢复默认格式。"
        ),
    )
    submit = SubmitField(lazy_gettext("保存"))

    def validate_subject_pattern(self, field) -> None:
        _check_pattern(field, "SUBJECT_PATTERN")

    def validate_subject_pattern_en(self, field) -> None:
        _check_pattern(field, "SUBJECT_PATTERN_EN")


def _check_pattern(field, default: str) -> None:
    if not (field.data or "").strip():  # empty: back to the deployment's default
        field.data = current_app.config[default]
    try:
        field.data = issues.check_subject_pattern(field.data or "")
    except issues.SubjectPatternError as exc:
        raise ValidationError(describe(exc)) from None


def _fields(form: SettingsForm):
    return [getattr(form, key) for key in site_settings.SETTINGS if hasattr(form, key)]


@bp.route("/settings", methods=["GET", "POST"])
@admin_only
def settings():
    form = SettingsForm()
    if request.method == "GET":
        for field in _fields(form):
            field.data = site_settings.get_value(field.name)
    if form.validate_on_submit():
        with transaction():
            changed = []
            for field in _fields(form):
                if field.data != site_settings.get_value(field.name):
                    site_settings.set_value(field.name, field.data, actor=current_user.email)
                    changed.append(f"{field.name}={field.data}")
            if changed:
                audit.record("settings", detail=", ".join(changed))
        flash(_("设置已保存。"))
        return redirect(url_for("admin.settings"))
    status = 400 if request.method == "POST" else 200
    return render_template("admin/settings.html", form=form, fields=_fields(form)), status
