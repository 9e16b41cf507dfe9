"""A machine without services: the private Redis that `make run` and the tests start, and a
test run that stops at once, in one line, when it cannot reach what it needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.helpers import free_port
from webapp import localredis


def test_the_valkey_from_pip_serves_where_nothing_answered(tmp_path):
    binary = localredis.server_binary(search_path="")  # as on a machine without redis-server
    assert binary is not None and binary.name == "valkey-server"
    url = f"redis://127.0.0.1:{free_port()}/3"
    assert not localredis.answers(url)

    server = localredis.start(url, tmp_path, binary)
    try:
        client = redis.Redis.from_url(url)
        client.set("greeting", "你好")
        assert client.get("greeting").decode() == "你好"
        # The rate limiter and the delivery journal lean on scripts and pipelines.
        assert client.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, "n", 5) == 5
        assert client.pipeline().incr("n").expire("n", 60).execute() == [6, True]
    finally:
        localredis.stop(server)
    assert not localredis.answers(url)
    assert (tmp_path / "redis.log").exists()


def test_no_server_is_started_for_a_redis_on_another_machine(tmp_path):
    with pytest.raises(localredis.LocalRedisError, match="not a redis:// address on this machine"):
        localredis.start("redis://cache.example.org:6379/0", tmp_path)


def test_an_unreachable_test_database_stops_the_run_in_one_line():
    environment = dict(os.environ, TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:9/none")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_foundation.py::test_postgres_urls_use_the_driver_we_install"],
        cwd=Path(__file__).parent.parent, env=environment, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "TEST_DATABASE_URL: cannot connect to the database:" in result.stdout
    assert "passed" not in result.stdout
