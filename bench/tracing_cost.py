"""Tracing cost (issue 7, item 5): Route and Generate with OpenTelemetry off, on, and exporting.

Modes, set in the services' environment (router, adapter, stand-in agent):
    off:       OTEL_SDK_DISABLED=true (no provider: spans are no-ops)
    on:        the default with no endpoint: spans created (trace ids reach callers), not exported
    exported:  spans batched over OTLP/gRPC to bench/otlp_sink.py in its own process
Each mode restarts the services; the modes are run in turn, twice, and the
samples pooled, so that drift on a shared machine hits every mode alike.

    .venv/bin/python bench/tracing_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from pathlib import Path

from generate_overhead import Phase, measure_mock
from harness import (
    BENCH,
    PYTHON,
    TRACING_OFF,
    StreamStats,
    command_line,
    load_average,
    ms,
    p50,
    p99,
    processes,
    table,
    wait_for_quiet,
    write_section,
)
from route_rpc import ROUTER, ROUTER_TRACED, LoopResult, measure_route

from warmpath_cli.mesh import free_port

MODES = ("off", "on", "exported")
DELAY_MS = 20.0


def run_mode(
    mode: str, quick: bool, round_: int
) -> tuple[dict[tuple[str, int], LoopResult], dict[tuple[str, str], StreamStats]]:
    with processes(f"tracing-{mode}-{round_}") as procs:
        env: dict[str, str] = {}
        if mode == "off":
            env = dict(TRACING_OFF)
        elif mode == "exported":
            address = f"127.0.0.1:{free_port()}"
            procs.start("otlp-sink", [PYTHON, str(BENCH / "otlp_sink.py"), "--listen", address])
            env = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{address}",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_BSP_SCHEDULE_DELAY": "500",
            }
        seconds = 0.8 if quick else 1.5
        route = measure_route(
            env, 1, seconds, (1, 16), with_noop=False, tag=f"-{mode}", traced_caller=True
        )
        phases = [
            Phase("ttft@1", 1, 60 if quick else 150, 1),
            Phase("stream@32", 32, 1 if quick else 2, 32, DELAY_MS / 1000),
        ]
        generate, _ = measure_mock(env, phases, 1, DELAY_MS, tag=f"-{mode}")
        return route, generate


def merge_route(
    into: dict[tuple[str, int], LoopResult], more: Mapping[tuple[str, int], LoopResult]
) -> None:
    for key, value in more.items():
        target = into.setdefault(key, LoopResult())
        target.latencies.extend(value.latencies)
        target.throughputs.extend(value.throughputs)
        target.errors += value.errors


def merge_streams(
    into: dict[tuple[str, str], StreamStats], more: Mapping[tuple[str, str], StreamStats]
) -> None:
    for key, value in more.items():
        target = into.setdefault(key, StreamStats())
        target.ttft.extend(value.ttft)
        target.gaps.extend(value.gaps)
        target.tokens += value.tokens
        target.streams += value.streams
        target.errors += value.errors
        target.wall += value.wall


def verdict(latency_ratio: float, throughput_ratio: float) -> str:
    ok = latency_ratio <= 1.10 and throughput_ratio >= 0.85
    return "met" if ok else "**missed**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(BENCH / "results" / "tracing_cost.md"))
    args = parser.parse_args()
    load_before = wait_for_quiet()
    started = time.monotonic()
    route: dict[str, dict[tuple[str, int], LoopResult]] = {mode: {} for mode in MODES}
    generate: dict[str, dict[tuple[str, str], StreamStats]] = {mode: {} for mode in MODES}
    for round_ in range(1 if args.quick else 2):
        for mode in MODES:
            r, g = run_mode(mode, args.quick, round_)
            merge_route(route[mode], r)
            merge_streams(generate[mode], g)
    took = time.monotonic() - started
    rows = []
    off_route = route["off"]
    off_gen = generate["off"]
    for target, label in ((ROUTER, "Route"), (ROUTER_TRACED, "Route, caller traced")):
        for mode in MODES:
            r1, r16 = route[mode][(target, 1)], route[mode][(target, 16)]
            lat_ratio = p50(r1.latencies) / p50(off_route[(target, 1)].latencies)
            rate_ratio = p50(r16.throughputs) / p50(off_route[(target, 16)].throughputs)
            rows.append(
                [
                    label,
                    mode,
                    f"{p50(r1.latencies) * 1000:.3f}",
                    f"{p99(r1.latencies) * 1000:.3f}",
                    f"{lat_ratio:.2f}x",
                    f"{p50(r16.throughputs):.0f} calls/s",
                    f"{rate_ratio:.2f}x",
                    "" if mode == "off" else verdict(lat_ratio, rate_ratio),
                ]
            )
    for mode in MODES:
        t1 = generate[mode][("router", "ttft@1")]
        s32 = generate[mode][("router", "stream@32")]
        lat_ratio = p50(t1.ttft) / p50(off_gen[("router", "ttft@1")].ttft)
        rate_ratio = s32.tokens_per_second / off_gen[("router", "stream@32")].tokens_per_second
        rows.append(
            [
                "Generate (router path, mock)",
                mode,
                ms(p50(t1.ttft), 3),
                ms(p99(t1.ttft), 3),
                f"{lat_ratio:.2f}x",
                f"{s32.tokens_per_second:.0f} tok/s; gap p99 {ms(p99(s32.gaps))} ms",
                f"{rate_ratio:.2f}x",
                "" if mode == "off" else verdict(lat_ratio, rate_ratio),
            ]
        )
    # The direct path in the same runs shows how much the machine itself drifted.
    drift = [f"{mode} {ms(p50(generate[mode][('direct', 'ttft@1')].ttft), 3)} ms" for mode in MODES]
    text = "\n".join(
        [
            "## Tracing cost (item 5)",
            "",
            f"`{command_line()}`. Route: p50/p99 latency at concurrency 1, throughput at 16 "
            "(router process only); Route opens a span only in a caller's trace, so it is "
            "measured both from an untraced caller and from one that sends a sampled "
            "traceparent with every call. Generate: TTFT of 1-token requests one at a time through "
            f"router + adapter, and tokens/s of 32 concurrent 32-token streams (mock, "
            f"{DELAY_MS:g} ms between tokens). Ratios are against `off` in the same run. "
            "Target: <= 10% p50 latency (<= 1.10x) and <= 15% throughput (>= 0.85x). "
            f"Direct-to-mock TTFT p50 per mode, for drift: {', '.join(drift)}. "
            f"Load before: {load_before}, after: {load_average()}; took {took:.0f} s.",
            "",
            table(
                [
                    "RPC",
                    "tracing",
                    "p50 (ms)",
                    "p99 (ms)",
                    "p50 vs off",
                    "throughput",
                    "throughput vs off",
                    "target",
                ],
                rows,
                right_from=2,
            ),
        ]
    )
    write_section(Path(args.out), text)


if __name__ == "__main__":
    main()
