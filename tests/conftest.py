"""Shared fixtures: the real database, real Redis, a real Celery worker, a real SMTP server.

`TEST_DATABASE_URL` picks the database (PostgreSQL in CI); without it each run gets a fresh
SQLite file. The schema is always built by the Alembic migrations, never by `create_all()`,
so the tests exercise what a deployer runs. Redis is `TEST_REDIS_URL` (default: database 15
on the local server) and each run uses its own queue name, so a stray task from another run
can never reach this run's worker. When nothing answers there, the run starts a private
server on that port (webapp.localredis) and stops it at the end.

Before any test runs, the session checks what it needs: a database or Redis it cannot reach,
or no Chromium for the browser tests, ends the run at once with one line saying which.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from flask import g, request_started
from flask_babel import refresh
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests import browsers
from tests.helpers import TEST_REDIS_URL, Inbox, log_in, serving_smtp
from webapp import localredis
from webapp.config import database_uri

# Settings that load_config() reads from the environment, fixed before the app is built.
os.environ.setdefault("BULLETIN_ENV", "testing")
os.environ.setdefault("SECRET_KEY", "test-secret-key")
os.environ["MAIL_FROM"] = "工作简报 <bulletin@example.org>"
os.environ["BASE_URL"] = "https://bulletin.example.org"
os.environ["POSTAL_ADDRESS"] = "北京市海淀区 测试路 1 号"

RUN = uuid.uuid4().hex[:8]
CHROMIUM = pytest.StashKey[str]()
PRIVATE_REDIS = pytest.StashKey[tuple]()


# --- what the run needs, checked before any test ------------------------------------------


def pytest_sessionstart(session) -> None:
    """Fail in seconds, not with a connect timeout in every test: the database, then Redis
    (started privately when nothing answers at a loopback TEST_REDIS_URL)."""
    database = os.environ.get("TEST_DATABASE_URL")
    if database:
        problem = _database_problem(database)
        if problem:
            pytest.exit(f"TEST_DATABASE_URL: cannot connect to the database: {problem}", 2)
    if not localredis.answers(TEST_REDIS_URL):
        folder = Path(tempfile.mkdtemp(prefix="bulletin-test-redis-"))
        try:
            server = localredis.start(TEST_REDIS_URL, folder)
        except localredis.LocalRedisError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.exit(f"TEST_REDIS_URL: {exc}", 2)
        session.config.stash[PRIVATE_REDIS] = (server, folder)
        name = Path(server.args[0]).name
        _say(session, f"No Redis at {TEST_REDIS_URL}: this run started a private {name}.")


def _database_problem(url: str) -> str | None:
    uri = database_uri(url)
    options = {"connect_timeout": 5} if uri.startswith("postgresql") else {}
    engine = create_engine(uri, connect_args=options)
    try:
        with engine.connect():
            return None
    except OperationalError as exc:
        return str(exc.orig or exc).strip().splitlines()[0]
    finally:
        engine.dispose()


def pytest_collection_modifyitems(config, items) -> None:
    """On SQLite, leave out the tests of what only PostgreSQL does (`postgresql` marker: the
    CSV lines PostgreSQL writes, two writers at once), saying so; CI runs them on PostgreSQL."""
    if database_uri(os.environ.get("TEST_DATABASE_URL") or "").startswith("postgresql"):
        return
    left_out = [item for item in items if item.get_closest_marker("postgresql")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("postgresql")]
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"{len(left_out)} PostgreSQL-only tests left out: "
                "set TEST_DATABASE_URL=postgresql://... to run them."
            )


def pytest_collection_finish(session) -> None:
    """Find a Chromium, and the font it prints Chinese in, when browser tests are about to run,
    before any of them does."""
    if session.config.option.collectonly:
        return
    if any("chromium" in getattr(item, "fixturenames", ()) for item in session.items):
        try:
            path = browsers.find_chromium(lambda s: _say(session, s))
        except browsers.NoChromium as exc:
            pytest.exit(str(exc), 2)
        problem = browsers.cjk_font_problem(path)
        if problem:
            pytest.exit(problem, 2)
        session.config.stash[CHROMIUM] = path


def pytest_sessionfinish(session) -> None:
    server, folder = session.config.stash.get(PRIVATE_REDIS, (None, None))
    if server is not None:
        localredis.stop(server)
        shutil.rmtree(folder, ignore_errors=True)


def _say(session, line: str) -> None:
    session.config.pluginmanager.get_plugin("terminalreporter").write_line(line)


@pytest.fixture(scope="session")
def chromium(request) -> str:
    """The path of the Chromium the browser tests launch (see tests/browsers.py)."""
    return request.config.stash[CHROMIUM]


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with serving_smtp(inbox) as port:
        yield inbox, port


@pytest.fixture
def inbox(smtp_server) -> Inbox:
    inbox, _ = smtp_server
    inbox.clear()
    return inbox


def _database_url(tmp_dir: Path) -> str:
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_dir / 'test.db'}"


def _reset_schema(app) -> None:
    """Drop whatever an earlier run left, then build the schema with the migrations."""
    from flask_migrate import upgrade

    from webapp.extensions import db

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        else:
            db.drop_all()
            with db.engine.begin() as conn:
                conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        upgrade()


@pytest.fixture(scope="session")
def app(tmp_path_factory, smtp_server):
    from webapp import create_app

    _, smtp_port = smtp_server
    instance = tmp_path_factory.mktemp("instance")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": _database_url(instance),
            "REDIS_URL": TEST_REDIS_URL,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": smtp_port,
            "SMTP_TIMEOUT": 10.0,
            "CELERY_QUEUE": f"bulletin-test-{RUN}",
            # This run's own rate-limit counters, emptied after each test.
            "RATELIMIT_STORAGE_URI": TEST_REDIS_URL,
            "RATELIMIT_STORAGE_OPTIONS": {"key_prefix": f"bulletin-test-{RUN}"},
            # Review before publishing is on in production; tests of sending publish
            # directly, and tests of review turn it on (tests/test_review.py).
            "REVIEW_REQUIRED": False,
        }
    )
    app.instance_path = str(instance)

    # A test's requests share the app context the test holds, where Flask-WTF keeps the
    # CSRF token it made first, Flask-Login the user it loaded first and Flask-Babel the
    # language; forget them, so two signed-in clients (an editor and a reviewer) are each
    # themselves and each request picks its own language, as real requests do.
    def forget_request_state(_sender, **_) -> None:
        g.pop("csrf_token", None)
        g.pop("_login_user", None)
        refresh()

    request_started.connect(forget_request_state, app, weak=False)
    _reset_schema(app)
    forget_counters(app)  # a run before this one may have left some
    return app


@pytest.fixture(autouse=True)
def _clean_tables(request):
    """Empty every table after a test that used the database."""
    yield
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    from webapp import site_settings
    from webapp.extensions import db, limiter

    _settle_tasks(app)
    # Ids restart with the tables, so the digests this app cached for "issue 1" go with them.
    app.extensions.pop("bulletin.digests", None)
    site_settings.forget_cached()
    forget_counters(app)
    with app.app_context():
        limiter.reset()
    with app.app_context():
        db.session.remove()
        tables = [t.name for t in db.metadata.sorted_tables]
        with db.engine.begin() as conn:
            if db.engine.dialect.name == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in reversed(db.metadata.sorted_tables):
                    conn.execute(table.delete())
                # Readers' ids never repeat (AUTOINCREMENT); restart them as PostgreSQL's are.
                conn.execute(text("DELETE FROM sqlite_sequence"))


def forget_counters(app) -> None:
    """Drop click counters left in Redis: ids restart with the tables."""
    from webapp.extensions import redis_client
    from webapp.readership import key_prefix

    with app.app_context():
        client = redis_client()
        for key in client.scan_iter(match=f"{key_prefix()}*"):
            client.delete(key)


def _settle_tasks(app) -> None:
    """Let no task outlive its test: ids restart with the tables, so a late task for
    "issue 1" would act on the next test's issue 1. Queued ones are dropped; running ones
    (the in-process worker shares this module state) are waited for."""
    from celery.worker import state

    app.extensions["celery"].control.purge()
    deadline = time.monotonic() + 30
    while (state.active_requests or state.reserved_requests) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def db_session(app):
    """An app context and its session for a test that works with the domain modules."""
    from webapp.extensions import db

    with app.app_context():
        yield db.session
        db.session.rollback()


@pytest.fixture(scope="session")
def celery_worker(app):
    """A real Celery worker consuming this run's queue on the real Redis, in threads."""
    celery_app = app.extensions["celery"]
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as worker:
        yield worker


@pytest.fixture
def staff_client(app):
    """Signed in as an admin."""
    from webapp.models import StaffRole

    return log_in(app, "admin@example.org", StaffRole.ADMIN)


@pytest.fixture
def editor_client(app):
    """Signed in as an editor (issues only)."""
    from webapp.models import StaffRole

    return log_in(app, "writer@example.org", StaffRole.EDITOR)


@pytest.fixture
def live_server(app):
    """The app on a loopback port, with email links pointing at it; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    saved = app.config["BASE_URL"]
    app.config["BASE_URL"] = base_url
    app.extensions.pop("bulletin.url_adapter", None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base_url
    finally:
        server.shutdown()
        app.config["BASE_URL"] = saved
        app.extensions.pop("bulletin.url_adapter", None)
