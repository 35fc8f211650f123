"""A soak: minutes of mixed streaming traffic through the real mesh, with faults, while
memory, file descriptors and asyncio tasks are sampled and their trend fitted.

Traffic: short completions and chats at varied lengths, 10% cancelled by the client
mid-stream, the llama.cpp server killed every minute (a backend cut: the agent notices
and the next request reloads it), and traces exported to a collector that does not
exist. Run with `make test-soak` (WARMPATH_SOAK_SECONDS, default 300); the figures go
to the test's output and to soak-report.json in the pytest temp folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import time
from collections import defaultdict
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import dead_collector_env, standard_mesh
from warmpath.v1 import generate_pb2, router_pb2_grpc

pytestmark = pytest.mark.soak

SOAK_SECONDS = float(os.environ.get("WARMPATH_SOAK_SECONDS", "300"))
CONCURRENCY = 4
CANCEL_SHARE = 0.10
CUT_EVERY_SECONDS = 60.0
SAMPLE_EVERY_SECONDS = 5.0


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of value over time, per minute."""
    if len(samples) < 3:
        return 0.0
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    return float(statistics.linear_regression(times, values).slope * 60.0)


def llama_pids() -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"llama_cpp.server" in cmdline and b"gemma3-270m" in cmdline:
            found.append(int(pid))
    return found


async def client(
    stub: router_pb2_grpc.RouterStub,
    stop: float,
    tally: defaultdict[str, int],
    reasons: defaultdict[str, int],
    rng: random.Random,
) -> None:
    prompts = ["The sky is", "Q: What is the capital of France?\nA:", "Write a haiku about GPUs."]
    while time.monotonic() < stop:
        request = generate_pb2.GenerateRequest(model="gemma", max_tokens=rng.randint(1, 16))
        if rng.random() < 0.3:
            request.messages.append(
                generate_pb2.ChatMessage(role="user", content=rng.choice(prompts))
            )
        else:
            request.prompt = rng.choice(prompts)
        cancel = rng.random() < CANCEL_SHARE
        call = stub.Generate(request, timeout=60)
        try:
            async for chunk in call:
                if cancel and chunk.text:
                    call.cancel()
                    break
            tally["cancelled" if cancel else "ok"] += 1
        except grpc.aio.AioRpcError as error:
            tally[error.code().name] += 1
            # Details name the hop and the cause; digits (ports, seconds) would split them.
            reason = "".join("#" if c.isdigit() else c for c in (error.details() or "")[:120])
            reasons[f"{error.code().name}: {reason}"] += 1


@pytest.mark.timeout(SOAK_SECONDS + 300)
async def test_soak_holds_steady(tmp_path: Path) -> None:
    mesh = standard_mesh(tmp_path, dead_collector_env())
    await asyncio.to_thread(mesh.start)  # it runs its own event loop
    assert mesh.ports.metrics is not None
    metrics = mesh.ports.metrics
    trends: dict[str, list[tuple[float, float]]] = {}
    tally: defaultdict[str, int] = defaultdict(int)
    reasons: defaultdict[str, int] = defaultdict(int)
    cuts = 0
    try:
        async with grpc.aio.insecure_channel(mesh.ports.address("router")) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            started = time.monotonic()
            stop = started + SOAK_SECONDS
            clients = [
                asyncio.create_task(client(stub, stop, tally, reasons, random.Random(n)))
                for n in range(CONCURRENCY)
            ]
            next_cut = started + CUT_EVERY_SECONDS
            while time.monotonic() < stop:
                await asyncio.sleep(SAMPLE_EVERY_SECONDS)
                now = time.monotonic() - started
                for service, port in metrics.items():
                    values = await asyncio.to_thread(scrape, port)
                    for name in (
                        "process_resident_memory_bytes",
                        "process_open_fds",
                        "warmpath_asyncio_tasks",
                    ):
                        trends.setdefault(f"{service} {name}", []).append(
                            (now, values.get(name, 0.0))
                        )
                if time.monotonic() >= next_cut:
                    for pid in llama_pids():
                        os.kill(pid, signal.SIGKILL)
                        cuts += 1
                    next_cut += CUT_EVERY_SECONDS
            await asyncio.gather(*clients)
        await asyncio.sleep(2)
        router = await asyncio.to_thread(scrape, metrics["router"])
        adapter = await asyncio.to_thread(scrape, metrics["backend-adapter"])
    finally:
        codes = await asyncio.to_thread(mesh.stop)

    # Discard the first minute (warm-up: imports, pools, the first model load).
    settled = {name: [s for s in samples if s[0] >= 60] for name, samples in trends.items()}
    slopes = {name: slope_per_minute(samples) for name, samples in settled.items()}
    report = {
        "seconds": SOAK_SECONDS,
        "requests": dict(tally),
        "failure_reasons": dict(sorted(reasons.items(), key=lambda item: -item[1])),
        "backend_cuts": cuts,
        "slopes_per_minute": slopes,
        "final": {name: samples[-1][1] for name, samples in trends.items()},
    }
    (tmp_path / "soak-report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))

    assert codes == {"router": 0, "backend-adapter": 0, "gpu-agent": 0}
    assert tally["ok"] > 0 and tally["cancelled"] > 0
    assert set(tally) <= {"ok", "cancelled", "UNAVAILABLE"}, "only backend cuts may fail a request"
    assert router["warmpath_router_in_flight_requests"] == 0
    assert adapter["warmpath_adapter_in_flight_requests"] == 0
    # Counts rise and fall with the requests in flight; only a steady rise is a leak.
    for name, slope in slopes.items():
        if name.endswith("process_open_fds") or name.endswith("warmpath_asyncio_tasks"):
            assert slope < 1.0, f"{name} grows by {slope:.2f} a minute"
        else:
            assert slope < 2 * 1024 * 1024, f"{name} grows by {slope / 2**20:.2f} MiB a minute"
