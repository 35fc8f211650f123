"""What every benchmark shares: processes on loopback, the streaming clients, statistics,
and the markdown a section is written in.

Layouts (each service its own process, as deployed):

    client -> router -> backend-adapter -> backend      "router"
    client -> backend-adapter -> backend                "adapter"
    client -> backend (HTTP + SSE)                      "direct"

The router learns about the mock backend from bench/standin_agent.py. The
client is one asyncio process; gRPC paths use grpc.aio stubs, HTTP paths
(direct and the peers) one shared httpx client reading SSE lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml

from warmpath.v1 import (
    backend_adapter_pb2,
    backend_adapter_pb2_grpc,
    generate_pb2,
    gpu_agent_pb2,
    router_pb2_grpc,
)
from warmpath_cli.mesh import free_port, wait_serving

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RUN_DIR = ROOT / ".run" / "bench"
PYTHON = sys.executable
MOCK_MODEL = "mock"

# OTel modes for the services: off (SDK disabled), spans kept in-process but not
# exported (the default with no endpoint), and exported to a local receiver.
TRACING_OFF = {"OTEL_SDK_DISABLED": "true"}


# --- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def p50(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def p99(values: Sequence[float]) -> float:
    return percentile(values, 99)


def ratio(value: float, baseline: float) -> str:
    if not baseline or math.isnan(value) or math.isnan(baseline):
        return "n/a"
    return f"{value / baseline:.2f}x"


def ms(seconds: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f}"


def signed_ms(seconds: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:+.{digits}f}"


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} / {five:.2f}"


def wait_for_quiet(threshold: float = 1.5, timeout: float = 60.0) -> str:
    """Waits (bounded) for the 1-minute load to fall under `threshold`; returns the load."""
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] > threshold and time.monotonic() < deadline:
        time.sleep(2.0)
    return load_average()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- processes --------------------------------------------------------------------------


@dataclass
class Processes:
    """Child processes started for one benchmark; stopped (SIGTERM, then kill) on exit."""

    log_dir: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        merged.pop("WARMPATH_CONFIG", None)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(
                list(args),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=merged,
                start_new_session=True,
                cwd=ROOT,
            )
        self.children[name] = child
        return child

    def pid(self, name: str) -> int:
        return self.children[name].pid

    def stop(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.children)):
            self.stop(name)

    def check_alive(self, name: str) -> None:
        child = self.children[name]
        if child.poll() is not None:
            tail = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-8:]
            raise RuntimeError(f"{name} exited ({child.returncode}):\n  " + "\n  ".join(tail))


def wait_http(url: str, timeout: float = 60.0, alive: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


def start_mock(procs: Processes, delay_ms: float, name: str = "mock") -> str:
    """Starts bench/mock_openai.py; returns its base URL."""
    port = free_port()
    procs.start(
        name,
        [
            PYTHON,
            str(BENCH / "mock_openai.py"),
            "--port",
            str(port),
            "--delay-ms",
            str(delay_ms),
            "--model",
            MOCK_MODEL,
        ],
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_http(base_url + "/v1/models", alive=lambda: procs.check_alive(name))
    return base_url


@dataclass
class WarmpathStack:
    """Router + backend-adapter (real processes) + stand-in agent in front of `backend_url`."""

    router: str
    adapter: str
    backend_url: str
    config: Path


def mock_config(agent: str, adapter: str, router: str) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": MOCK_MODEL,
                "backend": "vllm",
                "source": {"served_id": MOCK_MODEL},
                # Never started: the stand-in agent reports the mock as already running.
                "container": {"image": "bench/mock-openai:never-pulled"},
                "memory": "1GiB",
                "default_max_tokens": 16,
                "context_length": 4096,
            }
        ],
        "router": {
            "listen": router,
            "hosts": [{"name": "local", "agent": agent, "adapter": adapter}],
            # One client process is every caller here: the per-caller cap would refuse it.
            "max_in_flight_per_caller": 4096,
        },
        # The benchmarks measure the relay, not admission control: no queueing at 32.
        "adapter": {"max_concurrent_per_backend": 4096, "max_queued_per_backend": 4096},
    }


def start_in_process_router(
    procs: Processes,
    stack: WarmpathStack,
    env: Mapping[str, str] | None = None,
    tag: str = "",
    http_listen: str | None = None,
) -> str:
    """A second router on the same agent that runs the backend-adapter in-process
    (`hosts[].adapter: in-process`), with its HTTP front door on `http_listen` if given;
    returns its gRPC address."""
    router = f"127.0.0.1:{free_port()}"
    document = yaml.safe_load(stack.config.read_text())
    document["router"]["listen"] = router
    document["router"]["hosts"][0]["adapter"] = "in-process"
    config = procs.log_dir / f"warmpath-in-process{tag}.yaml"
    config.write_text(yaml.safe_dump(document))
    name = f"router-in-process{tag}"
    procs.start(
        name,
        [
            *(PYTHON, "-m", "warmpath_router", "--listen", router, "--config", str(config)),
            *(("--http-listen", http_listen) if http_listen else ()),
        ],
        {"WARMPATH_LOG_LEVEL": "warning", **(env or {})},
    )
    wait_serving(router, 60.0, alive=lambda: procs.check_alive(name))
    return router


def start_warmpath(
    procs: Processes, backend_url: str, env: Mapping[str, str] | None = None, tag: str = ""
) -> WarmpathStack:
    """Starts the stand-in agent, the backend-adapter and the router in front of a backend."""
    agent, adapter, router = (f"127.0.0.1:{free_port()}" for _ in range(3))
    config = procs.log_dir / f"warmpath{tag}.yaml"
    procs.log_dir.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(mock_config(agent, adapter, router)))
    services = [
        (
            "agent",
            [
                PYTHON,
                str(BENCH / "standin_agent.py"),
                *("--listen", agent, "--model", f"{MOCK_MODEL}={backend_url}"),
            ],
            agent,
        ),
        (
            "adapter",
            [PYTHON, "-m", "warmpath_adapter", "--listen", adapter, "--config", str(config)],
            adapter,
        ),
        (
            "router",
            [PYTHON, "-m", "warmpath_router", "--listen", router, "--config", str(config)],
            router,
        ),
    ]
    for name, args, address in services:
        full = f"{name}{tag}"
        procs.start(full, args, {"WARMPATH_LOG_LEVEL": "warning", **(env or {})})
        wait_serving(address, 60.0, alive=lambda full=full: procs.check_alive(full))  # type: ignore[misc]
    return WarmpathStack(router, adapter, backend_url, config)


def stop_warmpath(procs: Processes, tag: str = "") -> None:
    for name in ("router", "adapter", "agent"):
        procs.stop(f"{name}{tag}")


# --- streaming clients ------------------------------------------------------------------


@dataclass
class StreamResult:
    """One streamed answer as the client saw it."""

    ttft: float
    arrivals: list[float]
    """perf_counter() of every text token's arrival."""
    error: str = ""

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


