"""The publication's identity (admins): name, organization, postal address, contact,
masthead colour and logo, on /admin/identity. The rules live in `identity`."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit, identity
from ..errors import describe
from ..transactions import transaction
from . import bp
from .auth import admin_only
from .forms import IdentityForm, LogoForm, RemoveLogoForm


def _page(form=None, logo_form=None, remove_form=None, status: int = 200):
    site = identity.current()
    if form is None:
        form = IdentityForm(
            data={key: getattr(site, field) for key, field in _FIELDS.items()}
            | {"masthead_color": site.color}
        )
    return render_template(
        "admin/identity.html",
        form=form,
        logo_form=logo_form or LogoForm(),
        remove_form=remove_form or RemoveLogoForm(),
        site=site,
        logo=identity.logo_summary(),
        contrast=identity.contrast(site.color, identity.MASTHEAD_TEXT),
    ), status


# form field -> Identity attribute
_FIELDS = {
    "bulletin_name": "name",
    "bulletin_name_en": "name_en",
    "organization": "organization",
    "postal_address": "postal_address",
    "contact": "contact",
}


@bp.get("/identity")
@admin_only
def identity_page():
    return _page()


@bp.post("/identity")
@admin_only
def save_identity():
    form = IdentityForm()
    if not form.validate_on_submit():
        return _page(form=form, status=400)
    values = {name: form[name].data or "" for name in identity.TEXT_SETTINGS}
    try:
        with transaction():
            changed = identity.save(values, actor=current_user.email)
            if changed:
                audit.record("identity", detail=", ".join(changed))
    except identity.IdentityError as exc:
        form[exc.field].errors = [describe(exc)]
        return _page(form=form, status=400)
    flash(_("出版信息已保存。"))
    return redirect(url_for("admin.identity_page"))


@bp.post("/identity/logo")
@admin_only
def upload_logo():
    form = LogoForm()
    if not form.validate_on_submit():
        return _page(logo_form=form, status=400)
    try:
        with transaction():
            row = identity.save_logo(
                form.logo.data.read(identity.LOGO_MAX_BYTES + 1),
                form.logo_alt.data or "",
                actor=current_user.email,
            )
            audit.record("logo", detail=f"{row.web_width}x{row.web_height} {row.web_type}")
    except identity.IdentityError as exc:
        (form.logo_alt if exc.field == "logo_alt" else form.logo).errors = [describe(exc)]
        return _page(logo_form=form, status=400)
    flash(_("标志已更新。"))
    return redirect(url_for("admin.identity_page"))


@bp.post("/identity/logo/remove")
@admin_only
def remove_logo():
    form = RemoveLogoForm()
    if not form.validate_on_submit():
        return _page(remove_form=form, status=400)
    with transaction():
        if identity.remove_logo():
            audit.record("logo-removed")
    flash(_("标志已删除。"))
    return redirect(url_for("admin.identity_page"))
