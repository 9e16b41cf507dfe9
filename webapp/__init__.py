"""Bulletin: subscriptions and sectioned digests for a periodic newsletter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from kombu import Exchange, Queue
from werkzeug.middleware.proxy_fix import ProxyFix

from . import errors, identity, labels, security
from .admin import bp as admin_bp
from .api import bp as api_bp
from .cli import register_commands
from .config import load_config
from .extensions import babel, celery_init_app, csrf, db, limiter, login_manager, migrate
from .hooks import bp as hooks_bp
from .i18n import DEFAULT_LOCALE, TRANSLATIONS_DIR, init_locale_switch, select_locale
from .public import bp as public_bp
from .public.counted_links import CountedLinks
from .readership import keep_readers_out_of_logs
from .rendering import safe_url


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the web application: configuration, extensions, blueprints, CLI."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(load_config(Path(app.instance_path)))
    if overrides:
        app.config.update(overrides)
    app.config["CELERY"] = celery_settings(app.config)

    db.init_app(app)
    # Batch mode lets the same migrations alter tables on SQLite, which lacks ALTER COLUMN.
    migrations = str(Path(app.root_path).parent / "migrations")
    migrate.init_app(app, db, directory=migrations, render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    babel.init_app(
        app,
        locale_selector=select_locale,
        default_locale=DEFAULT_LOCALE,
        default_translation_directories=str(TRANSLATIONS_DIR),
    )
    login_manager.init_app(app)
    limiter.init_app(app)
    init_locale_switch(app)
    # Counted links (/r/<token>) are answered ahead of Flask: the busiest request, and
    # one that needs none of its machinery (public/counted_links.py says what it saved).
    app.wsgi_app = CountedLinks(app, app.wsgi_app)
    if app.config["PROXY_COUNT"]:
        n = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    celery_init_app(app)

    security.register_converters(app)
    app.register_blueprint(public_bp)
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(hooks_bp, url_prefix="/hooks")
    app.register_blueprint(api_bp, url_prefix="/api/v1")

    app.jinja_env.filters["safe_url"] = safe_url

    errors.init_app(app)
    labels.init_app(app)
    identity.init_app(app)
    keep_readers_out_of_logs()
    security.init_app(app)

    register_commands(app)
    return app


def sweep_queue(config: dict[str, Any]) -> str:
    """The queue of the periodic sweep: the deployment's queue name + ".sweep"."""
    return config.get("CELERY_QUEUE", "bulletin") + ".sweep"


def celery_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Celery's settings, derived from ours so there is one place to configure Redis."""
    queue = config.get("CELERY_QUEUE", "bulletin")
    sweep_seconds = config.get("SWEEP_SECONDS", 30.0)
    sweep = sweep_queue(config)
    return {
        "broker_url": config["REDIS_URL"],
        "result_backend": None,
        "task_ignore_result": True,
        # A task's work is only acknowledged once done, so a killed worker's batch is redelivered;
        # the database claim makes the redelivery a no-op for rows already sent.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": queue,
        # Sweeps have a queue of their own, which every worker also consumes (a worker started
        # without -Q takes both): they no longer wait behind a backlog of send batches in one
        # FIFO, only for the next free child. One queued longer than SWEEP_SECONDS is stale
        # (the next one is due) and is dropped on arrival instead of piling up.
        "task_queues": [Queue(name, Exchange(name), routing_key=name) for name in (queue, sweep)],
        "task_routes": {
            "bulletin.sweep": {"queue": sweep},
            # The readership counters' flush is periodic repair work too (readership.py).
            "bulletin.flush_readership": {"queue": sweep},
        },
        # A batch must end well within the broker's redelivery timeout, or Redis would hand
        # a still-running task to a second worker (harmless, the claim stops it, but wasteful).
        "task_soft_time_limit": 1700,
        "task_time_limit": 1800,
        "broker_transport_options": {"visibility_timeout": 7200},
        "beat_schedule": {
            "sweep": {
                "task": "bulletin.sweep",
                "schedule": sweep_seconds,
                "options": {"expires": sweep_seconds},
            },
            # Click and page-view counters, from Redis into the database (readership.py).
            "readership": {
                "task": "bulletin.flush_readership",
                "schedule": sweep_seconds,
                "options": {"expires": sweep_seconds},
            },
        },
        "task_always_eager": config.get("CELERY_ALWAYS_EAGER", False),
        "include": [
            "tasks.sending",
            "tasks.mail",
            "tasks.readership",
            "tasks.webhooks",
            "tasks.readers",
            "tasks.imports",
        ],
    }