Streamer = Callable[[int], Awaitable[StreamResult]]
"""Sends one request for `max_tokens` tokens and reads the whole stream."""

PROMPT = "Q: What is the capital of France?\nA:"


def router_streamer(channel: grpc.aio.Channel, model: str = MOCK_MODEL) -> Streamer:
    stub = router_pb2_grpc.RouterStub(channel)

    async def one(max_tokens: int) -> StreamResult:
        request = generate_pb2.GenerateRequest(
            model=model, prompt=PROMPT, max_tokens=max_tokens, temperature=0.0
        )
        return await _read_grpc(stub.Generate(request, timeout=120))

    return one


def adapter_streamer(
    channel: grpc.aio.Channel, base_url: str, served_model_id: str = MOCK_MODEL, kind: int = 2
) -> Streamer:
    stub = backend_adapter_pb2_grpc.BackendAdapterStub(channel)
    endpoint = gpu_agent_pb2.BackendEndpoint(
        kind=kind, base_url=base_url, served_model_id=served_model_id
    )

    async def one(max_tokens: int) -> StreamResult:
        request = backend_adapter_pb2.BackendGenerateRequest(
            request=generate_pb2.GenerateRequest(
                model=served_model_id, prompt=PROMPT, max_tokens=max_tokens, temperature=0.0
            ),
            endpoint=endpoint,
        )
        return await _read_grpc(stub.Generate(request, timeout=120))

    return one


