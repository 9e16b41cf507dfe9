"""Signed, purpose-bound tokens for the links in our emails.

Each purpose has its own salt, so a confirmation token cannot unsubscribe anybody and an
unsubscribe token cannot confirm. Old secret keys listed in `SECRET_KEY_FALLBACKS` still
verify, so rotating the key does not break links already sitting in inboxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

DAY = 24 * 3600


class Purpose(StrEnum):
    CONFIRM = "confirm"
    PREFERENCES = "preferences"
    UNSUBSCRIBE = "unsubscribe"


# How long a link stays good. Unsubscribe links live in archived mail for a long time and
# the law expects them to keep working; 60 days is the floor the product promises.
MAX_AGE = {
    Purpose.CONFIRM: 7 * DAY,
    Purpose.PREFERENCES: 400 * DAY,
    Purpose.UNSUBSCRIBE: 400 * DAY,
}


class TokenError(ValueError):
    """A token we refuse; `.expired` tells a stale link from a forged or mangled one."""

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def _serializer(purpose: Purpose) -> URLSafeTimedSerializer:
    keys = (*current_app.config.get("SECRET_KEY_FALLBACKS", []), current_app.config["SECRET_KEY"])
    return _cached_serializer(purpose, keys)


@lru_cache(maxsize=32)
def _cached_serializer(purpose: Purpose, keys: tuple[str, ...]) -> URLSafeTimedSerializer:
    # Sending signs four links per reader: build each serializer once per (purpose, keys),
    # not per link. itsdangerous signs with the last key and accepts any of them.
    return URLSafeTimedSerializer(list(keys), salt=f"bulletin.{purpose}")


def make_token(purpose: Purpose, payload: dict) -> str:
    """Sign `payload` (small, JSON-able) for one purpose."""
    return _serializer(purpose).dumps(payload)


def read_token(purpose: Purpose, token: str) -> dict:
    """Return the payload of a valid token for `purpose`, or raise `TokenError`."""
    try:
        payload = _serializer(purpose).loads(token, max_age=MAX_AGE[purpose])
    except SignatureExpired:
        raise TokenError("This link has expired.", expired=True) from None
    except BadSignature:
        raise TokenError("This link is not valid.") from None
    if not isinstance(payload, dict):
        raise TokenError("This link is not valid.")
    return payload


@dataclass(frozen=True)
class ReaderLink:
    """What a reader's signed link names: the reader's id, the per-reader key it was signed
    with (None in links made before keys existed) and when it was signed."""

    subscriber_id: int
    key: str | None
    signed_at: datetime
    # Older unsubscribe links signed one section into the token.
    topic_id: object = None


def reader_payload(subscriber_id: int, link_key: str) -> dict:
    """The payload of a link to one reader: their id and their link key.

    The key is random and stored on the reader's row, so a link dies with the reader: once
    they are erased, no later reader (even one given the same id) answers to it.
    """
    return {"s": subscriber_id, "k": link_key}


def read_reader_link(purpose: Purpose, token: str) -> ReaderLink:
    """The reader a valid link for `purpose` names, or raise `TokenError`."""
    try:
        payload, signed_at = _serializer(purpose).loads(
            token, max_age=MAX_AGE[purpose], return_timestamp=True
        )
    except SignatureExpired:
        raise TokenError("This link has expired.", expired=True) from None
    except BadSignature:
        raise TokenError("This link is not valid.") from None
    subscriber_id = payload.get("s") if isinstance(payload, dict) else None
    key = payload.get("k") if isinstance(payload, dict) else None
    if not isinstance(subscriber_id, int) or not isinstance(key, str | None):
        raise TokenError("This link is not valid.")
    return ReaderLink(subscriber_id, key, signed_at, payload.get("t"))


@lru_cache(maxsize=8)
def _link_serializer(keys: tuple[str, ...]) -> URLSafeSerializer:
    return URLSafeSerializer(list(keys), salt="bulletin.counted-link")


def _link_keys() -> tuple[str, ...]:
    return (*current_app.config.get("SECRET_KEY_FALLBACKS", []), current_app.config["SECRET_KEY"])


def make_link_token(payload: list) -> str:
    """Sign a counted link's payload (see readership.py).

    Untimed, unlike the readers' tokens: it names no reader, so it has nothing to expire, an
    article link in an archived email keeps working, and the same payload always gives the
    same token, so every reader of a section set gets the same bytes.
    """
    return _link_serializer(_link_keys()).dumps(payload)


def read_link_token(token: str) -> list:
    """The payload of a counted link's token, or raise `TokenError`."""
    try:
        payload = _link_serializer(_link_keys()).loads(token)
    except BadSignature:
        raise TokenError("This link is not valid.") from None
    if not isinstance(payload, list):
        raise TokenError("This link is not valid.")
    return payload


def external_url(endpoint: str, **values) -> str:
    """An absolute URL under `BASE_URL`, usable outside a request (in a Celery task).

    Built from the app's URL map, so links in emails follow the routes if they move.
    """
    adapter = current_app.extensions.get("bulletin.url_adapter")
    if adapter is None:
        from urllib.parse import urlsplit

        base = urlsplit(current_app.config["BASE_URL"])
        adapter = current_app.url_map.bind(
            base.netloc, script_name=base.path or "/", url_scheme=base.scheme
        )
        current_app.extensions["bulletin.url_adapter"] = adapter
    return adapter.build(endpoint, values, force_external=True)
