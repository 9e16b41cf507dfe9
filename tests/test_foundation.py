"""The skeleton holds: schema from migrations, configuration errors, signed links, pages."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import itsdangerous.timed
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.helpers import TEST_REDIS_URL
from webapp.config import ConfigError, database_uri, load_config
from webapp.extensions import db
from webapp.models import exists_on
from webapp.tokens import Purpose, TokenError, make_token, read_token

BULLETIN = str(Path(sys.executable).parent / "bulletin")


def test_the_migrations_build_exactly_the_schema_the_models_describe(app):
    with app.app_context(), db.engine.connect() as conn:
        # The trigram search indexes exist only on PostgreSQL (see models.POSTGRESQL_ONLY).
        def built_here(obj, _name, _type, _reflected, _compare_to) -> bool:
            return exists_on(conn.dialect.name, obj)

        opts = {"compare_type": True, "include_object": built_here}
        context = MigrationContext.configure(conn, opts=opts)
        assert compare_metadata(context, db.metadata) == []


# --- configuration -------------------------------------------------------------------------


def run_bulletin(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    environment.update(env)
    return subprocess.run(
        [BULLETIN, *args], env=environment, capture_output=True, text=True, timeout=60
    )


def assert_one_line_error(result: subprocess.CompletedProcess, setting: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith(f"bulletin: configuration error: {setting}:"), lines[0]


@pytest.mark.parametrize("port", ["smtp", "0", "70000"])
def test_a_bad_smtp_port_is_one_line_naming_the_setting(port):
    assert_one_line_error(run_bulletin("issue-status", "1", SMTP_PORT=port), "SMTP_PORT")


def test_an_unreachable_database_is_one_line_naming_the_setting():
    result = run_bulletin(
        "issue-status", "1", DATABASE_URL="postgresql://postgres@127.0.0.1:9/none"
    )
    assert_one_line_error(result, "DATABASE_URL")


def test_an_unreachable_redis_is_one_line_naming_the_setting(tmp_path):
    result = run_bulletin(
        "publish", "1", REDIS_URL="redis://127.0.0.1:9/0", DATABASE_URL=f"sqlite:///{tmp_path}/x.db"
    )
    assert_one_line_error(result, "REDIS_URL")


def test_the_worker_refuses_an_unreachable_redis_in_one_line(tmp_path):
    environment = dict(os.environ, REDIS_URL="redis://127.0.0.1:9/0")
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path}/x.db"
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks.worker", "worker"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(result, "REDIS_URL")


def test_the_worker_module_is_what_celery_a_loads(tmp_path):
    environment = dict(os.environ, REDIS_URL=TEST_REDIS_URL)
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path}/x.db"
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks.worker", "report"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "broker_url" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="^SECRET_KEY: is required in production"):
        load_config(tmp_path, {"BULLETIN_ENV": "production"})
    result = run_bulletin("routes", BULLETIN_ENV="production", SECRET_KEY="")
    assert_one_line_error(result, "SECRET_KEY")


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"BASE_URL": "bulletin.example.org"}, "BASE_URL"),
        ({"BULLETIN_ENV": "staging"}, "BULLETIN_ENV"),
        ({"SEND_BATCH_SIZE": "-5"}, "SEND_BATCH_SIZE"),
    ],
)
def test_every_bad_setting_is_named(tmp_path, env, setting):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env)
    assert caught.value.setting == setting
    assert str(caught.value).startswith(f"{setting}: ")


def test_development_keeps_one_generated_secret_key(tmp_path):
    first = load_config(tmp_path, {})["SECRET_KEY"]
    assert len(first) >= 40
    assert load_config(tmp_path, {})["SECRET_KEY"] == first


def test_postgres_urls_use_the_driver_we_install():
    assert database_uri("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_uri("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_uri("sqlite:///x.db") == "sqlite:///x.db"


# --- signed links --------------------------------------------------------------------------


def test_a_token_only_works_for_its_own_purpose(app):
    with app.app_context():
        token = make_token(Purpose.CONFIRM, {"s": 7})
        assert read_token(Purpose.CONFIRM, token) == {"s": 7}
        with pytest.raises(TokenError) as caught:
            read_token(Purpose.UNSUBSCRIBE, token)
        assert not caught.value.expired


def test_a_tampered_token_is_refused(app):
    with app.app_context():
        token = make_token(Purpose.UNSUBSCRIBE, {"s": 7})
        payload, _, signature = token.rpartition(".")
        forged = make_token(Purpose.UNSUBSCRIBE, {"s": 8}).rpartition(".")[0] + "." + signature
        with pytest.raises(TokenError):
            read_token(Purpose.UNSUBSCRIBE, forged)


class Later:
    """Stands in for the `time` module itsdangerous reads, some days from now."""

    def __init__(self, days: int):
        self.offset = days * 86400

    def time(self) -> float:
        return time.time() + self.offset


def test_an_expired_confirmation_link_says_so(app, monkeypatch):
    with app.app_context():
        link = make_token(Purpose.CONFIRM, {"s": 1})
        monkeypatch.setattr(itsdangerous.timed, "time", Later(days=8))
        with pytest.raises(TokenError) as caught:
            read_token(Purpose.CONFIRM, link)
        assert caught.value.expired


def test_unsubscribe_links_outlive_sixty_days(app, monkeypatch):
    with app.app_context():
        link = make_token(Purpose.UNSUBSCRIBE, {"s": 1})
        monkeypatch.setattr(itsdangerous.timed, "time", Later(days=90))
        assert read_token(Purpose.UNSUBSCRIBE, link) == {"s": 1}


def test_links_signed_with_a_rotated_key_keep_working(app):
    with app.app_context():
        old_link = make_token(Purpose.UNSUBSCRIBE, {"s": 3})
    old_key = app.config["SECRET_KEY"]
    app.config.update(SECRET_KEY="a-brand-new-key", SECRET_KEY_FALLBACKS=[old_key])
    try:
        with app.app_context():
            assert read_token(Purpose.UNSUBSCRIBE, old_link) == {"s": 3}
    finally:
        app.config.update(SECRET_KEY=old_key, SECRET_KEY_FALLBACKS=[])


# --- pages ---------------------------------------------------------------------------------


def test_the_public_page_and_the_staff_login_answer(app):
    client = app.test_client()
    home = client.get("/")
    assert home.status_code == 200
    assert 'lang="zh' in home.get_data(as_text=True)
    assert client.get("/admin/login").status_code == 200
    dashboard = client.get("/admin/")
    assert dashboard.status_code == 302
    assert "/admin/login" in dashboard.headers["Location"]
