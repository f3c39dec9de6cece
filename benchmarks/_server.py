"""
A plain aiohttp.web server for the benchmarks, run in its own process.

It serves pre-encoded PostHog-shaped pages (no record is built per request) so that the
server's own cost stays small and equal for both sides of every comparison:

* `GET /api/environments/{project}/batch_exports/?limit=&offset=`: limit/offset pages
  of real-shaped batch exports (destination config, up to 10 `latest_runs`, timestamps);
* `GET /api/environments/{project}/customer_profile_configs/?limit=&offset=`: pages of
  small customer profile configs;
* `GET /api/environments/{project}/batch_exports/{id}/runs/?cursor=`: cursor pages;
* `POST /api/environments/{project}/conversations/`: a PostHog AI event stream, chosen
  by the message's content: `burst <messages> <snapshots>` sends a whole answer at once
  (see `_fixtures.answer_stream`), `tick <seconds>` one snapshot a second whose text
  carries the `time.monotonic()` at which it was written (a latency probe).

The project id sets the server's latency for that request: project `n` answers after
`n - 1` milliseconds (project 1 at once), so one server serves every benchmark. The
list sizes come from the command line.

    python benchmarks/_server.py --exports 1000 --configs 10
prints `URL=http://127.0.0.1:PORT` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fixtures import (
    answer_stream,
    batch_export,
    batch_export_run,
    final_event,
    human_echo,
    profile_config,
    snapshot_event,
)


def _page(
    request: web.Request, records: list[dict[str, Any]], cache: dict[Any, bytes], default: int
) -> bytes:
    query = request.rel_url.query
    limit = int(query.get("limit", default))
    offset = int(query.get("offset", 0))
    key = (request.rel_url.path, limit, offset)
    body = cache.get(key)
    if body is None:
        base = f"{request.scheme}://{request.host}{request.rel_url.path}"
        end = offset + limit
        page = {
            "count": len(records),
            "next": f"{base}?limit={limit}&offset={end}" if end < len(records) else None,
            "previous": f"{base}?limit={limit}&offset={max(offset - limit, 0)}" if offset else None,
            "results": records[offset:end],
        }
        body = cache[key] = json.dumps(page).encode()
    return body


def _no_delay(request: web.Request) -> None:
    # Without TCP_NODELAY, Nagle's algorithm holds a response's last segment until the
    # client acknowledges the one before, which it delays by up to 40 ms: both sides of
    # every comparison would measure that wait instead of their own work.
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_app(exports: int, configs: int, runs: int) -> web.Application:
    export_records = [batch_export(i) for i in range(exports)]
    config_records = [profile_config(i) for i in range(configs)]
    run_records = [batch_export_run(i) for i in range(runs)]
    cache: dict[Any, bytes] = {}

    async def delay(request: web.Request) -> None:
        _no_delay(request)
        latency = int(request.match_info["project"]) - 1
        if latency:
            await asyncio.sleep(latency / 1000)

    async def list_exports(request: web.Request) -> web.Response:
        await delay(request)
        body = _page(request, export_records, cache, 100)
        return web.Response(body=body, content_type="application/json")

    async def list_configs(request: web.Request) -> web.Response:
        await delay(request)
        body = _page(request, config_records, cache, 100)
        return web.Response(body=body, content_type="application/json")

    async def list_runs(request: web.Request) -> web.Response:
        await delay(request)
        cursor = int(request.rel_url.query.get("cursor", 0))
        key = ("runs", request.match_info["project"], cursor)
        body = cache.get(key)
        if body is None:
            base = f"{request.scheme}://{request.host}{request.rel_url.path}"
            end = cursor + 100
            page = {
                "next": f"{base}?cursor={end}" if end < len(run_records) else None,
                "previous": None,
                "results": run_records[cursor:end],
            }
            body = cache[key] = json.dumps(page).encode()
        return web.Response(body=body, content_type="application/json")

    bursts: dict[str, bytes] = {}

    async def conversation(request: web.Request) -> web.StreamResponse:
        await delay(request)
        body = json.loads(await request.read())
        words = str(body.get("content") or "").split()
        if not words:  # a re-attach: every run here ends before one could come
            error = {"type": "validation_error", "code": "invalid_input"}
            error["detail"] = "Cannot continue streaming from an idle conversation"
            return web.json_response(error, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if words[0] == "burst":
            key = " ".join(words)
            if key not in bursts:
                bursts[key] = answer_stream(int(words[1]), int(words[2]))
            await response.write(bursts[key])
        else:
            await _ticks(response, float(words[1]))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/api/environments/{project}/conversations/", conversation)
    app.router.add_get("/api/environments/{project}/batch_exports/", list_exports)
    app.router.add_get("/api/environments/{project}/customer_profile_configs/", list_configs)
    app.router.add_get("/api/environments/{project}/batch_exports/{id}/runs/", list_runs)
    return app


async def _ticks(response: web.StreamResponse, seconds: float) -> None:
    """One cumulative snapshot a second, each ending in the time it was written."""
    loop = asyncio.get_running_loop()
    # Streams start spread over the first second, as a thousand users' would.
    start = loop.time() + random.random()
    text = ""
    await response.write(human_echo())
    for tick in range(int(seconds)):
        await asyncio.sleep(max(0.0, start + tick - loop.time()))
        text += f" t={time.monotonic():.6f}"
        await response.write(snapshot_event(text))
    # The final message: the end of the run (without it the body was cut short).
    await response.write(final_event(text + "."))


async def serve(exports: int, configs: int, runs: int) -> None:
    runner = web.AppRunner(make_app(exports, configs, runs), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"URL=http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exports", type=int, default=1000)
    parser.add_argument("--configs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.exports, args.configs, args.runs))


if __name__ == "__main__":
    main()
