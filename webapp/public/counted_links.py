"""`/r/<token>`, the counted link in every email, answered ahead of Flask.

A click is the busiest request the site gets: every reader of an issue may click within
minutes of the send, while the send itself runs. Through Flask's full dispatch a click
cost 0.56 to 0.64 ms of CPU in-process, most of it machinery a redirect does not need
(request context, the session, the CSRF, Babel and limiter hooks, the security headers'
`after_request`, a `Response` object). This wrapper answers it with the same signer, the
same scanner rule and the same single `HINCRBY` (`readership.follow`) and none of that:
0.22 to 0.27 ms (of which redis-py's HINCRBY is 55 us, the app context 19 us, the token
17 us). In gunicorn, as the Procfile runs it, a click now costs about 0.5 ms of the web
workers' CPU, HTTP parsing included. The README ("Readership") has the full figures.

Only a GET or HEAD whose token verifies is answered here. Anything else (a token we did
not sign, another method) goes on to Flask, whose `public.counted_link` view answers it
with the site's own 404 or 405 page; that route also gives `url_for` the link's address.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from contextlib import nullcontext

from flask import Flask, current_app, has_app_context
from werkzeug.datastructures import EnvironHeaders
from werkzeug.urls import iri_to_uri

from .. import readership, security
from ..tokens import TokenError

# The route `/r/<token>`: a token is one path segment.
COUNTED_LINK_PATH = re.compile(r"/r/([^/]+)")
# Every click reaches us (no cached redirect), and the target learns nothing of where the
# reader came from (a webmail address, say).
REDIRECT_HEADERS = [
    ("Content-Length", "0"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
]
OWN = {name for name, _ in REDIRECT_HEADERS}

StartResponse = Callable[..., object]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]


class CountedLinks:
    """WSGI middleware: counts and redirects a counted link, passes every other request on
    to `wsgi_app` (the Flask app's own)."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        match = COUNTED_LINK_PATH.fullmatch(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "")
        if match is None or method not in ("GET", "HEAD"):
            return self.wsgi_app(environ, start_response)
        # A test holds the app's context around its requests and Flask's dispatch reuses
        # it; so do we, so that the test's database session sees what the request did.
        held = has_app_context() and current_app._get_current_object() is self.app
        with nullcontext() if held else self.app.app_context():
            try:
                target = readership.follow(match[1], method, EnvironHeaders(environ))
            except TokenError:
                target = None
        if target is None:
            return self.wsgi_app(environ, start_response)
        # The headers every answer of the site carries, but the redirect's own.
        site = [h for h in security.standard_headers(self.app.config) if h[0] not in OWN]
        start_response("302 Found", [("Location", iri_to_uri(target)), *REDIRECT_HEADERS, *site])
        return []
