"""Route RPC latency and throughput vs a no-op grpc.aio unary RPC, and the routing decision time.

Part 1 (issue 7, item 1): one client process calls Route on the real router
process (backed by the stand-in agent, so a model is resident) and, in the
same run and layout, a no-op Route on a bare `grpc.aio.server()` and on
Warmpath's own server plumbing. Closed loop at concurrency 1, 16 and 64;
each repeat discards a warm-up; the targets are interleaved per repeat.

Part 2: the decision inside the handler, timed in-process: `place()` and
`Relay.decide()` with 20 models and 100 replicas in a synthetic ClusterView.

    .venv/bin/python bench/route_rpc.py [--quick] [--out bench/results/route_rpc.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    BENCH,
    PYTHON,
    Processes,
    command_line,
    grpc_channel,
    load_average,
    p50,
    p99,
    processes,
    ratio,
    start_mock,
    start_warmpath,
    table,
    wait_for_quiet,
    write_section,
)
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from warmpath.v1 import generate_pb2, router_pb2, router_pb2_grpc
from warmpath_cli.mesh import free_port, wait_serving
from warmpath_common.config import ModelSpec, RouterSettings
from warmpath_common.convert import ResidencyState
from warmpath_common.generation import Endpoint, GenerationRequest
from warmpath_router.breaker import CircuitBreakers
from warmpath_router.cluster import ClusterView, HostView, Replica
from warmpath_router.metrics import RouterMetrics
from warmpath_router.registry import ModelRegistry
from warmpath_router.relay import Relay
from warmpath_router.routing import place

CONCURRENCY = (1, 16, 64)
BARE = "no-op (bare grpc.aio)"
PLUMBED = "no-op + Warmpath server plumbing"
ROUTER = "router Route"
ROUTER_TRACED = "router Route, caller traced"
# A sampled W3C parent, as a tracing caller sends: Route then opens (and exports) a span.
TRACEPARENT = (("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),)


@dataclass
class LoopResult:
    latencies: list[float] = field(default_factory=list)
    throughputs: list[float] = field(default_factory=list)
    errors: int = 0


async def closed_loop(
    call: Callable[[], Awaitable[object]], concurrency: int, seconds: float
) -> tuple[list[float], float, int]:
    """`concurrency` workers call back to back for `seconds`; returns latencies, calls/s, errors."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await call()
            except Exception:  # counted, and the run says so
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, len(latencies) / (time.perf_counter() - began), errors


def route_request() -> router_pb2.RouteRequest:
    return router_pb2.RouteRequest(
        request=generate_pb2.GenerateRequest(model="mock", prompt="Q: capital of France?\nA:")
    )


def start_noop(procs: Processes, name: str, plumbed: bool, env: Mapping[str, str]) -> str:
    address = f"127.0.0.1:{free_port()}"
    args = [PYTHON, str(BENCH / "noop_server.py"), "--listen", address]
    procs.start(name, args + (["--plumbed"] if plumbed else []), env)
    wait_serving(address, 30.0, alive=lambda: procs.check_alive(name))
    return address


async def measure_targets(
    targets: Mapping[str, str],
    repeats: int,
    seconds: float,
    concurrency: tuple[int, ...],
    traced: frozenset[str] = frozenset(),
) -> dict[tuple[str, int], LoopResult]:
    """Route on each target address; interleaved per repeat, warm-up discarded.
    Targets named in `traced` are called with a sampled traceparent."""
    results: dict[tuple[str, int], LoopResult] = {}
    request = route_request()
    async with contextlib.AsyncExitStack() as stack:
        stubs = {
            name: router_pb2_grpc.RouterStub(await stack.enter_async_context(grpc_channel(address)))
            for name, address in targets.items()
        }
        for stub in stubs.values():  # warm-up, discarded
            await closed_loop(lambda stub=stub: stub.Route(request, timeout=10), 16, seconds / 2)
        for _ in range(repeats):
            for level in concurrency:
                for name, stub in stubs.items():
                    metadata = TRACEPARENT if name in traced else ()
                    lat, rate, errors = await closed_loop(
                        lambda stub=stub, metadata=metadata: stub.Route(
                            request, timeout=10, metadata=metadata
                        ),
                        level,
                        seconds,
                    )
                    result = results.setdefault((name, level), LoopResult())
                    result.latencies.extend(lat)
                    result.throughputs.append(rate)
                    result.errors += errors
    return results


