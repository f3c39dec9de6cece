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
