"""The stream engine's small judgements on failed attempts and reads."""

from __future__ import annotations

import anyio

from ._errors import APIConnectionError, APIStatusError, APITimeoutError
from ._http import Redactor
from ._pipeline import Failure
from ._retry import may_have_acted
from ._transport import StreamResponse

__all__ = ["EVENT_STREAM", "STREAM_ACCEPT", "dropped_failure", "nothing_started", "snippet"]

#: The content type of an event stream, as PostHog answers a conversation's messages.
EVENT_STREAM = "text/event-stream"
#: The `Accept` of a conversation's request. The event stream alone is not enough: DRF
#: negotiates the content type before the view runs, against the view's renderers, and
#: PostHog's `ConversationViewSet` has only its default JSON one (its own
#: `ServerSentEventRenderer` is gone), so `text/event-stream` alone is a 406 "Could not
#: satisfy the request Accept header." The view answers with the stream all the same,
#: and its errors in JSON.
STREAM_ACCEPT = f"{EVENT_STREAM}, application/json"


def nothing_started(failure: Failure) -> bool:
    """
    Whether a failed attempt proves it started nothing on PostHog: what the retry rules
    take for a refusal before any work (`may_have_acted`): it never reached the server,
    or PostHog refused it with a status below 500 (a 429 while throttled, a 409 while
    another run is going) or with its own 503. Stricter than those rules, a 500 proves
    nothing here either: the view may have begun the run before it failed.
    """
    error = failure.error
    if isinstance(error, APIStatusError) and error.status >= 500 and error.status != 503:
        return False
    return not may_have_acted(failure.outcome)


def dropped_failure(error: APIConnectionError, idle: float | None) -> Failure:
    """A read that failed, as the failure a re-attach starts from."""
    if isinstance(error, APITimeoutError):
        # Silence past stream_idle_timeout: PostHog may still be generating (its
        # keepalives were lost, or a proxy holds the bytes). Treated as a drop.
        error = APITimeoutError(
            f"PostHog sent nothing for {idle} s (stream_idle_timeout)",
            method="POST",
            path=error.path,
        )
    return Failure.connection(error)


async def snippet(
    response: StreamResponse, redactor: Redactor, limit: int = 500, *, timeout: float | None = None
) -> str:
    """
    The start of an unexpected body, for the error message, without the key (a page
    that echoes the request's headers); the response is closed. What arrived within
    `timeout` seconds (None: no limit), however slowly the rest comes.
    """
    data = b""
    chunks = response.chunks()
    try:
        with anyio.move_on_after(timeout):
            async for chunk in chunks:
                data += chunk
                if len(data) >= limit + 512:  # a key across the cut is still found whole
                    break
    except APIConnectionError:
        pass
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        response.close()
    return redactor.scrub(data)[:limit].decode("utf-8", errors="replace")
