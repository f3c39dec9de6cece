"""
Start-up: `python -c "import aposthog"` against `python -c "import aiohttp"`.

Each command runs in a fresh interpreter, alternating (so both see the same machine),
`--runs` times; the medians and their ratio are printed. aposthog is imported from
this checkout; both sides read compiled bytecode from one temporary cache.

    python benchmarks/bench_import.py [--runs 10] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(statement: str, cache: str) -> float:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    # Both sides read compiled bytecode, from one cache outside the checkout (written by
    # the warm-up run even where the environment says not to write bytecode).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, env=env)
    return time.perf_counter() - started


_OWN = (
    "import time, aiohttp; t = time.perf_counter(); import aposthog; "
    "print((time.perf_counter() - t) * 1000)"
)


def _output(statement: str, cache: str) -> str:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, PYTHONPYCACHEPREFIX=cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [sys.executable, "-c", statement], check=True, env=env, capture_output=True, text=True
    )
    return done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 10)
    statements = {
        "python -c pass": "pass",
        "import aiohttp": "import aiohttp",
        "import aposthog": "import aposthog",
        "import aposthog; aposthog.Client": "import aposthog; aposthog.Client",
    }
    times: dict[str, list[float]] = {name: [] for name in statements}
    with tempfile.TemporaryDirectory() as cache:
        for statement in statements.values():  # write the bytecode caches, warm the disk
            _time(statement, cache)
        for _ in range(runs):
            for name, statement in statements.items():
                times[name].append(_time(statement, cache))
        # aposthog's own share, timed inside the interpreter after aiohttp is loaded:
        # steadier than the difference of two process timings on a busy machine.
        own = [float(_output(_OWN, cache)) for _ in range(runs)]
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    print(f"\nstart-up, medians of {runs} fresh interpreters")
    for name, median in medians.items():
        print(f"  {name:36s} {median:7.1f} ms")
    ratio = medians["import aposthog"] / medians["import aiohttp"]
    print(f"  ratio import aposthog / import aiohttp = {ratio:.2f}x  (target <= 1.15x)")
    mine = statistics.median(own)
    aiohttp_only = medians["import aiohttp"] - medians["python -c pass"]
    print(
        f"  aposthog's own import after aiohttp's: {mine:.1f} ms, so"
        f" (interpreter + aiohttp + aposthog) / (interpreter + aiohttp) ="
        f" {(medians['import aiohttp'] + mine) / medians['import aiohttp']:.2f}x"
        f"  (aposthog's own part is {mine / aiohttp_only:.0%} of aiohttp's import)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
