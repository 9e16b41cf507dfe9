"""Site settings that staff change while the site runs (on /admin/settings).

A setting is named in `SETTINGS` with the configuration key that gives its default, so a
deployer still sets it from the environment and staff override it here. Values are stored
as JSON in the `settings` table. `set_value` flushes; the caller commits.

Hot paths (a redirect per click) read through `cached_value`, which asks the database at
most once per `CACHE_SECONDS` per process: a change reaches every process within that time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from flask import current_app
from sqlalchemy import select

from .extensions import db
from .models import Setting

CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Definition:
    key: str
    config_key: str  # the default: this configuration value (see config.py)
    kind: type  # bool, int or str: what `set_value` accepts


SETTINGS: dict[str, Definition] = {
    d.key: d
    for d in (
        # Links in emails go through /r/<token> and are counted (see readership.py).
        Definition("counted_links", "COUNTED_LINKS", bool),
        # Each issue's subject unless staff write one (issues.subject_from_pattern).
        Definition("subject_pattern", "SUBJECT_PATTERN", str),
        Definition("subject_pattern_en", "SUBJECT_PATTERN_EN", str),
        # An issue must be approved before it is published or scheduled (review.py).
        Definition("review_required", "REVIEW_REQUIRED", bool),
        # The publication's identity (identity.py), on /admin/identity.
        Definition("bulletin_name", "BULLETIN_NAME", str),
        Definition("bulletin_name_en", "BULLETIN_NAME_EN", str),
        Definition("organization", "ORGANIZATION", str),
        Definition("postal_address", "POSTAL_ADDRESS", str),
        Definition("contact", "CONTACT", str),
        Definition("masthead_color", "MASTHEAD_COLOR", str),
    )
}


class UnknownSetting(KeyError):
    """A key that is not in SETTINGS, or a value of the wrong kind for it."""


def _definition(key: str) -> Definition:
    try:
        return SETTINGS[key]
    except KeyError:
        raise UnknownSetting(key) from None


def get_value(key: str) -> Any:
    """The setting's stored value, else its default from the configuration."""
    definition = _definition(key)
    row = db.session.get(Setting, key)
    if row is None:
        return current_app.config[definition.config_key]
    return json.loads(row.value)


def get_values(keys: list[str]) -> dict[str, Any]:
    """`get_value` for several settings in one query."""
    definitions = [_definition(key) for key in keys]
    rows = db.session.scalars(select(Setting).where(Setting.key.in_(keys)))
    stored = {row.key: json.loads(row.value) for row in rows}
    config = current_app.config
    return {d.key: stored[d.key] if d.key in stored else config[d.config_key] for d in definitions}


def set_value(key: str, value: Any, *, actor: str = "") -> None:
    """Store a value for a setting (flushed, not committed). `actor`: who changed it."""
    definition = _definition(key)
    if type(value) is not definition.kind:
        raise UnknownSetting(f"{key} takes a {definition.kind.__name__}, not {value!r}")
    row = db.session.get(Setting, key)
    if row is None:
        row = Setting(key=key)
        db.session.add(row)
    row.value = json.dumps(value, ensure_ascii=False)
    row.updated_by = actor
    db.session.flush()
    forget_cached()


# Keyed by the database and the setting, so two apps in one process (tests) do not mix.
_cache: TTLCache = TTLCache(maxsize=64, ttl=CACHE_SECONDS)
_cache_lock = threading.Lock()


def cached_value(key: str) -> Any:
    """`get_value`, remembered for CACHE_SECONDS in this process (for per-request paths)."""
    _definition(key)
    return remembered(key, lambda: get_value(key))


def remembered(name: str, compute: Callable[[], Any]) -> Any:
    """`compute()`, remembered for CACHE_SECONDS in this process under `name`, and
    forgotten with the settings (`forget_cached`): for other site-wide values read per
    request, such as whether there is a logo (identity.py)."""
    cache_key = (current_app.config["SQLALCHEMY_DATABASE_URI"], name)
    with _cache_lock:
        if cache_key in _cache:
            return _cache[cache_key]
    value = compute()
    with _cache_lock:
        _cache[cache_key] = value
    return value


def forget_cached() -> None:
    """Drop this process's remembered values (after a change, and between tests)."""
    with _cache_lock:
        _cache.clear()
