"""
The `aposthog` command (also `python -m aposthog`). Standard library only.

Exit status: 0 on success, 1 for an API or network error, 2 for a usage error,
130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from .._version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aposthog",
        description="An async client for PostHog's API, from the command line.",
    )
    parser.add_argument("--version", action="version", version=f"aposthog {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "demo", help="run the main job against an embedded fake PostHog (no credentials)"
    )
    serve = commands.add_parser("serve-fake", help="serve a fake PostHog on 127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--api-key", default=None)
    serve.add_argument("--project-id", type=int, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return asyncio.run(run_demo(sys.stdout))
        if args.command == "serve-fake":
            from ..testing.__main__ import serve

            asyncio.run(serve(args.port, args.api_key, args.project_id))
            return 0
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse requires one
