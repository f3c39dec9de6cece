"""
The `aposthog` console script: quiet on Ctrl-C from its first instruction.

It lives beside the `aposthog` package rather than inside it because importing the
package (aiohttp and everything else) takes a noticeable moment, and a Ctrl-C in that
moment must end the command with status 130, not print a traceback.
"""

# The C module, built in: `import signal` itself takes a while (it imports enum).
import _signal  # type: ignore[import-not-found]
import os
import sys


def _interrupted(signum: int, frame: object) -> None:
    # Exit at once. Raising here could land in an import lock's callback or a __del__,
    # where Python prints the exception and carries on; and nothing has been started
    # yet (or is left, after main()) that would need cleaning up.
    os._exit(130)


def _guard() -> None:
    # Leave an ignored SIGINT (a command started in the background) ignored.
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _interrupted)


_guard()

from aposthog._cli import main as _main  # noqa: E402  (the guard must come first)


def main() -> int:
    """Run the command line; Ctrl-C at any moment exits 130 without a traceback."""
    try:
        status = _main()
    except KeyboardInterrupt:
        status = 130
    # The event loop gives SIGINT back to Python's default handler when it closes;
    # stay quiet until the interpreter is gone.
    _guard()
    return status


if __name__ == "__main__":
    sys.exit(main())
