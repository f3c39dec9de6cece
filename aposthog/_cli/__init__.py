"""
The `aposthog` command (also `python -m aposthog`). Standard library only.

Exit status: 0 on success, 1 for an API or network error, 2 for a usage or
configuration error, 130 when interrupted (Ctrl-C), 143 when stopped by SIGTERM (after
the same cleanup: a `chat` cancels its answer), 141 when the reader of its output
went away (a closed pipe, as in `aposthog batch-exports list | head -1`). Errors are one
line on stderr, never a traceback; the API key is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TextIO

from .._config import ENV_API_KEY, hide_keys
from .._errors import ConfigurationError, PostHogError
from .._version import __version__
from . import _args
from ._commands import COMMANDS, Output, _UsageError, add_resource_commands
from ._output import OutputError, cell

__all__ = ["main"]

_CONNECTION_HELP = """\
connection (also from the environment):
  --api-key KEY       personal API key (POSTHOG_PERSONAL_API_KEY)
  --host HOST         us, eu or a URL (POSTHOG_HOST; default us)
  --project-id ID     environment id (POSTHOG_PROJECT_ID; default @current)
  --allow-insecure-http
                      allow a plain http:// host that is not this machine
"""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors never quote an API key (see `_hide_keys`)."""

    def error(self, message: str) -> NoReturn:
        super().error(_hide_keys(message))


#: A secret's value after its option (`--apikey phx_…`, `--token=…`), in a usage error.
_AFTER_SECRET_OPTION = re.compile(
    r"(--?[\w-]*(?:key|token|secret|password)[\w-]*)(=|\s+)(?!-)(\S+)", re.IGNORECASE
)


class _CommandParser(_Parser):
    """
    A command's parser. One that takes the connection options (given the common parser as
    a parent) lists them in its help, as the top-level help does: they are accepted after
    the command too, where its own `--help` is what a user reads.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("parents"):
            kwargs.setdefault("epilog", _CONNECTION_HELP)
            kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def _hide_keys(message: str) -> str:
    """
    A usage error's line without a key: "unrecognized arguments: --api_key phx_…" (a slip
    in the option's name, or a key given to a command that takes none) would put the key
    in a CI log. Key-shaped values, the key in POSTHOG_PERSONAL_API_KEY, and the value
    after any option named like a secret are `<redacted>`.
    """
    message = hide_keys(message)
    key = os.environ.get(ENV_API_KEY, "").strip()
    if len(key) >= 8:
        message = message.replace(key, "<redacted>")
    return _AFTER_SECRET_OPTION.sub(r"\1\2<redacted>", message)


def _common() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the command is not reset by the subcommand's parser.
    common = _Parser(add_help=False)
    common.add_argument("--api-key", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--host", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--project-id", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print records as JSON (one object per line for lists)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log each request and stream to stderr (method, path, status, time)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    common = _common()
    parser = _Parser(
        prog="aposthog",
        description="PostHog's API from the command line: batch exports, PostHog AI "
        "conversations and customer profile configs.",
        epilog=_CONNECTION_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"aposthog {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_CommandParser
    )
    commands.add_parser(
        "demo", help="the main job against an embedded fake PostHog (no credentials needed)"
    )
    serve = commands.add_parser("serve-fake", help="serve a fake PostHog on 127.0.0.1")
    serve.add_argument("--port", type=_args.port, default=0, help="port (default: any free port)")
    serve.add_argument(
        "--api-key",
        dest="fake_api_key",
        type=_args.fake_key,
        default=None,
        help="the key to accept (default: random)",
    )
    serve.add_argument(
        "--project-id",
        dest="fake_project_id",
        type=_args.positive(2**63 - 1),  # an id a client takes
        default=1,
        help="environment id",
    )
    serve.add_argument(
        "--integration",
        dest="integrations",
        action="append",
        default=[],
        choices=_args.FAKE_INTEGRATION_KINDS,
        metavar="KIND",
        help="add an integration of this kind and print its id (repeatable; one of "
        + ", ".join(_args.FAKE_INTEGRATION_KINDS)
        + ")",
    )

    from ._chat import add_chat_commands

    add_chat_commands(commands, common)
    add_resource_commands(commands, common)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (or raises SystemExit with it)."""
    try:
        return _main(argv, out)
    except KeyboardInterrupt:
        # Ctrl-C outside the event loop (while parsing, say): quiet, like inside it.
        return 130
    except BrokenPipeError:
        if out is None:
            _discard_stdout()
        return 141
    except OSError as exc:
        # The output cannot be written (a full disk, an I/O error): one line on stderr.
        if out is None:
            _discard_stdout()
        with contextlib.suppress(OSError, ValueError):
            reason = _one_line(exc.strerror or str(exc))
            sys.stderr.write(f"aposthog: error: cannot write the output: {reason}\n")
            sys.stderr.flush()
        return 1


