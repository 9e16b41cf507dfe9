"""Machine endpoints: mail services that POST what comes back to us (see bounces.py)."""

from __future__ import annotations

import hmac
from dataclasses import asdict

from flask import Blueprint, abort, current_app, jsonify, request
from sqlalchemy.exc import OperationalError

from . import bounces
from .extensions import csrf
from .transactions import transaction

bp = Blueprint("hooks", __name__)


def _authorized(header: str, secret: str) -> bool:
    scheme, _, token = header.partition(" ")
    # Constant time, so the secret cannot be found a character at a time.
    same = hmac.compare_digest(token.strip().encode(), secret.encode())
    return scheme.lower() == "bearer" and same


def _too_big():
    return jsonify(error=f"a message may not exceed {bounces.MAX_MESSAGE_BYTES} bytes"), 413


# A server-to-server POST: the bearer secret is the credential, and there is no form.
@csrf.exempt
@bp.post("/bounce")
def bounce():
    """One raw RFC 822 message in the body; `?recipient=` is its envelope recipient."""
    secret = current_app.config["BOUNCE_WEBHOOK_SECRET"]
    if not secret:
        abort(404)  # not configured: as if the endpoint did not exist
    if not _authorized(request.headers.get("Authorization", ""), secret):
        return jsonify(error="wrong or missing bearer secret"), 403
    if (request.content_length or 0) > bounces.MAX_MESSAGE_BYTES:
        return _too_big()
    raw = request.stream.read(bounces.MAX_MESSAGE_BYTES + 1)  # a chunked body gives no length
    if len(raw) > bounces.MAX_MESSAGE_BYTES:
        return _too_big()
    try:
        with transaction():
            result = bounces.ingest(raw, recipient=request.args.get("recipient"))
    except OperationalError:
        # The sender should keep the message and try again, as an MTA would on EX_TEMPFAIL.
        return jsonify(error="database unavailable, try again later"), 503, {"Retry-After": "60"}
    return jsonify(asdict(result))
