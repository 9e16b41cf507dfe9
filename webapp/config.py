"""Settings from the environment, with the embedded defaults.

Every setting a deployer may change is read here and nowhere else, so `README.md` and this
file are the whole story. A bad value raises `ConfigError` naming the setting; the CLI, the
WSGI entry point and the worker turn it into a one-line message instead of a traceback.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(RuntimeError):
    """A setting is missing or wrong. `str()` starts with the setting's name."""

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


ENVIRONMENTS = ("development", "production", "testing")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(name, f"must not be negative, got {value}")
    return value


def database_uri(url: str) -> str:
    """Point plain `postgresql://` URLs at psycopg 3, the driver we install.

    Deployers copy URLs from their provider (`postgres://...` on Heroku-likes); SQLAlchemy
    would otherwise look for psycopg2, which we do not ship.
    """
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _secret_key(env: Mapping[str, str], mode: str, instance_path: Path) -> str:
    key = env.get("SECRET_KEY", "")
    if key:
        return key
    if mode == "production":
        raise ConfigError(
            "SECRET_KEY",
            "is required in production; set it to a long random string "
            "(python -c 'import secrets; print(secrets.token_urlsafe(48))')",
        )
    # Development keeps a generated key in the instance folder so signed links in mails
    # caught yesterday still work today.
    path = instance_path / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    return key


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("TIMEZONE", f"unknown time zone {name!r} (try Asia/Shanghai)") from None
    return name


def _colour(env: Mapping[str, str], key: str, default: str) -> str:
    value = (env.get(key) or default).strip().lower()
    if not re.fullmatch(r"#[0-9a-f]{6}", value):
        raise ConfigError(key, f"must be a colour like #9b1c1c, got {value!r}")
    return value


