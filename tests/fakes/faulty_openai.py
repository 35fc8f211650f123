"""An OpenAI-compatible streaming server whose faults the tests choose.

The model name in a request picks the behaviour:
  "ok-stop" / "ok-length"  a few chunks, then that finish reason and [DONE]
  "cut"                    two chunks, then the connection is dropped
  "stall"                  two chunks, then silence (the adapter's idle timeout must fire)
  "truncated"              one chunk, then half an event, then the connection closes
  "garbled"                one chunk, then a complete event whose JSON is broken
  "keepalive"              a whole answer, chunked, on a connection kept open for the next
                           request (`connections` counts the connections seen)
  "cut-early"              the stream's headers, then the connection is dropped before any
                           chunk: accepted, then cut before the first token
  "busy"                   503 with Retry-After: refused before generating
  "hang"                   no answer at all, until the client hangs up
"""

from __future__ import annotations

import contextlib
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.local_http import LocalHttpServer


def _chunk(chat: bool, text: str | None = None, finish: str | None = None) -> bytes:
    if chat:
        choice: dict[str, Any] = {"delta": {} if text is None else {"content": text}}
    else:
        choice = {"text": text or ""}
    body = {"choices": [{"index": 0, **choice, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests_seen: list[str]
    connections: set[tuple[str, int]]

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        body = b'{"object": "list", "data": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = request.get("model", "")
        self.requests_seen.append(mode)
        self.connections.add(self.client_address)
        chat = self.path.endswith("/chat/completions")
        if mode == "keepalive":
            self._chunked_answer(chat)
            return
        if mode == "busy":
            self.send_response(503)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "hang":
            # Returns when the client hangs up (recv gives b""), so no thread outlives it.
            self.connection.settimeout(30)
            with contextlib.suppress(OSError):
                self.connection.recv(1)
            self.close_connection = True
            return

        def chunk(text: str | None = None, finish: str | None = None) -> bytes:
            return _chunk(chat, text, finish)

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        write = self.wfile.write
        if mode.startswith("ok-"):
            for word in ("one", " two", " three"):
                write(chunk(word))
            write(chunk(finish=mode.removeprefix("ok-")))
            write(
                b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}}\n\n'
            )
            write(b"data: [DONE]\n\n")
        elif mode == "cut":
            write(chunk("one") + chunk(" two"))
            self.wfile.flush()
            self.connection.shutdown(2)
        elif mode == "cut-early":
            self.wfile.flush()
            self.connection.shutdown(2)
        elif mode == "stall":
            write(chunk("one") + chunk(" two"))
            self.wfile.flush()
            time.sleep(30)
        elif mode == "garbled":
            write(chunk("one") + b'data: {"choices": [{"index": 0, "del\n\n')
        elif mode == "truncated":
            write(chunk("one") + b'data: {"choices": [{"index": 0, "del')
        self.wfile.flush()
        self.close_connection = True

    def _chunked_answer(self, chat: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        body = [
            _chunk(chat, "one"),
            _chunk(chat, finish="stop"),
            b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}\n\n',
            b"data: [DONE]\n\n",
        ]
        for piece in body:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        time.sleep(0.05)  # the end of the body comes a moment after [DONE], as it may
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FaultyOpenAI(LocalHttpServer):
    def __init__(self) -> None:
        self.requests_seen: list[str] = []
        self.connections: set[tuple[str, int]] = set()
        handler = type(
            "Handler",
            (_Handler,),
            {"requests_seen": self.requests_seen, "connections": self.connections},
        )
        super().__init__(handler)
