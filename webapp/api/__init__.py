"""The JSON API under /api/v1/: token authentication, per-token rate limits, problem details.

Every call but the OpenAPI document and its page needs `Authorization: Bearer <token>`; the
session cookie is never looked at, which is why the blueprint is exempt from CSRF (a site
that makes a browser call us cannot add the header). The token acts as `current_user`
during the call, so the domain functions and the audit log see who acted, as they do for
a staff page. Views live in `views.py`, the OpenAPI document in `openapi.py`.
"""

from __future__ import annotations

import hashlib

from flask import Blueprint, current_app, g, request
from flask_limiter.util import get_remote_address

from ..extensions import csrf, limiter

bp = Blueprint("api", __name__)
csrf.exempt(bp)

PUBLIC_ENDPOINTS = {"api.openapi_document", "api.reference"}


def token_key() -> str:
    """Rate-limit key: the token presented (hashed: it is a credential), else the address."""
    header = request.headers.get("Authorization", "")
    if header:
        return "api-token:" + hashlib.sha256(header.encode("utf-8", "replace")).hexdigest()
    return "api-address:" + get_remote_address()


limiter.limit(lambda: current_app.config["RATELIMIT_API"], key_func=token_key)(bp)


@bp.before_request
def _no_cookies() -> None:
    # ?lang= picks the language of one answer; an API client keeps no cookie for it.
    g.cookieless = True


from . import auth, openapi, views  # noqa: E402,F401