def measure_route(
    env: Mapping[str, str],
    repeats: int,
    seconds: float,
    concurrency: tuple[int, ...] = CONCURRENCY,
    with_noop: bool = True,
    tag: str = "",
    traced_caller: bool = False,
) -> dict[tuple[str, int], LoopResult]:
    """Starts the no-op servers and the router (same env), measures, stops them."""
    with processes(f"route_rpc{tag}") as procs:
        backend = start_mock(procs, 20.0)
        targets = {}
        if with_noop:
            targets[BARE] = start_noop(procs, "noop-bare", False, env)
            targets[PLUMBED] = start_noop(procs, "noop-plumbed", True, env)
        stack = start_warmpath(procs, backend, env)
        targets[ROUTER] = stack.router
        traced = frozenset({ROUTER_TRACED} if traced_caller else ())
        if traced_caller:
            targets[ROUTER_TRACED] = stack.router
        return asyncio.run(measure_targets(targets, repeats, seconds, concurrency, traced))


# --- part 2: the decision itself ---------------------------------------------------------


def decision_times(hosts: int, replicas_per_host: int, iterations: int) -> dict[str, list[float]]:
    """place() and Relay.decide() on a synthetic cluster; seconds per call."""

    models = [
        ModelSpec.model_validate(
            {
                "name": f"model-{i:02d}",
                "aliases": [f"m{i}"],
                "backend": "vllm",
                "source": {"served_id": f"model-{i:02d}"},
                "container": {"image": "bench/none:never"},
                "memory": "4GiB",
                "fallbacks": [f"model-{(i + 1) % 20:02d}"],
            }
        )
        for i in range(20)
    ]
    names = [m.name for m in models]
    settings = RouterSettings.model_validate(
        {
            "hosts": [
                {"name": f"h{h}", "agent": "127.0.0.1:1", "adapter": "127.0.0.1:2"}
                for h in range(hosts)
            ]
        }
    )
    cluster = ClusterView.of(f"h{h}" for h in range(hosts))
    for h in range(hosts):
        replicas = tuple(
            Replica(
                model=names[(h * replicas_per_host + r) % len(names)],
                host=f"h{h}",
                state=ResidencyState.READY,
                gpu_index=r,
                gpu_uuid=f"GPU-{h}-{r}",
                load_seconds=3.0,
                endpoint=Endpoint(
                    "vllm", f"http://10.0.{h}.1:{8000 + r}", names[(h * replicas_per_host + r) % 20]
                ),
            )
            for r in range(replicas_per_host)
        )
        cluster.update(HostView(f"h{h}", True, False, frozenset(names), replicas))
    registry = ModelRegistry(models, settings.auto)
    relay = Relay(
        registry,
        cluster,
        None,
        None,
        settings,
        RouterMetrics(CollectorRegistry()),  # type: ignore[arg-type]
    )
    breakers = CircuitBreakers()
    in_flight: Counter[tuple[str, str]] = Counter(
        {(f"h{h}", names[h % 20]): h % 3 for h in range(hosts)}
    )
    resolved = [registry.resolve(name) for name in names]
    requests = [GenerationRequest(model=name, prompt="Q: capital of France?\nA:") for name in names]
    timings: dict[str, list[float]] = {"place()": [], "Relay.decide()": []}
    clock = time.perf_counter_ns
    for round_ in range(2):  # the first round warms up and is discarded
        place_times: list[float] = []
        decide_times: list[float] = []
        for i in range(iterations):
            target = resolved[i % 20]
            now = time.monotonic()
            started = clock()
            place(
                target,
                cluster,
                in_flight=in_flight,
                circuit_open=lambda key, now=now: breakers.open_for(key, now),
            )
            place_times.append((clock() - started) / 1e9)
            started = clock()
            relay.decide(requests[i % 20])
            decide_times.append((clock() - started) / 1e9)
        if round_:
            timings["place()"] = place_times
            timings["Relay.decide()"] = decide_times
    return timings


