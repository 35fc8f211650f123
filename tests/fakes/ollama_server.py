"""A stand-in for an Ollama server, speaking its HTTP API on loopback.

Ollama itself cannot be installed on the machines that run this suite (it is
in none of the package registries they reach), so the Ollama driver and
backend are tested against this: the same endpoints, request fields and
response shapes (/api/version, /api/tags, /api/ps, /api/generate and
/api/chat, streamed as newline-delimited JSON), loading with an empty prompt
and unloading with keep_alive 0 as Ollama documents. It counts every call so
tests can assert that nothing generated.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.local_http import LocalHttpServer, send_json

GB = 1024**3


@dataclass
class OllamaState:
    catalogue: dict[str, int] = field(default_factory=lambda: {"llama3.2:latest": 2 * GB})
    loaded: dict[str, int] = field(default_factory=dict)
    load_delay_seconds: float = 0.05
    generate_calls: int = 0
    """Requests that carried a prompt or messages: real generation."""
    loads: int = 0
    unloads: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    vram_bytes: int | None = None
    """GPU memory Ollama may use for each model; a larger one spills its other layers
    to host RAM, and /api/ps says so as Ollama does: `size_vram` below `size`.
    None: every model wholly on the GPU."""

    def size_vram(self, size: int) -> int:
        return size if self.vram_bytes is None else min(size, self.vram_bytes)


def _canonical(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


class _Handler(BaseHTTPRequestHandler):
    state: OllamaState

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        state = self.state
        if self.path == "/api/version":
            send_json(self, 200, {"version": "0.0.0-standin"})
        elif self.path == "/api/tags":
            send_json(
                self,
                200,
                {
                    "models": [
                        {"name": n, "model": n, "size": s} for n, s in state.catalogue.items()
                    ]
                },
            )
        elif self.path == "/api/ps":
            with state.lock:
                models = [
                    {
                        "name": n,
                        "model": n,
                        "size": s,
                        "size_vram": state.size_vram(s),
                        "expires_at": "2318-01-01T00:00:00Z",
                    }
                    for n, s in state.loaded.items()
                ]
            send_json(self, 200, {"models": models})
        else:
            send_json(self, 404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        state = self.state
        with state.lock:
            state.bodies.append(body)
        if self.path not in ("/api/generate", "/api/chat"):
            send_json(self, 404, {"error": "not found"})
            return
        model = _canonical(str(body.get("model", "")))
        if model not in state.catalogue:
            send_json(
                self, 404, {"error": f"model '{body.get('model')}' not found, try pulling it first"}
            )
            return
        has_input = bool(body.get("prompt")) or bool(body.get("messages"))
        if not has_input and body.get("keep_alive") == 0:
            with state.lock:
                state.loaded.pop(model, None)
                state.unloads += 1
            send_json(
                self, 200, {"model": model, "response": "", "done": True, "done_reason": "unload"}
            )
            return
        if model not in state.loaded:
            time.sleep(state.load_delay_seconds)
            with state.lock:
                state.loaded[model] = state.catalogue[model]
                state.loads += 1
        if not has_input:
            send_json(
                self, 200, {"model": model, "response": "", "done": True, "done_reason": "load"}
            )
            return
        with state.lock:
            state.generate_calls += 1
        self._stream_answer(model, body)

    def _stream_answer(self, model: str, body: dict[str, Any]) -> None:
        words = ["Hello", " from", " the", " stand-in", "."]
        limit = int((body.get("options") or {}).get("num_predict") or len(words))
        chat = self.path == "/api/chat"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for word in words[:limit]:
            piece = (
                {"message": {"role": "assistant", "content": word}} if chat else {"response": word}
            )
            self.wfile.write((json.dumps({"model": model, **piece, "done": False}) + "\n").encode())
            self.wfile.flush()
        final = {
            "model": model,
            "done": True,
            "done_reason": "length" if limit < len(words) else "stop",
            "prompt_eval_count": 7,
            "eval_count": min(limit, len(words)),
        }
        final.update(
            {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
        )
        self.wfile.write((json.dumps(final) + "\n").encode())


class OllamaStandIn(LocalHttpServer):
    def __init__(self, state: OllamaState | None = None) -> None:
        self.state = state or OllamaState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        super().__init__(handler)
