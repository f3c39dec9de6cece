"""
A worker pool that reads the logs of many batch exports, and pauses and unpauses them,
concurrently, under one client's `max_concurrency`, absorbing PostHog's 429s.

    python examples/worker_pool.py                 # against an embedded FakePostHog
    POSTHOG_PERSONAL_API_KEY=… POSTHOG_PROJECT_ID=… python examples/worker_pool.py --real

The fleet case: several processes (on one machine here, on many in production) share
one key, so they share PostHog's budget for it. With `--processes N --redis URL` the
work is split between N processes, whose clients keep the rate-limit windows in one
Redis (`aposthog.RedisRateLimitStore`): together they stay under the key's budget and
meet no 429. Against the embedded FakePostHog the budget is scaled down (PostHog Cloud
allows 480 requests a minute; the fake here 40 per 4 s) so the run spans a few windows.

    python examples/worker_pool.py --processes 4 --redis redis://127.0.0.1:6379/0

Against a real PostHog it only reads logs unless `--cycle` is given (pausing and
unpausing every export of a project is not something to do by accident). PostHog shows
logs to no scoped key: with one, the logs are reported unreadable and the cycle goes on.
An unpause that fails is tried again; an export still paused is reported by name
(`LEFT PAUSED: …`, exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import anyio.abc

import aposthog
from aposthog.testing import FakePostHog

WORKERS = 20
# How long a stop (Ctrl-C, SIGTERM) waits for an export's pause and unpause to end.
CYCLE_WITHIN = 30.0
# How many times an unpause is tried before its export is reported left paused.
UNPAUSE_ATTEMPTS = 3
# The fake's budget in the fleet case: PostHog's sliding window, scaled down.
FLEET_RATE = aposthog.Rate(40, per=4)


@contextlib.asynccontextmanager
async def posthog(
    real: bool, exports: int, *, burst_429s: bool = True
) -> AsyncIterator[tuple[aposthog.Client, FakePostHog | None]]:
    """A client of the real PostHog (from the environment), or of a seeded FakePostHog."""
    if real:
        async with aposthog.Client(max_concurrency=8) as ph:
            yield ph, None
        return
    async with FakePostHog(latency=0.005) as fake, fake.client(max_concurrency=8) as ph:
        for i in range(exports):
            export = await ph.batch_exports.create(
                name=f"export-{i:03d}",
                destination={"type": "NoOp", "config": {}},
                interval="hour",
            )
            fake.add_batch_export_logs(
                export.id,
                ["run started", {"message": f"export {i} failed", "level": "ERROR"}, "run done"],
            )
        if burst_429s:  # PostHog throttles bursts: the pool's first log reads meet 429s.
            fake.throttle_next(8, wait=0, path="/logs")
        fake.reset_stats()
        yield ph, fake


async def work(
    ph: aposthog.Client,
    *,
    cycle: bool,
    report: collections.Counter[str],
    exports: list[aposthog.BatchExport] | None = None,
) -> None:
    """Every export through a bounded pool of workers; one failure never stops the others."""
    if exports is None:
        exports = [e async for e in ph.batch_exports.list()]
    queue = list(exports)
    report["exports"] = len(queue)

    async def worker() -> None:
        while queue:
            export = queue.pop()
            try:
                errors = await ph.batch_exports.logs(export.id, level="ERROR", limit=50)
            except aposthog.PermissionDeniedError:
                # PostHog refuses logs to every scoped key: the cycle goes on without them.
                report["logs not readable with this key (a scoped one)"] += 1
            except aposthog.PostHogError as err:
                report[f"failed: {type(err).__name__}"] += 1
                continue
            else:
                report["error log lines"] += len(errors.results)
            if cycle:
                await cycle_one(export)

    async def cycle_one(export: aposthog.BatchExport) -> None:
        # One step: a stop waits for the pair (a while at most), so that no export is
        # left switched off on PostHog; an unpause that fails is tried again.
        paused = False  # as far as PostHog may know: from the pause's sending on
        refused: aposthog.PostHogError | None = None  # the last unpause's
        with anyio.CancelScope(shield=True) as pair:
            pair.deadline = anyio.current_time() + CYCLE_WITHIN
            try:
                paused = True
                await ph.batch_exports.pause(export.id)
            except aposthog.PostHogError as err:  # refused: nothing was switched off
                report[f"failed: {type(err).__name__}"] += 1
                return
            else:
                for attempt in range(UNPAUSE_ATTEMPTS):  # (a 500 is not retried for it)
                    refused = await refusal(ph.batch_exports.unpause(export.id))
                    if refused is None:
                        paused = False
                        break
                    await anyio.sleep(0.5 * (attempt + 1))
        if paused:
            # By name: the one thing its user must then do by hand.
            why = "took too long" if pair.cancelled_caught else type(refused).__name__
            report[f"LEFT PAUSED: {export.name} ({export.id}), {why}"] += 1
        elif pair.cancelled_caught:
            report["failed: pause and unpause took too long"] += 1
        else:
            report["paused and unpaused"] += 1

    async with anyio.create_task_group() as tg:
        for _ in range(WORKERS):
            tg.start_soon(worker)


async def refusal(call: Awaitable[object]) -> aposthog.PostHogError | None:
    """The error `call` ends in, or None once it went through."""
    try:
        await call
    except aposthog.PostHogError as err:
        return err
    return None


async def fleet_member(args: argparse.Namespace, report: collections.Counter[str]) -> None:
    """One process of the fleet: its share of the exports, on the fleet's shared budget."""
    store = aposthog.RedisRateLimitStore(args.redis)
    if args.url:  # the parent's FakePostHog: its scaled-down budget, stated explicitly
        limits = aposthog.RateLimits(api=FLEET_RATE, margin=0.4)
        client = aposthog.Client(
            host=args.url, api_key=args.key, project_id=1,
            rate_limits=limits, rate_limit_store=store, max_concurrency=8,
        )  # fmt: skip
    else:  # PostHog Cloud: "auto" knows its published throttles
        client = aposthog.Client(rate_limit_store=store, max_concurrency=8)
    async with client as ph:
        mine = [e async for e in ph.batch_exports.list()][args.member :: args.processes]
        await work(ph, cycle=args.cycle or bool(args.url), report=report, exports=mine)


