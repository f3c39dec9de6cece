"""
What OpenTelemetry tracing costs a call: the same client, with and without spans.

A FakePostHog runs in a separate process (`python -m aposthog.testing`). Three views of
one client share its connection pool and limiter and differ only in their observer:

* untraced: no observer (what a client is without `aposthog[otel]`);
* API only: opentelemetry-api installed, no SDK configured (every span is a no-op);
* SDK: an opentelemetry-sdk tracer provider recording every span (a processor that
  drops them, so no exporter is measured).

Each round sends the same number of `customer_profile_configs.get(id)` calls through each
view, in rotating order; per round the throughputs give two ratios against untraced, and
the medians are the result. Whole calls are noisy on a shared machine, so the observer's
own work per call is also timed alone and set against an untraced call. Needs
`aposthog[otel]` and opentelemetry-sdk.

    python benchmarks/bench_tracing.py [--requests 1500] [--rounds 11] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import timeit

from _drive import drive
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import NoOpTracerProvider

import aposthog
from aposthog._api import Api
from aposthog._otel import TracingObserver


def _view(client: aposthog.Client, observer: TracingObserver | None) -> aposthog.Client:
    api = client._api
    return client._view(Api(api.pipeline, api.config, observer))


async def bench(url: str, key: str, requests: int, rounds: int, concurrency: int) -> None:
    recording = TracerProvider()
    recording.add_span_processor(SpanProcessor())  # records every span, exports none
    async with aposthog.Client(
        api_key=key, host=url, project_id=1, max_concurrency=concurrency
    ) as client:
        views = {
            "untraced": _view(client, None),
            "API only": _view(client, TracingObserver(NoOpTracerProvider())),
            "SDK": _view(client, TracingObserver(recording)),
        }
        config = await client.customer_profile_configs.create(scope="person")
        calls = {
            name: (lambda ph=ph: ph.customer_profile_configs.get(config.id))
            for name, ph in views.items()
        }
        for call in calls.values():  # warm connections and caches
            await drive(200, concurrency, call)
        results: dict[str, list[float]] = {name: [] for name in calls}
        names = list(calls)
        for trial in range(rounds):
            order = names[trial % 3 :] + names[: trial % 3]
            for name in order:
                results[name].append(await drive(requests, concurrency, calls[name]))
    observers = {
        "API only": TracingObserver(NoOpTracerProvider()),
        "SDK": TracingObserver(recording),
    }
    costs = {name: _observer_cost(observer, url) for name, observer in observers.items()}
    base = results["untraced"]
    print(f"{rounds} rounds of {requests} get() calls per view at concurrency {concurrency}")
    for name, rates in results.items():
        print(f"  {name:9} {statistics.median(rates):7.0f} calls/s (median)")
    for name in ("API only", "SDK"):
        ratios = sorted(a / b for a, b in zip(results[name], base, strict=True))
        print(
            f"ratio {name}/untraced = {statistics.median(ratios):.2f}x "
            f"(min {ratios[0]:.2f}, max {ratios[-1]:.2f})"
        )
    # Whole calls are noisy on a shared machine; the observer's own work is not.
    call_us = 1e6 / statistics.median(base)
    for name, cost in costs.items():
        print(
            f"observer work, {name}: {cost:.1f} us per call "
            f"= {cost / call_us:.1%} of an untraced call ({call_us:.0f} us)"
        )


def _observer_cost(observer: TracingObserver, url: str, n: int = 20000) -> float:
    """Microseconds of observer work for one call: start, one attempt, end (best of 5)."""

    def one() -> None:
        call = observer.call("GET", "customer_profile_configs/{id}", url)
        call.attempt(1)
        call.end(200, None, 1)

    return min(timeit.repeat(one, number=n, repeat=5)) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=1500, help="calls per view per round")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = min(args.requests, 300), min(args.rounds, 3)
    with subprocess.Popen(
        [sys.executable, "-m", "aposthog.testing"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            env = dict(server.stdout.readline().strip().split("=", 1) for _ in range(3))
            asyncio.run(
                bench(
                    env["POSTHOG_HOST"],
                    env["POSTHOG_PERSONAL_API_KEY"],
                    args.requests,
                    args.rounds,
                    args.concurrency,
                )
            )
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
