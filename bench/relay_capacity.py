"""Relay capacity (issue 7, item 3): concurrent 25 tok/s streams before added gap p99 > 5 ms.

Raises the number of concurrent streams step by step. At each step the same
streams (bench/mock_openai.py, one token every 40 ms, starts staggered over
one token delay) run direct, through the backend-adapter alone and through
router + adapter; added inter-token p99 is the relayed p99 minus the direct
p99 at the same step. Stops at the first step over the 5 ms budget.

    .venv/bin/python bench/relay_capacity.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness import (
    BENCH,
    StreamStats,
    adapter_streamer,
    command_line,
    cpu_seconds,
    grpc_channel,
    http_client,
    http_streamer,
    load_average,
    ms,
    p50,
    p99,
    processes,
    ratio,
    router_streamer,
    run_streams,
    signed_ms,
    start_mock,
    start_warmpath,
    table,
    wait_for_quiet,
    write_section,
)

DELAY_MS = 40.0  # 25 tokens/s per stream
BUDGET_SECONDS = 0.005


async def ladder(
    router: str,
    adapter: str,
    backend_url: str,
    levels: Sequence[int],
    tokens: int,
    pids: Mapping[str, int],
) -> list[tuple[int, dict[str, StreamStats], dict[str, float]]]:
    steps = []
    async with grpc_channel(router) as rc, grpc_channel(adapter) as ac, http_client() as hc:
        streamers = {
            "direct": http_streamer(hc, backend_url),
            "adapter": adapter_streamer(ac, backend_url),
            "router": router_streamer(rc),
        }
        for streamer in streamers.values():
            await run_streams(streamer, 8, 1, 8)  # warm-up, discarded
        for level in levels:
            stats: dict[str, StreamStats] = {}
            cpu: dict[str, float] = {}
            for path, streamer in streamers.items():
                before = {n: cpu_seconds(p) for n, p in pids.items()}
                results, wall = await run_streams(streamer, level, 1, tokens, DELAY_MS / 1000)
                stats[path] = StreamStats()
                stats[path].add(results, wall)
                if path == "router":
                    cpu = {n: (cpu_seconds(p) - before[n]) / wall for n, p in pids.items()}
            steps.append((level, stats, cpu))
            added = p99(stats["router"].gaps) - p99(stats["direct"].gaps)
            print(f"{level} streams: added gap p99 {added * 1000:+.2f} ms")
            if added > BUDGET_SECONDS:
                break
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(BENCH / "results" / "relay_capacity.md"))
    args = parser.parse_args()
    levels = [8, 24, 40] if args.quick else [8, 16, 24, 32, 40, 48, 64, 80, 96]
    tokens = 50 if args.quick else 100
    load_before = wait_for_quiet()
    started = time.monotonic()
    with processes("relay_capacity") as procs:
        backend = start_mock(procs, DELAY_MS)
        stack = start_warmpath(procs, backend)
        pids = {name: procs.pid(name) for name in ("mock", "adapter", "router")}
        steps = asyncio.run(ladder(stack.router, stack.adapter, backend, levels, tokens, pids))
    took = time.monotonic() - started
    rows = []
    carried = 0
    for level, stats, cpu in steps:
        direct = stats["direct"]
        added = {path: p99(stats[path].gaps) - p99(direct.gaps) for path in ("adapter", "router")}
        within = added["router"] <= BUDGET_SECONDS
        if within:
            carried = level
        rows.append(
            [
                level,
                ms(p50(direct.gaps)),
                ms(p99(direct.gaps)),
                signed_ms(added["adapter"]),
                ms(p50(stats["router"].gaps)),
                ms(p99(stats["router"].gaps)),
                signed_ms(added["router"]),
                "yes" if within else "**no**",
                f"{direct.tokens_per_second:.0f}",
                f"{stats['router'].tokens_per_second:.0f}",
                ratio(stats["router"].tokens_per_second, direct.tokens_per_second),
                " / ".join(f"{cpu.get(n, 0):.2f}" for n in ("router", "adapter", "mock")),
                sum(s.errors for s in stats.values()),
            ]
        )
    verdict = "met" if carried >= 40 else "**missed**"
    text = "\n".join(
        [
            "## Relay capacity at 25 tokens/s per stream (item 3)",
            "",
            f"`{command_line()}`: {tokens}-token streams from the mock at one token every "
            f"{DELAY_MS:g} ms, N at a time, each N run direct, through the adapter alone and "
            "through router + adapter (one client process; tracing as deployed by default). "
            "Added = the relayed inter-token p99 minus the direct p99 at the same N, in ms. "
            f"Load before: {load_before}, after: {load_average()}; took {took:.0f} s.",
            "",
            f"**Carried {carried} concurrent streams within +5 ms added p99** "
            f"(target >= 40: {verdict}).",
            "",
            table(
                [
                    "streams",
                    "direct gap p50",
                    "direct gap p99",
                    "adapter added p99",
                    "router gap p50",
                    "router gap p99",
                    "router added p99",
                    "<= +5 ms",
                    "direct tok/s",
                    "router tok/s",
                    "tok/s vs direct",
                    "CPU router / adapter / mock (cores)",
                    "errors",
                ],
                rows,
            ),
        ]
    )
    write_section(Path(args.out), text)


if __name__ == "__main__":
    main()