async def _read_grpc(call: Any) -> StreamResult:
    sent = time.perf_counter()
    arrivals: list[float] = []
    try:
        async for message in call:
            if message.text:
                arrivals.append(time.perf_counter())
    except grpc.aio.AioRpcError as error:
        return StreamResult(math.nan, arrivals, f"{error.code().name}: {error.details()}")
    return StreamResult(arrivals[0] - sent if arrivals else math.nan, arrivals)


def http_streamer(client: httpx.AsyncClient, base_url: str, model: str = MOCK_MODEL) -> Streamer:
    url = base_url.rstrip("/") + "/v1/completions"

    async def one(max_tokens: int) -> StreamResult:
        body = {
            "model": model,
            "prompt": PROMPT,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
        }
        sent = time.perf_counter()
        arrivals: list[float] = []
        finished = False
        try:
            async with client.stream("POST", url, json=body, timeout=120) as response:
                if response.status_code >= 400:
                    await response.aread()
                    return StreamResult(math.nan, [], f"HTTP {response.status_code}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        # Read to the end of the body, so the connection is reused.
                        continue
                    chunk = json.loads(data)
                    choices = chunk.get("choices") or ()
                    if choices and (choices[0].get("text") or "") != "":
                        arrivals.append(time.perf_counter())
                    if choices and choices[0].get("finish_reason"):
                        finished = True
        except httpx.HTTPError as error:
            return StreamResult(math.nan, arrivals, type(error).__name__)
        if not finished:
            # What the adapter refuses as UNAVAILABLE: a stream cut off by the server.
            return StreamResult(math.nan, arrivals, "the stream ended without a finish reason")
        return StreamResult(arrivals[0] - sent if arrivals else math.nan, arrivals)

    return one


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=1024, max_keepalive_connections=1024),
        timeout=120,
    )


@contextlib.asynccontextmanager
async def grpc_channel(address: str) -> Any:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        yield channel


async def run_streams(
    streamer: Streamer,
    concurrency: int,
    streams_per_worker: int,
    max_tokens: int,
    stagger_seconds: float = 0.0,
) -> tuple[list[StreamResult], float]:
    """`concurrency` workers each read `streams_per_worker` streams back to back.

    Each worker first waits a random part of `stagger_seconds`, so that the
    streams' token schedules are out of phase, as independent users' are.
    Returns the results and the wall time.
    """
    results: list[StreamResult] = []

    async def worker() -> None:
        if stagger_seconds:
            await asyncio.sleep(random.uniform(0, stagger_seconds))
        for _ in range(streams_per_worker):
            results.append(await streamer(max_tokens))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - started


@dataclass
class StreamStats:
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    streams: int = 0
    errors: int = 0
    wall: float = 0.0
    first_error: str = ""

    def add(self, results: Sequence[StreamResult], wall: float) -> None:
        for result in results:
            self.streams += 1
            if result.error:
                self.errors += 1
                self.first_error = self.first_error or result.error
                continue
            self.ttft.append(result.ttft)
            self.gaps.extend(result.gaps)
            self.tokens += len(result.arrivals)
        self.wall += wall

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.wall if self.wall else math.nan


# --- markdown ---------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[object]], right_from: int = 1) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.rstrip() + "\n")
    print(f"wrote {out}", file=sys.stderr)


def command_line() -> str:
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])


@contextlib.contextmanager
def processes(name: str) -> Iterator[Processes]:
    procs = Processes(RUN_DIR / name)
    try:
        yield procs
    finally:
        procs.stop_all()