def _main(argv: Sequence[str] | None, out: TextIO | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stdout = out if out is not None else sys.stdout
    if out is None:
        _escape_what_stdout_cannot_encode()
    if getattr(args, "verbose", False):
        _log_to_stderr()
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return _run(lambda: run_demo(stdout))
        if args.command == "serve-fake":
            return _serve_fake(parser, args)
        return _run(
            lambda: _api_command(args, Output(stdout, as_json=getattr(args, "json", False)))
        )
    except _UsageError as exc:
        parser.exit(2, f"aposthog: error: {exc}\n")
    except ConfigurationError as exc:
        message = (
            str(exc)
            .replace("pass api_key=...", "use --api-key")
            .replace("pass api_key instead", "use --api-key instead")
            .replace("pass allow_insecure_http=True", "use --allow-insecure-http")
        )
        parser.exit(2, f"aposthog: error: {_one_line(message)}\n")
    except (PostHogError, OutputError) as exc:
        parser.exit(1, f"aposthog: error: {_one_line(exc)}\n")
    except UnicodeEncodeError as exc:  # an output given by a caller, in its encoding
        parser.exit(1, f"aposthog: error: cannot write the output: {_one_line(exc)}\n")
    except (TypeError, ValueError) as exc:
        # A value the parser let through but a resource refused before sending anything.
        parser.exit(2, f"aposthog: error: {_one_line(exc)}\n")


def _escape_what_stdout_cannot_encode() -> None:
    """
    Text stdout's encoding cannot hold (a "Zoë" in an `ascii` or Latin-1 locale, CJK
    in a Windows redirect) is written escaped (`\\xeb`), not a failure halfway through
    a listing. (JSON lines are written in ASCII there: see `Output`.)
    """
    encoding = (getattr(sys.stdout, "encoding", None) or "utf-8").lower().replace("-", "")
    if not encoding.startswith("utf"):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


def _log_to_stderr() -> None:
    """The `aposthog` logger's lines (DEBUG: one per call and per stream) on stderr."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("aposthog: %(message)s"))
    logger = logging.getLogger("aposthog")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _serve_fake(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from ..testing.__main__ import serve

    key = args.fake_api_key
    if key is None and getattr(args, "api_key", None) is not None:
        # `aposthog --api-key K serve-fake`: the key given is the one to accept (it was
        # passed over for a random one), checked as `serve-fake --api-key K` checks it.
        try:
            key = _args.fake_key(args.api_key)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument --api-key: {exc}")
    try:
        return _run(lambda: _served(serve(args.port, key, args.fake_project_id, args.integrations)))
    except BrokenPipeError:
        raise  # the reader of its lines went away: 141, as for any command (`main`)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        parser.exit(1, f"aposthog: error: cannot serve on 127.0.0.1:{args.port}: {reason}\n")


def _discard_stdout() -> None:
    # Nobody reads stdout any more: point it at /dev/null so that the interpreter's
    # last flush does not fail again and print "Exception ignored … BrokenPipeError".
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


async def _served(serving: Awaitable[None]) -> int:
    await serving
    return 0


async def _api_command(args: argparse.Namespace, out: Output) -> int:
    from .._client import Client

    options: dict[str, Any] = {
        "api_key": getattr(args, "api_key", None),
        "host": getattr(args, "host", None),
        "project_id": getattr(args, "project_id", None),
        "allow_insecure_http": getattr(args, "allow_insecure_http", False),
    }
    async with Client(**options) as ph:
        if args.command == "chat":
            from ._chat import chat

            return await chat(ph, args, out)
        handler = COMMANDS[(args.command, args.action)]
        status = await handler(ph, args, out)  # an exit status, or None for success
    return 0 if status is None else int(status)


def _run(make: Callable[[], Awaitable[int]]) -> int:
    """Run a coroutine with Ctrl-C (and SIGTERM) cancelling it, so cleanup code runs."""

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        interrupted: signal.Signals | None = None

        def interrupt(sig: signal.Signals) -> None:
            nonlocal interrupted
            if interrupted is None:
                interrupted = sig
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, interrupt, sig)
        try:
            return await make()
        except asyncio.CancelledError:
            if interrupted is not None:
                return 128 + interrupted  # 130 for Ctrl-C, 143 for SIGTERM, as a shell says
            raise

    return asyncio.run(runner())


def _one_line(exc: BaseException | str) -> str:
    # An error may quote PostHog's text (its `detail`): shown inert, as a table cell is.
    return cell(" ".join(str(exc).split())) or type(exc).__name__
