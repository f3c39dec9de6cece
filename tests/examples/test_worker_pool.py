"""examples/worker_pool.py: many exports, one bounded client, 429s absorbed."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import anyio
import pytest

from aposthog.testing import FakePostHog

from .conftest import EXAMPLES, run_example


def _report(stdout: str) -> dict[str, str]:
    return dict(line.strip().rsplit(": ", 1) for line in stdout.splitlines())


def test_worker_pool_reads_logs_and_cycles_every_export() -> None:
    """Every export's log is read and every export paused and unpaused; nothing failed."""
    result = run_example("worker_pool.py", "--exports", "30")
    assert 0 == result.returncode, result.stderr
    report = _report(result.stdout)
    assert "30" == report["exports"]
    assert "30" == report["error log lines"]
    assert "30" == report["paused and unpaused"]
    assert "8" == report["429s absorbed"]
    # 1 list + 30 log reads + 8 retried reads + 60 pause/unpause calls.
    assert "99" == report["requests sent"]
    assert int(report["most in flight at once"]) <= 8
    assert not any(name.startswith("failed") for name in report)


def test_a_key_in_the_environment_alone_does_not_make_it_real() -> None:
    """The docstring: a plain run uses the embedded fake; only `--real` uses POSTHOG_*."""
    unreachable = {"POSTHOG_PERSONAL_API_KEY": "phx_of_a_developer", "POSTHOG_PROJECT_ID": "1"}
    unreachable["POSTHOG_HOST"] = "http://127.0.0.1:9"  # were it used: refused, loopback
    result = run_example("worker_pool.py", "--exports", "3", posthog=unreachable)
    assert 0 == result.returncode, result.stderr
    assert "3" == _report(result.stdout)["paused and unpaused"]


def test_a_fleet_of_processes_shares_one_budget_through_redis(redis_url: str) -> None:
    """Four processes split the work; their clients share the key's windows in Redis."""
    result = run_example(
        "worker_pool.py", "--processes", "4", "--redis", redis_url, "--exports", "20"
    )
    assert 0 == result.returncode, result.stderr
    report = _report(result.stdout)
    assert "20" == report["exports"]
    assert "20" == report["error log lines"]
    assert "20" == report["paused and unpaused"]
    # 4 lists + 20 log reads + 40 pause/unpause calls, over the fake's 40 per 4 s: no 429.
    assert "64" == report["requests sent"]
    assert "0" == report["429s absorbed"]
    assert not any(name.startswith("failed") for name in report)


# ------------------------------------------------------------------ QA: failures and stops


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("worker_pool", EXAMPLES / "worker_pool.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker_pool = _load()


@pytest.mark.anyio
async def test_a_failed_export_in_a_fleet_is_reported_not_a_traceback(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in the single process: one failure is a `failed: …` line, never a crash."""
    seeded = worker_pool.posthog

    @contextlib.asynccontextmanager
    async def one_failing(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with seeded(*args, **kwargs) as (ph, fake):
            fake.fail_next(1, status=400, path="/logs")  # one export's log read is refused
            yield ph, fake

    monkeypatch.setattr(worker_pool, "posthog", one_failing)
    with anyio.fail_after(30):
        code = await worker_pool.main(["--processes", "2", "--redis", redis_url, "--exports", "2"])
    report = _report(capsys.readouterr().out)
    assert 1 == code
    assert "1" == report["failed: BadRequestError"]
    assert "2" == report["exports"]


@pytest.mark.anyio
async def test_a_cancelled_pool_leaves_no_export_paused() -> None:
    """Stopping the pool mid-cycle must not leave a user's exports switched off."""
    async with FakePostHog(latency=0.02) as fake, fake.client(max_concurrency=8) as ph:
        exports = [
            await ph.batch_exports.create(
                name=f"export-{i}", destination={"type": "NoOp", "config": {}}, interval="hour"
            )
            for i in range(8)
        ]
        report: Counter[str] = Counter()
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: worker_pool.work(ph, cycle=True, report=report))
                # Ctrl-C as soon as PostHog has paused an export.
                while not any(r.path.endswith("/pause/") for r in fake.requests):  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                await anyio.sleep(0.03)
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        paused = [e.name for e in exports if (await ph.batch_exports.get(e.id)).paused]
        assert [] == paused


@pytest.mark.anyio
@pytest.mark.parametrize("failures", [1, 100])
async def test_an_unpause_that_fails_is_tried_again_then_reported_by_name(failures: int) -> None:
    """
    PostHog fails an unpause (a 500 is never retried for a POST): the export stayed
    paused, and the report said only `failed: InternalServerError`. It is tried again;
    one that still fails is reported by name as left paused, and the pool exits 1.
    """
    async with worker_pool.posthog(False, 4) as (ph, fake):
        fake.fail_next(failures, status=500, path="/unpause")
        report: Counter[str] = Counter()
        with anyio.fail_after(30):
            await worker_pool.work(ph, cycle=True, report=report)
        paused = [e.name async for e in ph.batch_exports.list() if e.paused]
    if failures == 1:
        assert "4" == str(report["paused and unpaused"])
        assert [] == paused
    else:
        assert 4 == len(paused)
        left = [name for name in report if name.startswith("LEFT PAUSED")]
        assert sorted(f"LEFT PAUSED: {name} (" for name in paused) == sorted(
            line.split("(")[0] + "(" for line in left
        )
        assert all(line.endswith("InternalServerError") for line in left)
    assert not any(name.startswith("failed") for name in report)


@pytest.mark.anyio
async def test_a_scoped_key_cycles_the_exports_without_their_logs() -> None:
    """PostHog refuses logs to every scoped key: the pool did nothing else with one (each
    export `failed: PermissionDeniedError`, no pause or unpause sent)."""
    async with worker_pool.posthog(False, 3) as (_, fake):
        key = fake.add_key(scopes=["batch_export:read", "batch_export:write"])
        async with fake.client(api_key=key) as scoped:
            report: Counter[str] = Counter()
            await worker_pool.work(scoped, cycle=True, report=report)
    assert 3 == report["logs not readable with this key (a scoped one)"]
    assert 3 == report["paused and unpaused"]
    assert not any(name.startswith("failed") for name in report)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_a_fleet_stops_its_member_processes(redis_url: str) -> None:
    """A service manager's stop must stop the whole fleet, not only its parent. (A fleet
    at work for a minute and more: its members, never told, worked on to their end, and
    the parent waited for them.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    parent = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "worker_pool.py"), "--processes", "2",
         "--redis", redis_url, "--exports", "400"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    members: list[int] = []
    try:
        deadline = time.monotonic() + 10
        while len(members) < 2 and time.monotonic() < deadline:
            members = _children(parent.pid)
            time.sleep(0.02)
        assert 2 == len(members)
        time.sleep(0.1)  # the members are at work
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=10)
        time.sleep(0.3)
        assert [] == [pid for pid in members if _alive(pid)]
    finally:
        for pid in members:  # the orphans this test made
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
