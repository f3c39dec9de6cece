"""
A real `redis-server` for the tests, started on a free loopback port and stopped after.

Without the binary (or without redis-py) the Redis tests are skipped with a message
saying what to install; under `CI=true` they fail instead, so CI never passes by
skipping them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

_INSTALL = (
    "install redis-server (Debian/Ubuntu: `apt-get install -y redis-server`) "
    "and redis-py (`pip install 'aposthog[redis]'`)"
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires the Redis tests to run: {_INSTALL}")
    pytest.skip(f"{reason}: {_INSTALL} to run the Redis tests")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_redis_py() -> None:
    """Skip (or, under CI, fail) the calling test when redis-py is missing."""
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        _unavailable("redis-py is not installed")


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """Start redis-server on a free 127.0.0.1 port; yield its URL; stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not on PATH")
    require_redis_py()
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="aposthog-redis-") as workdir:
        for _attempt in range(5):
            port = _free_port()
            process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", workdir],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while process.poll() is None and time.monotonic() < deadline:
                if _answers_ping(port):
                    break
                time.sleep(0.02)
            if process.poll() is None and _answers_ping(port):
                break
            process.kill()
            process.wait()
        else:
            pytest.fail("redis-server did not start on a free loopback port")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server the tests started (shared by the session)."""
    with running_redis() as url:
        yield url
