"""A STAND-IN for a vLLM or SGLang server with sleep mode, written from their documentation,
because neither runs without a GPU here. It is not either server.

What it reproduces, per the documentation:
  vLLM (started with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1; docs "Sleep Mode"):
    POST /sleep?level=1   weights to host RAM, KV cache dropped; 200, empty body
    POST /wake_up         weights back to the GPU; 200, empty body
    GET  /is_sleeping     {"is_sleeping": bool}; never wakes the server
  SGLang (started with --enable-memory-saver; "Native APIs"):
    POST /release_memory_occupation   {} -> 200; GPU memory released
    POST /resume_memory_occupation    {} -> 200; memory taken back
  both:
    GET  /health          200 asleep or awake; never wakes the server
    GET  /v1/models       the served model
    POST /v1/chat/completions  OpenAI-compatible, streamed when "stream": true; a sleeping
                          server answers 503 (it has no weights on the GPU to generate with)

`calls` counts each request by method and path (query string dropped), so that a test can
prove which endpoints were called, e.g. that no probe or state stream ever woke it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.local_http import LocalHttpServer, send_json

_SLEEP_PATHS = {"/sleep": "vllm", "/release_memory_occupation": "sglang"}
_WAKE_PATHS = {"/wake_up": "vllm", "/resume_memory_occupation": "sglang"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: SleepyServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _count(self) -> str:
        path = urlsplit(self.path).path
        with self.server_state.lock:
            self.server_state.calls[f"{self.command} {path}"] += 1
        return path

    def do_GET(self) -> None:
        path = self._count()
        state = self.server_state
        if path == "/is_sleeping":
            send_json(self, 200, {"is_sleeping": state.asleep})
        elif path == "/health":
            send_json(self, 200)
        elif path == "/v1/models":
            send_json(
                self, 200, {"object": "list", "data": [{"id": state.model, "object": "model"}]}
            )
        else:
            send_json(self, 404, {"error": f"no GET {path}"})

    def do_POST(self) -> None:
        path = self._count()
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else {}
        state = self.server_state
        if path in _SLEEP_PATHS:
            query = urlsplit(self.path).query
            if path == "/sleep" and query not in ("", "level=1", "level=2"):
                send_json(self, 400, {"error": f"bad level: {query}"})
                return
            state.asleep = True
            send_json(self, 200)
        elif path in _WAKE_PATHS:
            state.asleep = False
            send_json(self, 200)
        elif path == "/v1/chat/completions":
            if state.asleep:
                send_json(self, 503, {"error": "the engine is sleeping"})
                return
            self._stream(body) if body.get("stream") else self._whole(body)
        else:
            send_json(self, 404, {"error": f"no POST {path}"})

    def _whole(self, body: dict[str, Any]) -> None:
        send_json(
            self,
            200,
            {
                "object": "chat.completion",
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "awake"},
                        "finish_reason": "stop",
                    }
                ],
            },
        )

    def _stream(self, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deltas: list[tuple[dict[str, str], str | None]] = [
            ({"role": "assistant"}, None),
            ({"content": "awake"}, None),
            ({}, "stop"),
        ]
        for delta, finish in deltas:
            chunk = {
                "object": "chat.completion.chunk",
                "model": body.get("model", ""),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, piece: bytes) -> None:
        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.flush()


class SleepyServer(LocalHttpServer):
    """The stand-in, on 127.0.0.1 and a free port; a context manager."""

    def __init__(self, model: str = "stand-in") -> None:
        self.model = model
        self.asleep = False
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__(type("Handler", (_Handler,), {"server_state": self}))

    @property
    def wakes(self) -> int:
        return sum(self.calls[f"POST {path}"] for path in _WAKE_PATHS)

    @property
    def sleeps(self) -> int:
        return sum(self.calls[f"POST {path}"] for path in _SLEEP_PATHS)
