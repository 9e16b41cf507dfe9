"""Extensions, created unbound and bound to an app in `create_app()`."""

from __future__ import annotations

import redis as redis_lib
from celery import Celery, Task
from flask import Flask, current_app, has_app_context
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Named constraints so Alembic can alter them on SQLite (batch mode) and PostgreSQL alike.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite, the embedded default, is shared by the web process and the workers.

    WAL lets readers go on while a worker writes, and the busy timeout makes a writer wait
    for the lock instead of failing at once with "database is locked".
    """
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
# Limits are declared on the views; storage is Redis (RATELIMIT_STORAGE_URI), so every web
# process counts against the same budget.
limiter = Limiter(key_func=get_remote_address)


def celery_init_app(app: Flask) -> Celery:
    """Bind a Celery app to `app`: every task runs inside an app context.

    A context is pushed only when none is active, so a task called eagerly inside a test
    shares the test's database session instead of opening a second one.
    """

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            if has_app_context():
                return self.run(*args, **kwargs)
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


def redis_client() -> redis_lib.Redis:
    """One client (and connection pool) per process."""
    client = current_app.extensions.get("bulletin.redis")
    if client is None:
        client = redis_lib.Redis.from_url(
            current_app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=5
        )
        current_app.extensions["bulletin.redis"] = client
    return client
