"""Who is calling: the bearer token, checked before every view of the API, and the roles.

The rules are the staff pages' (admin/auth.py): readers' addresses and the per-recipient
delivery log are for admins; a read-only token sees what an editor sees and changes
nothing; approving is for a reviewer other than the submitter (review.py decides).
"""

from __future__ import annotations

from functools import wraps

from flask import g, request
from flask_babel import gettext as _
from flask_login import current_user

from .. import api_tokens
from ..api_tokens import ApiActor
from ..errors import BulletinError, describe, problem
from ..models import ApiTokenRole
from ..transactions import transaction
from . import PUBLIC_ENDPOINTS, bp

RANK = {ApiTokenRole.READ_ONLY: 0, ApiTokenRole.EDITOR: 1, ApiTokenRole.ADMIN: 2}


def _refusal(status: int, title: str, code: str, **params):
    answer = problem(status, title, describe(BulletinError(code, **params)), code=code)
    if status == 401:
        answer.headers["WWW-Authenticate"] = 'Bearer realm="bulletin-api"'
    return answer


@bp.before_request
def require_token():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    scheme, _sep, secret = request.headers.get("Authorization", "").partition(" ")
    actor = None
    if scheme.lower() == "bearer" and secret.strip():
        with transaction():  # the token's last-used time
            actor = api_tokens.authenticate(secret.strip())
    if actor is None:
        return _refusal(401, _("需要登录或令牌"), "api-token-invalid")
    # Flask-Login's current user for this request only (it keeps it in g); nothing is
    # written to the session, and the session's own user is never loaded.
    g._login_user = actor
    return None


def actor() -> ApiActor:
    return current_user._get_current_object()


def needs(role: ApiTokenRole):
    """A view for tokens of `role` or above; others get 403 in words."""

    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if RANK[actor().token_role] < RANK[role]:
                return _refusal(403, _("没有权限"), "api-forbidden", role=actor().token_role.value)
            return view(*args, **kwargs)

        wrapped.api_role = role  # read by the OpenAPI test and the docs
        return wrapped

    return decorate
