"""Which HTTP server library the router's HTTP front door runs on (issue 21): the
per-request overhead of a streamed (SSE) answer, Starlette on uvicorn vs aiohttp.

Each server runs in its own process on a uvloop event loop, embedded the way the
router would embed it (inside an already running loop, no workers, no signal
handlers of its own), and answers `POST /v1/completions` with `stream: true` at
once: one SSE chunk per token, a finishing chunk, `data: [DONE]`. No model, no
relay: what is measured is the library. The same httpx client process drives
both, interleaved, in the same run:

- TTFT p50: 1-token requests one at a time (what one request's HTTP layer costs);
- req/s @32: 1-token streamed requests from 32 workers for a few seconds;
- server CPU per request: the server process's CPU time over the requests it served.

    .venv/bin/python bench/http_server_choice.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from aiohttp import web
from harness import (
    BENCH,
    PYTHON,
    StreamStats,
    command_line,
    cpu_seconds,
    http_client,
    http_streamer,
    load_average,
    ms,
    p50,
    p99,
    processes,
    ratio,
    run_streams,
    table,
    wait_for_quiet,
    wait_http,
    write_section,
)
from peers import requests_per_second
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from warmpath_cli.mesh import free_port

LIBRARIES = ("starlette+uvicorn", "aiohttp")


def _chunks(max_tokens: int) -> list[bytes]:
    base = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": "mock"}
    lines = [
        {**base, "choices": [{"index": 0, "text": " tok", "finish_reason": None}]}
        for _ in range(max_tokens)
    ]
    lines.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    return [f"data: {json.dumps(line)}\n\n".encode() for line in lines] + [b"data: [DONE]\n\n"]


async def _serve_starlette(port: int) -> None:

    async def completions(request: Request) -> StreamingResponse:
        body = await request.json()

        async def events() -> AsyncIterator[bytes]:
            for chunk in _chunks(int(body.get("max_tokens", 1))):
                yield chunk

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": []})

    app = Starlette(
        routes=[
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models),
        ]
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="none", lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    await server.serve()


async def _serve_aiohttp(port: int) -> None:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in _chunks(int(body.get("max_tokens", 1))):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def serve(library: str, port: int) -> None:
    serving = _serve_starlette if library == "starlette+uvicorn" else _serve_aiohttp
    uvloop.run(serving(port))


async def compare(
    urls: dict[str, str], pids: dict[str, int], quick: bool
) -> tuple[list[list[Any]], str]:
    repeats, samples, seconds = (1, 100, 2.0) if quick else (3, 300, 4.0)
    latency: dict[str, StreamStats] = {}
    rates: dict[str, list[float]] = {}
    cpu_per_request: dict[str, list[float]] = {}
    errors: dict[str, int] = dict.fromkeys(urls, 0)
    async with http_client() as client:
        streamers = {name: http_streamer(client, url) for name, url in urls.items()}
        for streamer in streamers.values():
            await run_streams(streamer, 8, 8, 1)  # warm-up, discarded
        for _ in range(repeats):
            for name, streamer in streamers.items():
                results, wall = await run_streams(streamer, 1, samples, 1)
                latency.setdefault(name, StreamStats()).add(results, wall)
                cpu_before = cpu_seconds(pids[name])
                rate, failed = await requests_per_second(streamer, 32, seconds)
                served = rate * seconds
                cpu_per_request.setdefault(name, []).append(
                    (cpu_seconds(pids[name]) - cpu_before) / max(served, 1.0)
                )
                rates.setdefault(name, []).append(rate)
                errors[name] += failed + latency[name].errors
    baseline = LIBRARIES[0]
    cheapest = min(urls, key=lambda name: p50(cpu_per_request[name]))
    rows = []
    for name in urls:
        rows.append(
            [
                name,
                ms(p50(latency[name].ttft), 3),
                ms(p99(latency[name].ttft), 3),
                f"{p50(rates[name]):.0f}",
                ratio(p50(rates[name]), p50(rates[baseline])),
                ms(p50(cpu_per_request[name]), 3),
                ratio(p50(cpu_per_request[name]), p50(cpu_per_request[baseline])),
                errors[name],
            ]
        )
    verdict = (
        f"Least server CPU per streamed request: **{cheapest}** "
        f"({ratio(p50(cpu_per_request[cheapest]), p50(cpu_per_request[baseline]))} of "
        f"{baseline}'s); the router's HTTP front door runs on it. CPU per request is the "
        "figure that decides: on this shared 2-core machine latency and req/s are bounded "
        "by the one client process and move with the other work."
    )
    return rows, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(BENCH / "results" / "http_server_choice.md"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    load_before = wait_for_quiet()
    started = time.monotonic()
    with processes("http_server_choice") as procs:
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        for library in LIBRARIES:
            port = free_port()
            name = library.replace("+", "-")
            pids[library] = procs.start(
                name, [PYTHON, __file__, "--serve", library, "--port", str(port)]
            ).pid
            urls[library] = f"http://127.0.0.1:{port}"
            wait_http(urls[library] + "/v1/models", alive=lambda n=name: procs.check_alive(n))
        rows, verdict = asyncio.run(compare(urls, pids, args.quick))
    took = time.monotonic() - started
    text = "\n".join(
        [
            "## HTTP server library for the router's HTTP front door (issue 21)",
            "",
            f"`{command_line()}`: each library in its own process on uvloop, embedded as the "
            "router embeds it, answering a streamed `/v1/completions` at once (no model, no "
            "relay); one httpx client process, libraries interleaved. Ratios are against "
            f"{LIBRARIES[0]}. Load before: {load_before}, after: {load_average()} (a 2-core "
            f"machine shared with other work); took {took:.0f} s.",
            "",
            verdict,
            "",
            table(
                [
                    "library",
                    "TTFT p50 (ms)",
                    "TTFT p99 (ms)",
                    "req/s @32 (1 token)",
                    "req/s ratio",
                    "server CPU per request (ms)",
                    "CPU ratio",
                    "errors",
                ],
                rows,
            ),
        ]
    )
    write_section(Path(args.out), text)


if __name__ == "__main__":
    main()
