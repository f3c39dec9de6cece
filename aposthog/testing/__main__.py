"""`python -m aposthog.testing`: serve a FakePostHog until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from ._fake import FakePostHog

__all__ = ["main", "serve"]


async def serve(port: int = 0, api_key: str | None = None, project_id: int = 1) -> None:
    """Serve a FakePostHog on 127.0.0.1 until SIGINT or SIGTERM; print its URL and key."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with FakePostHog(port=port, api_key=api_key, project_id=project_id) as fake:
        # Machine-readable first lines: tests and scripts read them to connect.
        print(f"POSTHOG_HOST={fake.url}", flush=True)
        print(f"POSTHOG_PERSONAL_API_KEY={fake.api_key}", flush=True)
        print(f"POSTHOG_PROJECT_ID={fake.project_id}", flush=True)
        print("FakePostHog is serving; Ctrl-C stops it.", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m aposthog.testing",
        description="Serve a fake PostHog API on 127.0.0.1 (in-memory, for tests and demos).",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("--api-key", default=None, help="the key to accept (default: random)")
    parser.add_argument("--project-id", type=int, default=1, help="environment id (default: 1)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"argument --port: must be between 0 and 65535, got {args.port}")
    try:
        asyncio.run(serve(args.port, args.api_key, args.project_id))
    except OSError as exc:
        # A port in use (or not ours to take): one line, not a traceback.
        reason = exc.strerror or str(exc)
        parser.exit(1, f"{parser.prog}: error: cannot serve on 127.0.0.1:{args.port}: {reason}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
