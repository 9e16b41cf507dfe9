"""Request size limits and the security headers every answer carries.

A small `after_request` rather than Flask-Talisman: Talisman's last release is from 2023,
it would own one policy for the whole site while the preview frame needs its own, and what
we need fits on one screen where a reader can check it.
"""

from __future__ import annotations

from flask import Flask, Response, abort, current_app, request
from werkzeug.routing import IntegerConverter

# Readers' forms hold an address, a name and a few section ids; nothing near this.
PUBLIC_FORM_BYTES = 64 * 1024
# Endpoints that take more than MAX_CONTENT_LENGTH: a readers' CSV of 200,000 lines.
LARGE_UPLOADS = {"admin.import_csv": 64 * 1024 * 1024}

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Pages other sites may frame: the embeddable sign-up form. Their policy differs only in
# frame-ancestors (EMBED_FRAME_ANCESTORS) and they carry no X-Frame-Options, which cannot
# name the sites allowed; every other page may be framed by nobody.
EMBEDDABLE_ENDPOINTS = {"public.embed_subscribe", "public.embed_done"}


def embed_policy() -> str:
    ancestors = current_app.config["EMBED_FRAME_ANCESTORS"]
    return CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", f"frame-ancestors {ancestors}")


PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
)


# Ids are 32-bit integer columns on PostgreSQL: a bigger number in a URL or a query string
# would make the database raise, and the reader see a 500.
MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: a number no row can have does not match, so 404."""

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002 (Werkzeug's name)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def id_arg(name: str) -> int | None:
    """An id from the query string: None when absent, 400 when not a possible id."""
    value = request.args.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit() or int(value) > MAX_ID:
        abort(400)
    return int(value)


def register_converters(app: Flask) -> None:
    """Before any blueprint: routes take their converters when they are added."""
    app.url_map.converters["int"] = IdConverter


def init_app(app: Flask) -> None:
    # First of all: CSRF protection and the rate limiter read the form before any view does.
    app.before_request_funcs.setdefault(None, []).insert(0, _limit_request_size)
    app.after_request(_add_headers)


def _limit_request_size() -> None:
    """A smaller limit where a big body can only be an attack, a larger one for uploads.

    Werkzeug refuses a body over the limit with 413 before reading it; a chunked body
    without a length is cut off at the limit as it is read.
    """
    endpoint = request.endpoint or ""
    if endpoint in ("admin.import_issue", "api.create_issue"):
        # A bulletin document up to IMPORT_MAX_MB plus the multipart envelope: the view
        # refuses one over the setting itself, in words, rather than with a bare 413.
        limit = current_app.config["IMPORT_MAX_BYTES"] + 1024 * 1024
        request.max_content_length = limit
        request.max_form_memory_size = limit
    elif endpoint in LARGE_UPLOADS:
        request.max_content_length = LARGE_UPLOADS[endpoint]
        request.max_form_memory_size = LARGE_UPLOADS[endpoint]
    elif endpoint.startswith("public.") or endpoint == "admin.login":
        request.max_content_length = PUBLIC_FORM_BYTES


def standard_headers(config) -> list[tuple[str, str]]:
    """The headers every answer of the site carries (the counted-link redirect, answered
    ahead of Flask, adds them itself: see public/counted_links.py)."""
    headers = [
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        # Same-origin: our forms' CSRF check over https reads the Referer, and a signed link
        # in a page's address must not leak to a site the page links to.
        ("Referrer-Policy", "same-origin"),
        ("Permissions-Policy", PERMISSIONS_POLICY),
    ]
    if config["BASE_URL"].startswith("https://"):
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return headers


def _add_headers(response: Response) -> Response:
    """Headers a view set itself (the preview frame's own policy) are kept."""
    # The embeddable sign-up form may be framed by other sites; every other page may not.
    framing = request.endpoint in EMBEDDABLE_ENDPOINTS
    for name, value in standard_headers(current_app.config):
        if framing and name == "X-Frame-Options":
            continue
        if framing and name == "Content-Security-Policy":
            value = embed_policy()
        response.headers.setdefault(name, value)
    return response
