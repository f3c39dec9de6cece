"""`python -m aposthog.testing`: serve a FakePostHog until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from .._config import _LARGEST_ID, unsendable_key
from ._batch_export_integrations import INTEGRATION_KINDS
from ._fake import FakePostHog

__all__ = ["main", "serve"]


#: The integration kinds `--integration` seeds (the batch-export destinations needing them).
INTEGRATION_CHOICES = tuple(sorted(set(INTEGRATION_KINDS.values())))
#: What a seeded integration holds where PostHog checks it on every export write
#: (placeholders: nothing is ever connected to): (config, sensitive_config).
_SEEDS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "snowflake": (
        {"account": "fake-account", "user": "posthog", "authentication_type": "password"},
        {"password": "fake-password"},
    ),
    "databricks": (
        {"server_hostname": "fake.cloud.databricks.com"},
        {"client_id": "fake-client-id", "client_secret": "fake-client-secret"},
    ),
    "azure-blob": ({}, {"connection_string": "AccountName=fake;AccountKey=ZmFrZQ=="}),
}


async def serve(
    port: int = 0,
    api_key: str | None = None,
    project_id: int = 1,
    integrations: Sequence[str] = (),
) -> None:
    """
    Serve a FakePostHog on 127.0.0.1 until SIGINT or SIGTERM; print its URL and key.

    Each kind in `integrations` (e.g. `aws-s3`) is added to the team, as connecting it in
    PostHog's UI would, and its id printed as `POSTHOG_INTEGRATION_AWS_S3=1`: the id an
    AwsS3 (or other integration-backed) batch export names in `destination.integration`.
    A snowflake, databricks or azure-blob one holds placeholder credentials, which
    PostHog requires of those kinds.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    # Nobody reads `fake.requests` from another process: kept, they only grow.
    async with FakePostHog(
        port=port, api_key=api_key, project_id=project_id, record_requests=False
    ) as fake:
        # Machine-readable first lines: tests and scripts read them to connect.
        print(f"POSTHOG_HOST={fake.url}", flush=True)
        print(f"POSTHOG_PERSONAL_API_KEY={fake.api_key}", flush=True)
        print(f"POSTHOG_PROJECT_ID={fake.project_id}", flush=True)
        for kind in integrations:
            config, sensitive_config = _SEEDS.get(kind, ({}, {}))
            added = fake.add_integration(kind, config=config, sensitive_config=sensitive_config)
            name = kind.upper().replace("-", "_")
            print(f"POSTHOG_INTEGRATION_{name}={added['id']}", flush=True)
        print("FakePostHog is serving; Ctrl-C stops it.", file=sys.stderr, flush=True)
        await stop.wait()


def add_integration_argument(parser: argparse.ArgumentParser) -> None:
    """`--integration KIND`, repeatable: integrations to seed (see `serve`)."""
    parser.add_argument(
        "--integration",
        dest="integrations",
        action="append",
        default=[],
        choices=INTEGRATION_CHOICES,
        metavar="KIND",
        help="add an integration of this kind and print its id (repeatable; one of "
        + ", ".join(INTEGRATION_CHOICES)
        + ")",
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve."""
    parser, args = parse_arguments(argv)
    try:
        asyncio.run(serve(args.port, args.api_key, args.project_id, args.integrations))
    except BrokenPipeError:
        # The reader of its lines went away (a closed pipe): quiet, as other Unix tools.
        with contextlib.suppress(OSError, ValueError):  # no "Exception ignored" at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 141
    except OSError as exc:
        # A port in use (or not ours to take): one line, not a traceback.
        reason = exc.strerror or str(exc)
        parser.exit(1, f"{parser.prog}: error: cannot serve on 127.0.0.1:{args.port}: {reason}\n")
    except KeyboardInterrupt:
        return 130
    return 0


def parse_arguments(
    argv: list[str] | None = None,
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command's parser and its checked arguments (a usage error exits, status 2)."""
    parser = argparse.ArgumentParser(
        prog="python -m aposthog.testing",
        description="Serve a fake PostHog API on 127.0.0.1 (in-memory, for tests and demos).",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("--api-key", default=None, help="the key to accept (default: random)")
    parser.add_argument("--project-id", type=int, default=1, help="environment id (default: 1)")
    add_integration_argument(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"argument --port: must be between 0 and 65535, got {args.port}")
    # Values every client would refuse: a usage error, before serving.
    if not 1 <= args.project_id <= _LARGEST_ID:  # an id a client takes
        parser.error(
            f"argument --project-id: must be a positive int of at most {_LARGEST_ID},"
            f" got {args.project_id}"
        )
    if args.api_key is not None and (not args.api_key or unsendable_key(args.api_key)):
        parser.error(
            "argument --api-key: must be a non-empty key without whitespace, control or "
            "non-ASCII characters"
        )
    return parser, args


if __name__ == "__main__":
    sys.exit(main())
