"""Staff pages for the API: tokens (made, shown once, revoked) and webhooks. Admins only."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import escape
from sqlalchemy import select

from .. import api_tokens, webhooks
from ..confirmation import confirmed
from ..errors import describe
from ..extensions import db
from ..models import ApiToken, ApiTokenRole, Topic, Webhook
from ..tokens import external_url
from ..transactions import transaction
from . import bp
from .auth import admin_only
from .forms import ActionForm, ApiTokenForm, WebhookForm


def _webhook_form(*, submitted: bool = False) -> WebhookForm:
    form = WebhookForm() if submitted else WebhookForm(formdata=None)
    form.events.choices = [(event, str(label)) for event, label in webhooks.EVENTS.items()]
    return form


def _page(
    form: ApiTokenForm | None = None,
    *,
    secret: str = "",
    hook_form: WebhookForm | None = None,
    new_hook: Webhook | None = None,
    status: int = 200,
):
    hooks = webhooks.webhooks()
    return (
        render_template(
            "admin/api.html",
            tokens=api_tokens.tokens(),
            form=form or ApiTokenForm(formdata=None),
            action_form=ActionForm(),
            secret=secret,
            hooks=hooks,
            hook_log={hook.id: webhooks.recent_deliveries(hook.id) for hook in hooks},
            hook_form=hook_form or _webhook_form(),
            new_hook=new_hook,
            signature_header=webhooks.SIGNATURE_HEADER,
            snippets=embed_snippets(),
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


@bp.post("/api/webhooks")
@admin_only
def create_webhook():
    """The secret is shown on this answer only, like a token's (it stays stored: it signs)."""
    form = _webhook_form(submitted=True)
    if not form.validate_on_submit():
        return _page(hook_form=form, status=400)
    try:
        with transaction():
            hook = webhooks.register(
                form.url.data, form.events.data or [], created_by=current_user.email
            )
    except webhooks.WebhookError as exc:
        getattr(form, exc.field).errors.append(describe(exc))
        return _page(hook_form=form, status=400)
    return _page(new_hook=hook)


@bp.post("/api/webhooks/<int:webhook_id>/delete")
@admin_only
def delete_webhook(webhook_id: int):
    hook = db.get_or_404(Webhook, webhook_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    if not confirmed():
        return render_template(
            "admin/confirm_action.html",
            title=_("删除 Webhook"),
            what=_("删除发往 %(url)s 的 Webhook 及其发送记录。", url=hook.url),
            note=_("删除后不能恢复。"),
            action=url_for("admin.delete_webhook", webhook_id=webhook_id),
            button=_("确认删除"),
            back=url_for("admin.api_page"),
        )
    with transaction():
        webhooks.remove(webhook_id)
    flash(_("已删除 Webhook。"))
    return redirect(url_for("admin.api_page"))


def embed_snippets() -> dict[str, str]:
    """What staff paste into the institute's site: an iframe of the embeddable form, or the
    same form as plain HTML posting to us (it then works with the site's own styles)."""
    action = external_url("public.embed_subscribe")
    topics = db.session.scalars(
        select(Topic).where(Topic.active.is_(True)).order_by(Topic.position, Topic.id)
    ).all()
    iframe = (
        f'<iframe src="{action}" title="{escape(_("订阅"))}" '
        'style="width:100%;max-width:32rem;height:34rem;border:0" loading="lazy"></iframe>'
    )
    boxes = "\n".join(
        f'  <label><input type="checkbox" name="topics" value="{t.id}" checked> '
        f"{escape(t.name)}</label><br>"
        for t in topics
    )
    form = (
        f'<form method="post" action="{action}">\n'
        f'  <label>{escape(_("电子邮箱"))} <input type="email" name="email" required></label><br>\n'
        f'  <label>{escape(_("称呼（选填）"))} <input type="text" name="name"></label><br>\n'
        f"{boxes}\n"
        '  <div style="position:absolute;left:-10000px" aria-hidden="true">'
        '<input type="text" name="website" tabindex="-1" autocomplete="off"></div>\n'
        f'  <button type="submit">{escape(_("订阅"))}</button>\n'
        "</form>"
    )
    return {"iframe": iframe, "form": form}
