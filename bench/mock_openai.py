"""A lean OpenAI-compatible streaming server for benchmarks, on raw asyncio.

Answers POST /v1/completions and /v1/chat/completions with Server-Sent Events
shaped like llama.cpp's and vLLM's (one chunk per token, a finish chunk, a
usage chunk when `stream_options.include_usage` asks for it, then
`data: [DONE]`), and GET /v1/models, /health and /v1/health for readiness.

`max_tokens` tokens are sent: the first at once (a prefix-cached prefill), the
rest on a fixed schedule `--delay-ms` apart (token i at start + i * delay, so
a late token does not shift the ones after it). A non-streaming request gets
one JSON completion after the same total time.

No framework: one asyncio protocol per connection, HTTP/1.1 keep-alive,
chunked responses, and every token's bytes built once per request, so that
the mock is never the bottleneck (bench/generate_overhead.py records its CPU
use next to every result).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from typing import Any

_TOKEN_TEXT = " tok"
_DEFAULT_TOKENS = 16


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return _chunk(b"data: " + text.encode() + b"\n\n")


class MockOpenAI:
    def __init__(self, delay_seconds: float, model_id: str) -> None:
        self.delay = delay_seconds
        self.model_id = model_id
        self.streams = 0
        self.tokens = 0

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                path = target.split("?", 1)[0]
                if method == "POST" and path.endswith("/completions"):
                    await self._completions(writer, path, body)
                elif method == "GET" and path in ("/v1/models", "/models"):
                    self._json(writer, 200, self._models())
                elif method == "GET" and path in ("/health", "/v1/health", "/health_generate"):
                    self._json(writer, 200, {"status": "ok"})
                else:
                    self._json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.model_id, "object": "model", "owned_by": "bench"}],
        }

    @staticmethod
    def _json(writer: asyncio.StreamWriter, status: int, document: dict[str, Any]) -> None:
        payload = json.dumps(document).encode()
        reason = {200: "OK", 404: "Not Found", 400: "Bad Request"}.get(status, "OK")
        writer.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, reason.encode(), len(payload), payload)
        )

    async def _completions(self, writer: asyncio.StreamWriter, path: str, body: bytes) -> None:
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError:
            self._json(writer, 400, {"error": {"message": "body is not JSON"}})
            return
        chat = path.endswith("/chat/completions")
        tokens = max(1, int(request.get("max_tokens") or _DEFAULT_TOKENS))
        model = str(request.get("model") or self.model_id)
        created = int(time.time())
        ident = f"cmpl-{self.streams}"
        self.streams += 1
        if not request.get("stream"):
            await asyncio.sleep(self.delay * (tokens - 1))
            self.tokens += tokens
            self._json(writer, 200, _whole(chat, ident, created, model, tokens))
            return
        kind = "chat.completion.chunk" if chat else "text_completion"
        base = {"id": ident, "object": kind, "created": created, "model": model}
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"content": _TOKEN_TEXT},
                "finish_reason": None,
            }
            last: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": "length"}
        else:
            choice = {"index": 0, "text": _TOKEN_TEXT, "logprobs": None, "finish_reason": None}
            last = {"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}
        token_bytes = _event({**base, "choices": [choice]})
        tail = _event({**base, "choices": [last]})
        options = request.get("stream_options") or {}
        if options.get("include_usage"):
            usage = {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": tokens + 8}
            tail += _event({**base, "choices": [], "usage": usage})
        tail += _event("[DONE]") + b"0\r\n\r\n"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index in range(tokens):
            wait = start + index * self.delay - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if writer.is_closing():
                return
            writer.write(token_bytes)
            await writer.drain()
            self.tokens += 1
        writer.write(tail)


def _whole(chat: bool, ident: str, created: int, model: str, tokens: int) -> dict[str, Any]:
    text = _TOKEN_TEXT * tokens
    choice: dict[str, Any] = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        if chat
        else {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
    )
    return {
        "id": ident,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": tokens + 8},
    }


async def serve(host: str, port: int, delay_seconds: float, model_id: str) -> None:
    mock = MockOpenAI(delay_seconds, model_id)
    server = await asyncio.start_server(mock.serve_connection, host, port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="inter-token delay")
    parser.add_argument("--model", default="mock", help="model id /v1/models reports")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.delay_ms / 1000, args.model))


if __name__ == "__main__":
    main()