async def run_fleet(args: argparse.Namespace, real: bool) -> collections.Counter[str]:
    """Start `--processes` members, wait for them, and add up their reports."""
    report: collections.Counter[str] = collections.Counter()
    async with contextlib.AsyncExitStack() as stack:
        fake = None
        if not real:
            _, fake = await stack.enter_async_context(
                posthog(False, args.exports, burst_429s=False)
            )
            assert fake is not None  # posthog(False, ...) always starts one
            fake.throttles.rate_limit_enabled = True  # PostHog Cloud's throttling, scaled
            fake.throttles.burst = FLEET_RATE
            fake.throttles.sustained = None
            fake.reset_stats()
        command = [sys.executable, __file__, "--redis", args.redis]
        command += ["--processes", str(args.processes)] + (["--cycle"] if args.cycle else [])
        if fake is not None:
            command += ["--url", fake.url, "--key", fake.api_key]
        # Cancelled (Ctrl-C, SIGTERM), each `run_member` stops its member.
        results = await asyncio.gather(
            *(run_member([*command, "--member", str(n)]) for n in range(args.processes))
        )
        for n, result in enumerate(results):
            # A member with a failed export reports it and exits 1; one that stopped
            # short (Redis unreachable, a crash) reports nothing: its error is shown.
            lines = result.stdout.decode().splitlines()
            if not any(line.strip().startswith("seconds:") for line in lines):
                report["failed: fleet member stopped"] += 1
                shown = result.stderr.decode(errors="replace").strip().splitlines()[-5:]
                print(f"fleet member {n} exited {result.returncode}:", file=sys.stderr)
                for line in shown:
                    print(f"  {line}", file=sys.stderr)
                continue
            for line in lines:
                name, value = line.rsplit(":", 1)
                if name.strip() != "seconds":
                    report[name.strip()] += int(value)
        if fake is not None:
            report["requests sent"] = len(fake.requests)
            report["429s absorbed"] = fake.status_counts[429]
            report["most in flight at once"] = fake.max_in_flight
    return report


async def run_member(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    """
    One member process, to its end, with what it printed. Cancelled (the parent stops),
    it is stopped as the parent is, by SIGTERM: it ends the pause and unpause it is in,
    and exits; one that has not within `CYCLE_WITHIN` (and a little) is killed. (A
    SIGTERM reaches the parent alone, where Ctrl-C in a terminal reaches every member
    too: they were left working, to their end.)
    """
    process = await anyio.open_process(command)
    printed: tuple[bytearray, bytearray] = (bytearray(), bytearray())

    async def drain(stream: anyio.abc.ByteReceiveStream, into: bytearray) -> None:
        async for chunk in stream:
            into += chunk

    try:
        async with anyio.create_task_group() as tg:
            assert process.stdout is not None
            assert process.stderr is not None
            tg.start_soon(drain, process.stdout, printed[0])
            tg.start_soon(drain, process.stderr, printed[1])
            await process.wait()
    except BaseException:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError):  # it had just ended
                process.terminate()
            with anyio.move_on_after(CYCLE_WITHIN + 5):  # then `aclose()` kills it
                await process.aclose()
        raise
    await process.aclose()
    assert process.returncode is not None
    return subprocess.CompletedProcess(command, process.returncode, *map(bytes, printed))


def _count(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `least` (else a usage error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be {least} or more, got {value}")
        return value

    return parse


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--real", action="store_true", help="use the PostHog of POSTHOG_*")
    parser.add_argument(
        "--cycle", action="store_true", help="pause and unpause (always on the fake)"
    )
    parser.add_argument(
        "--exports", type=_count(0), default=40, help="exports the fake starts with"
    )
    parser.add_argument("--processes", type=_count(1), default=1, help="processes sharing the key")
    parser.add_argument("--redis", help="the Redis URL the processes share (with --processes)")
    for hidden in ("--url", "--key"):  # what the fleet's parent tells each member
        parser.add_argument(hidden, default="", help=argparse.SUPPRESS)
    parser.add_argument("--member", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    real = args.real  # only when asked: a key in the environment alone is no consent
    report: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    if args.processes > 1 and not args.redis:
        parser.error("--processes needs --redis: the processes share their budget through it")
    if args.member >= 0:
        await fleet_member(args, report)
    elif args.processes > 1:
        report = await run_fleet(args, real)
    else:
        async with posthog(real, args.exports) as (ph, fake):
            await work(ph, cycle=args.cycle or not real, report=report)
            if fake is not None:
                report["requests sent"] = len(fake.requests)
                report["429s absorbed"] = fake.status_counts[429]
                report["most in flight at once"] = fake.max_in_flight
    for name, value in sorted(report.items()):
        print(f"{name:>24}: {value}")
    print(f"{'seconds':>24}: {time.monotonic() - started:.1f}")
    return 1 if any(name.startswith(("failed", "LEFT PAUSED")) for name in report) else 0


async def run() -> int:
    """`main()`, with Ctrl-C (and SIGTERM) cancelling it so that its cleanup runs: each
    export's pause and unpause end, a fleet's members are stopped, the fake is closed."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await main()
    except asyncio.CancelledError:
        print("\nworker_pool: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
