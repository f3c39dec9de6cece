"""examples/worker_pool.py: many exports, one bounded client, 429s absorbed."""

from __future__ import annotations

from .conftest import run_example


def _report(stdout: str) -> dict[str, str]:
    return dict(line.strip().split(": ", 1) for line in stdout.splitlines())


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
