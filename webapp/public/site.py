"""What every page and email shows of the publication: its logo and its colour.

Both are served from the database (identity.py), so every web machine answers the same;
addresses stay the same when they change (emails already sent keep showing the current
logo), with an ETag so that clients and mail proxies revalidate cheaply.
"""

from __future__ import annotations

from flask import Response, abort, request

from .. import identity
from ..extensions import limiter
from . import bp

# A day: a changed logo reaches new pages at once (their URL carries ?v=), and old emails
# within a day. Mail providers' image proxies cache on their own terms anyway.
MAX_AGE = 86400


@bp.get("/logo/<rendition>")
@limiter.exempt  # fetched by every opened email: one office behind one NAT is many readers
def logo(rendition: str):
    """The logo, sized for pages (`web`) or for the email masthead (`email`)."""
    row = identity.web_logo()
    if row is None or rendition not in ("web", "email"):
        abort(404)
    data, kind = (
        (row.web_data, row.web_type) if rendition == "web" else (row.email_data, row.email_type)
    )
    response = Response(data, mimetype=kind)
    response.set_etag(f"{row.digest[:32]}-{rendition}")
    response.last_modified = row.updated_at
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE
    return response.make_conditional(request)


@bp.get("/theme.css")
@limiter.exempt
def theme():
    """The masthead colour as the site's accent (a stylesheet: the CSP allows no inline
    style)."""
    color = identity.cached().color
    response = Response(f":root {{ --accent: {color}; }}\n", mimetype="text/css")
    response.set_etag(color.lstrip("#"))
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE
    return response.make_conditional(request)
