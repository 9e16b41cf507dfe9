"""Staff pages for the API: tokens (made, shown once, revoked) and webhooks. Admins only."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from .. import api_tokens
from ..confirmation import confirmed
from ..errors import describe
from ..extensions import db
from ..models import ApiToken, ApiTokenRole
from ..transactions import transaction
from . import bp
from .auth import admin_only
from .forms import ActionForm, ApiTokenForm


def _page(form: ApiTokenForm | None = None, *, secret: str = "", status: int = 200):
    return (
        render_template(
            "admin/api.html",
            tokens=api_tokens.tokens(),
            form=form or ApiTokenForm(formdata=None),
            action_form=ActionForm(),
            secret=secret,
        ),
        status,
    )


@bp.get("/api")
@admin_only
def api_page():
    return _page()


@bp.post("/api/tokens")
@admin_only
def create_api_token():
    """The secret is on this one answer and nowhere else: we keep only its hash."""
    form = ApiTokenForm()
    if not form.validate_on_submit():
        return _page(form, status=400)
    try:
        with transaction():
            _token, secret = api_tokens.create_token(
                form.name.data, ApiTokenRole(form.role.data), created_by=current_user.email
            )
    except api_tokens.ApiTokenError as exc:
        form.name.errors.append(describe(exc))
        return _page(form, status=400)
    # Not a redirect: the secret must not go into a URL, a flash cookie or a log.
    return _page(secret=secret)


@bp.post("/api/tokens/<int:token_id>/revoke")
@admin_only
def revoke_api_token(token_id: int):
    token = db.get_or_404(ApiToken, token_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if not confirmed():
        return render_template(
            "admin/confirm_action.html",
            title=_("撤销令牌"),
            what=_("撤销令牌“%(name)s”：用它的程序将立即无法访问。", name=token.name),
            note=_("撤销后不能恢复；需要时请另建一个令牌。"),
            action=url_for("admin.revoke_api_token", token_id=token_id),
            button=_("确认撤销"),
            back=url_for("admin.api_page"),
        )
    with transaction():
        api_tokens.revoke(token_id)
    flash(_("已撤销令牌“%(name)s”。", name=token.name))
    return redirect(url_for("admin.api_page"))