def decision_section(iterations: int) -> list[list[object]]:
    """Rows for the decision table, with tracing off (no provider) and on (SDK provider)."""

    layouts = [(25, 4), (100, 1)]
    rows: list[list[object]] = []
    baseline: dict[tuple[str, int, int], float] = {}
    for tracing in ("off", "on"):
        if tracing == "on":
            trace.set_tracer_provider(TracerProvider())
        for hosts, per_host in layouts:
            for name, values in decision_times(hosts, per_host, iterations).items():
                median, tail = p50(values), p99(values)
                key = (name, hosts, per_host)
                if tracing == "off":
                    baseline[key] = median
                rows.append(
                    [
                        name,
                        f"{hosts} hosts x {per_host} ({hosts * per_host} replicas), 20 models",
                        "SDK, not exported" if tracing == "on" else "off",
                        f"{median * 1e6:.1f}",
                        f"{tail * 1e6:.1f}",
                        ratio(median, baseline[key]),
                        "yes" if tail * 1e6 <= 50 else "**no**",
                    ]
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one short repeat")
    parser.add_argument("--out", default=str(BENCH / "results" / "route_rpc.md"))
    args = parser.parse_args()
    repeats, seconds, iterations = (1, 0.8, 3000) if args.quick else (3, 2.0, 20000)
    load_before = wait_for_quiet()
    started = time.monotonic()
    results = measure_route({}, repeats, seconds)
    decision_rows = decision_section(iterations)
    took = time.monotonic() - started
    rows = []
    for level in CONCURRENCY:
        base = results[(BARE, level)]
        base_p50, base_rate = p50(base.latencies), p50(base.throughputs)
        for name in (BARE, PLUMBED, ROUTER):
            r = results[(name, level)]
            rate = p50(r.throughputs)
            target = ""
            if name == ROUTER:
                ok = p50(r.latencies) <= 1.3 * base_p50 and rate >= 0.75 * base_rate
                target = "met" if ok else "**missed**"
            rows.append(
                [
                    level,
                    name,
                    f"{p50(r.latencies) * 1000:.3f}",
                    f"{p99(r.latencies) * 1000:.3f}",
                    ratio(p50(r.latencies), base_p50),
                    f"{rate:.0f}",
                    ratio(rate, base_rate),
                    r.errors,
                    target,
                ]
            )
    text = "\n".join(
        [
            "## Route RPC vs a no-op grpc.aio unary RPC (item 1)",
            "",
            f"`{command_line()}`: one client process (grpc.aio, one channel per target) calling "
            "Route on each target in its own process, closed loop; tracing as deployed by default "
            "(SDK spans, no exporter). The router is backed by bench/standin_agent.py with one "
            f"resident model. {repeats} repeat(s) of {seconds:g} s per cell after a discarded "
            f"warm-up, targets interleaved; latency percentiles pooled over repeats, throughput "
            f"the median repeat. Load average (1 / 5 min) before: {load_before}, after: "
            f"{load_average()}; took {took:.0f} s.",
            "",
            "Target: router p50 <= 1.3x the no-op, throughput >= 0.75x.",
            "",
            table(
                [
                    "concurrency",
                    "server",
                    "p50 (ms)",
                    "p99 (ms)",
                    "p50 vs no-op",
                    "calls/s",
                    "calls/s vs no-op",
                    "errors",
                    "target",
                ],
                rows,
                right_from=2,
            ),
            "",
            "### Routing decision inside the handler",
            "",
            f"In-process, {iterations} calls after as many discarded, models cycled: `place()` "
            "(with in-flight counts and circuit breakers, as Generate calls it) and "
            "`Relay.decide()` (what Route runs: validation, name resolution, placement, the "
            "fallback chain and a `route` span). Target: <= 50 us p99.",
            "",
            table(
                [
                    "function",
                    "cluster",
                    "tracing",
                    "p50 (us)",
                    "p99 (us)",
                    "p50 vs off",
                    "<= 50 us p99",
                ],
                decision_rows,
                right_from=3,
            ),
        ]
    )
    write_section(Path(args.out), text)


if __name__ == "__main__":
    main()