def _dkim(env: Mapping[str, str], mail_domain: str) -> dict[str, Any] | None:
    """DKIM signing settings, or None when no key is configured."""
    path = env.get("DKIM_PRIVATE_KEY_FILE")
    if not path:
        return None
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("DKIM_PRIVATE_KEY_FILE", f"cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN" not in key:
        raise ConfigError("DKIM_PRIVATE_KEY_FILE", f"{path} is not a PEM private key")
    selector = env.get("DKIM_SELECTOR", "").strip()
    if not selector:
        raise ConfigError("DKIM_SELECTOR", "is required with DKIM_PRIVATE_KEY_FILE")
    return {"selector": selector, "domain": env.get("DKIM_DOMAIN") or mail_domain, "key": key}


def load_config(instance_path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from `env` (default: the process environment) into a config dict."""
    env = os.environ if env is None else env
    mode = env.get("BULLETIN_ENV", "development").strip().lower()
    if mode not in ENVIRONMENTS:
        raise ConfigError("BULLETIN_ENV", f"must be one of {', '.join(ENVIRONMENTS)}, got {mode!r}")
    production = mode == "production"

    default_db = f"sqlite:///{instance_path / 'bulletin.db'}"
    redis_url = env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "REDIS_URL", f"must start with redis://, rediss:// or unix://, got {redis_url!r}"
        )

    base_url = (env.get("BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError("BASE_URL", f"must be an http:// or https:// URL, got {base_url!r}")

    mail_from = env.get("MAIL_FROM") or "Bulletin <bulletin@localhost>"
    local, at, mail_domain = parseaddr(mail_from)[1].rpartition("@")
    if not (local and at and mail_domain):
        raise ConfigError(
            "MAIL_FROM", f"must be an address like 'Bulletin <news@example.org>', got {mail_from!r}"
        )

    secret_key = _secret_key(env, mode, instance_path)
    old_keys = [k for k in env.get("SECRET_KEY_FALLBACKS", "").split(",") if k.strip()]

    return {
        "BULLETIN_ENV": mode,
        "SECRET_KEY": secret_key,
        "SECRET_KEY_FALLBACKS": [k.strip() for k in old_keys],
        "SQLALCHEMY_DATABASE_URI": database_uri(env.get("DATABASE_URL") or default_db),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": redis_url,
        "SMTP_HOST": env.get("SMTP_HOST") or ("localhost" if production else "127.0.0.1"),
        # Development talks to the SMTP catcher that `make run` starts; production to an MTA.
        "SMTP_PORT": _int(env, "SMTP_PORT", 25 if production else 8025, 1, 65535),
        "SMTP_USERNAME": env.get("SMTP_USERNAME") or None,
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD") or None,
        "SMTP_STARTTLS": _bool(env, "SMTP_STARTTLS", False),
        "SMTP_TIMEOUT": _float(env, "SMTP_TIMEOUT", 30.0),
        "MAIL_FROM": mail_from,
        "MAIL_FROM_ADDRESS": parseaddr(mail_from)[1],  # the envelope sender
        "MAIL_DOMAIN": mail_domain,
        # Second List-Unsubscribe target, for clients that unsubscribe by mail.
        "UNSUBSCRIBE_MAILTO": env.get("UNSUBSCRIBE_MAILTO") or f"unsubscribe@{mail_domain}",
        "DKIM": _dkim(env, mail_domain),
        "BASE_URL": base_url,
        # Werkzeug answers 413 past these. Readers' forms, the readers' CSV upload and the
        # bulletin document upload (IMPORT_MAX_MB) have their own limits (security.py).
        "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,
        # A confirmation email refused for now (4xx) is tried again after this, then twice
        # as long each time (six tries: about two hours in all).
        "NOTIFICATION_RETRY_SECONDS": 60.0,
        # Webhook deliveries a receiver refused: retried after 10 s, 20 s, 40 s... this often.
        "WEBHOOK_RETRY_SECONDS": 10.0,
        "WEBHOOK_RETRIES": 8,
        # Webhook receivers on loopback, private or link-local addresses: refused in
        # production, so an admin account cannot make the server call its own network.
        "WEBHOOK_ALLOW_PRIVATE": _bool(env, "WEBHOOK_ALLOW_PRIVATE", not production),
        "MAX_FORM_MEMORY_SIZE": 8 * 1024 * 1024,
        "BULLETIN_NAME": env.get("BULLETIN_NAME") or "工作简报",
        # Staff type and read times (scheduled publishing) in this zone; stored in UTC.
        "TIMEZONE": _zone(env.get("TIMEZONE") or "Asia/Shanghai"),
        # The publication's identity (identity.py): defaults that admins override on
        # /admin/identity. Production refuses to publish while the postal address is empty.
        "POSTAL_ADDRESS": env.get("POSTAL_ADDRESS") or "",
        "BULLETIN_NAME_EN": env.get("BULLETIN_NAME_EN") or "",
        "ORGANIZATION": env.get("ORGANIZATION") or "",
        "CONTACT": env.get("CONTACT") or "",
        "MASTHEAD_COLOR": _colour(env, "MASTHEAD_COLOR", "#9b1c1c"),
        "SEND_BATCH_SIZE": _int(env, "SEND_BATCH_SIZE", 200, 1, 10000),
        # Sending (see webapp/delivery.py). A claimed batch that is not finished within the
        # lease is taken back by the sweeper; temporary failures are retried with backoff
        # from SEND_RETRY_BASE seconds, up to SEND_MAX_ATTEMPTS tries within SEND_DEADLINE.
        "SEND_RATE": _float(env, "SEND_RATE", 0.0),  # messages per second, all workers; 0: no limit
        "SEND_LEASE_SECONDS": _int(env, "SEND_LEASE_SECONDS", 300, 2, 86400),
        "SEND_FLUSH_EVERY": _int(env, "SEND_FLUSH_EVERY", 50, 1, 10000),
        "SEND_RETRY_BASE": _float(env, "SEND_RETRY_BASE", 60.0),
        "SEND_MAX_ATTEMPTS": _int(env, "SEND_MAX_ATTEMPTS", 8, 1, 100),
        "SEND_DEADLINE_HOURS": _float(env, "SEND_DEADLINE_HOURS", 48.0),
        # A pending row whose batch task was queued this long ago and never ran lost its task.
        "SEND_REQUEUE_SECONDS": _int(env, "SEND_REQUEUE_SECONDS", 900, 1, 86400),
        "SWEEP_SECONDS": _float(env, "SWEEP_SECONDS", 30.0),
        # Bounces (see webapp/bounces.py): VERP return paths at this domain when it is set.
        "BOUNCE_DOMAIN": env.get("BOUNCE_DOMAIN", "").strip().lower() or None,
        "BOUNCE_WEBHOOK_SECRET": env.get("BOUNCE_WEBHOOK_SECRET") or None,
        "SOFT_BOUNCE_LIMIT": _int(env, "SOFT_BOUNCE_LIMIT", 3, 1, 100),
        # Links in emails go through /r/<token> and are counted, in aggregate (readership.py);
        # the default for the setting of the same name on /admin/settings.
        "COUNTED_LINKS": _bool(env, "COUNTED_LINKS", True),
        # Whether an issue must be approved (审核通过) before it is published or scheduled;
        # the default for the setting of the same name on /admin/settings.
        "REVIEW_REQUIRED": _bool(env, "REVIEW_REQUIRED", True),
        # Each issue's subject line unless staff write one ({name} {year} {n} {total} {title}
        # {period}), for Chinese and for English readers; the defaults for the settings of
        # the same names on /admin/settings.
        "SUBJECT_PATTERN": env.get("SUBJECT_PATTERN") or "{name} {year}年第{n}期",
        "SUBJECT_PATTERN_EN": env.get("SUBJECT_PATTERN_EN") or "{name} No. {n}, {year}",
        # Gmail clips HTML over ~102 KB; auto mode keeps every digest under this many bytes.
        # Importing a document (CLI and staff upload): larger files are refused unread.
        "IMPORT_MAX_BYTES": _int(env, "IMPORT_MAX_MB", 20, 1, 200) * 1024 * 1024,
        "EMAIL_HTML_BUDGET": _int(env, "EMAIL_HTML_BUDGET", 90 * 1024, 20 * 1024, 1024 * 1024),
        # Public endpoints, per client IP (and per address for sign-ups); "N per minute;M per hour".
        "RATELIMIT_STORAGE_URI": redis_url,
        "RATELIMIT_SUBSCRIBE": env.get("RATELIMIT_SUBSCRIBE") or "5 per minute;30 per hour",
        "RATELIMIT_SUBSCRIBE_ADDRESS": env.get("RATELIMIT_SUBSCRIBE_ADDRESS") or "5 per hour",
        "RATELIMIT_LINKS": env.get("RATELIMIT_LINKS") or "30 per minute",
        "RATELIMIT_LOGIN": env.get("RATELIMIT_LOGIN") or "10 per minute;50 per hour",
        "RATELIMIT_LOGIN_ACCOUNT": env.get("RATELIMIT_LOGIN_ACCOUNT") or "5 per minute;20 per hour",
        # The JSON API, per token (api/__init__.py).
        "RATELIMIT_API": env.get("RATELIMIT_API") or "600 per minute",
        # The embeddable sign-up form: the sites allowed to frame it (CSP frame-ancestors),
        # space-separated origins; "*" lets any site embed it.
        "EMBED_FRAME_ANCESTORS": env.get("EMBED_FRAME_ANCESTORS") or "*",
        "RATELIMIT_HEADERS_ENABLED": True,
        # How many reverse proxies set X-Forwarded-For in front of the app (0: none); the rate
        # limits and consent records need the reader's address, not the proxy's.
        "PROXY_COUNT": _int(env, "PROXY_COUNT", 0, 0, 5),
        # The Celery queue this deployment's workers consume (one Redis can serve several).
        "CELERY_QUEUE": env.get("CELERY_QUEUE") or "bulletin",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "PREFERRED_URL_SCHEME": "https" if production else "http",
    }
