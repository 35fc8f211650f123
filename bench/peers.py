"""Side by side with the peers (issue 7, item 4; issue 21, item 8): LiteLLM proxy and
vLLM Router.

Each peer is installed in its own virtualenv under bench/.venvs/ (gitignored;
`--install` creates them, pinned) and put in front of the same
bench/mock_openai.py process as Warmpath, driven by the same client process in
the same run:

    direct:         client -> mock                           (HTTP + SSE)
    vLLM Router:    client -> vllm-router -> mock            (HTTP + SSE)
    LiteLLM:        client -> litellm proxy -> mock          (HTTP + SSE)
    Warmpath:       client -> router -> adapter -> mock      (gRPC, then HTTP + SSE)
    in-process:     client -> router (adapter inside) -> mock (gRPC, then HTTP + SSE)
    Warmpath HTTP:  client -> the same router's OpenAI-compatible front door -> mock
                    (HTTP + SSE end to end, the same httpx client as the peers)

Added latency: TTFT p50 of 1-token requests one at a time, minus direct's.
Throughput: 1-token streamed requests per second at concurrency 32.

    .venv/bin/python bench/peers.py [--quick] [--install]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import yaml
from harness import (
    BENCH,
    Processes,
    Streamer,
    StreamStats,
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
    start_in_process_router,
    start_mock,
    start_warmpath,
    table,
    wait_for_quiet,
    wait_http,
    write_section,
)

from warmpath_cli.mesh import free_port

VENVS = BENCH / ".venvs"
# Pinned; LiteLLM's newest releases need a certifi newer than the registry here has.
PEERS = {
    "litellm": ["litellm[proxy]==1.81.16"],
    "vllm-router": ["vllm-router==0.1.17"],
}
DELAY_MS = 20.0
# Differences of TTFT p50 smaller than this are within run-to-run noise here.
NOISE_FLOOR_SECONDS = 0.0002
WARMPATH = "Warmpath (router + adapter)"
WARMPATH_IN_PROCESS = "Warmpath (router, adapter in-process)"
# The same router's OpenAI-compatible HTTP front door: the same client as the peers.
WARMPATH_HTTP = "Warmpath HTTP (router, adapter in-process)"


def install(name: str) -> str:
    """Creates bench/.venvs/<name> with the pinned peer unless there; returns "" or why not."""
    venv = VENVS / name
    binary = venv / "bin" / name
    if binary.exists():
        return ""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", *PEERS[name]],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "pip failed"
    return ""


def start_litellm(procs: Processes, backend_url: str) -> str:
    binary = VENVS / "litellm" / "bin" / "litellm"
    if not binary.exists():
        raise FileNotFoundError(f"{binary.relative_to(BENCH.parent)} (run with --install)")
    config = procs.log_dir / "litellm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {
                        "model_name": "mock",
                        "litellm_params": {
                            "model": "openai/mock",
                            "api_base": backend_url + "/v1",
                            "api_key": "none",
                        },
                    }
                ],
                "litellm_settings": {"telemetry": False, "drop_params": True},
            }
        )
    )
    port = free_port()
    procs.start(
        "litellm",
        [
            str(binary),
            *("--config", str(config), "--host", "127.0.0.1", "--port", str(port)),
            *("--num_workers", "1"),
        ],
        # No network: the model cost map ships in the package; no usage telemetry.
        {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/liveliness", 120.0, alive=lambda: procs.check_alive("litellm"))
    return url


def start_vllm_router(procs: Processes, backend_url: str) -> str:
    binary = VENVS / "vllm-router" / "bin" / "vllm-router"
    if not binary.exists():
        raise FileNotFoundError(f"{binary.relative_to(BENCH.parent)} (run with --install)")
    port = free_port()
    procs.start(
        "vllm-router",
        [
            str(binary),
            *("--host", "127.0.0.1", "--port", str(port), "--worker-urls", backend_url),
            *("--policy", "round_robin", "--log-level", "warning"),
            *("--prometheus-port", str(free_port())),
        ],
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/models", 60.0, alive=lambda: procs.check_alive("vllm-router"))
    return url


async def requests_per_second(
    streamer: Streamer, concurrency: int, seconds: float
) -> tuple[float, int, int]:
    """1-token streamed requests back to back from `concurrency` workers for `seconds`:
    the rate, the errors and the requests done."""
    done = 0
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done, errors
        while time.perf_counter() < stop_at:
            result = await streamer(1)
            if result.error:
                errors += 1
            else:
                done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - began), errors, done


async def compare(
    urls: Mapping[str, str],
    router: str,
    in_process_router: str,
    warmpath_http: str,
    in_process_pid: int,
    repeats: int,
    samples: int,
    seconds: float,
) -> tuple[
    dict[str, StreamStats],
    dict[str, list[float]],
    dict[str, StreamStats],
    dict[str, int],
    dict[str, list[float]],
]:
    """Latency, throughput, streaming and errors per path; and, for the two paths into
    the in-process router (gRPC and HTTP), its CPU seconds per request at concurrency 32."""
    latency: dict[str, StreamStats] = {}
    router_cpu: dict[str, list[float]] = {}
    streaming: dict[str, StreamStats] = {}
    rates: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    async with (
        grpc_channel(router) as rc,
        grpc_channel(in_process_router) as ic,
        http_client() as hc,
    ):
        streamers: dict[str, Streamer] = {
            name: http_streamer(hc, url) for name, url in urls.items()
        }
        streamers[WARMPATH] = router_streamer(rc)
        streamers[WARMPATH_IN_PROCESS] = router_streamer(ic)
        streamers[WARMPATH_HTTP] = http_streamer(hc, warmpath_http)
        for streamer in streamers.values():
            await run_streams(streamer, 8, 4, 2)  # warm-up, discarded
        for _ in range(repeats):
            for name, streamer in streamers.items():
                results, wall = await run_streams(streamer, 1, samples, 1)
                latency.setdefault(name, StreamStats()).add(results, wall)
                results, wall = await run_streams(streamer, 16, 1, 32, DELAY_MS / 1000)
                streaming.setdefault(name, StreamStats()).add(results, wall)
                cpu_before = cpu_seconds(in_process_pid)
                rate, failed, done = await requests_per_second(streamer, 32, seconds)
                if name in (WARMPATH_IN_PROCESS, WARMPATH_HTTP):
                    used = cpu_seconds(in_process_pid) - cpu_before
                    router_cpu.setdefault(name, []).append(used / max(done, 1))
                rates.setdefault(name, []).append(rate)
                errors[name] = errors.get(name, 0) + failed + latency[name].errors
    return latency, rates, streaming, errors, router_cpu


def verdict(
    ours: str,
    peer: str,
    added: Mapping[str, float],
    rate: Mapping[str, float],
    latency_target: float,
    rate_target: float | None,
) -> str:
    if added[peer] < NOISE_FLOOR_SECONDS:
        # Below what this client can tell from direct: a ratio would be noise.
        over = added[ours] > latency_target * NOISE_FLOOR_SECONDS
        line = (
            f"- {ours} vs {peer}: their added TTFT p50 ({signed_ms(added[peer])} ms) is below "
            f"this client's resolution ({NOISE_FLOOR_SECONDS * 1000:g} ms); Warmpath adds "
            f"{signed_ms(added[ours])} ms, so the ratio is at least "
            f"{added[ours] / NOISE_FLOOR_SECONDS:.0f}x (target <= {latency_target:g}x: "
            f"{'**missed**' if over else 'met'})"
        )
    else:
        latency_ratio = added[ours] / added[peer]
        line = (
            f"- {ours} vs {peer}: added latency {latency_ratio:.2f}x theirs "
            f"(target <= {latency_target:g}x: "
            f"{'met' if latency_ratio <= latency_target else '**missed**'})"
        )
    throughput = rate[ours] / rate[peer]
    line += f", throughput {throughput:.2f}x theirs"
    if rate_target is not None:
        met = "met" if throughput >= rate_target else "**missed**"
        line += f" (target >= {rate_target:g}x: {met})"
    return line + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--install", action="store_true", help="create the peers' virtualenvs where missing"
    )
    parser.add_argument("--out", default=str(BENCH / "results" / "peers.md"))
    args = parser.parse_args()
    notes: list[str] = []
    if args.install:
        for name in PEERS:
            problem = install(name)
            if problem:
                notes.append(f"- {name} could not be installed: {problem}")
    repeats, samples, seconds = (1, 50, 1.5) if args.quick else (3, 150, 3.0)
    load_before = wait_for_quiet()
    started = time.monotonic()
    with processes("peers") as procs:
        backend = start_mock(procs, DELAY_MS)
        urls = {"direct": backend}
        for name, start in (("vLLM Router", start_vllm_router), ("LiteLLM proxy", start_litellm)):
            try:
                urls[name] = start(procs, backend)
            except (OSError, RuntimeError) as error:
                notes.append(f"- {name} not measured: {error}")
        stack = start_warmpath(procs, backend)
        http_listen = f"127.0.0.1:{free_port()}"
        in_process = start_in_process_router(procs, stack, http_listen=http_listen)
        latency, rates, streaming, errors, router_cpu = asyncio.run(
            compare(
                urls,
                stack.router,
                in_process,
                f"http://{http_listen}",
                procs.pid("router-in-process"),
                repeats,
                samples,
                seconds,
            )
        )
    took = time.monotonic() - started
    base_ttft = p50(latency["direct"].ttft)
    added = {name: p50(s.ttft) - base_ttft for name, s in latency.items()}
    rate = {name: p50(values) for name, values in rates.items()}
    rows = []
    for name in latency:
        gaps = streaming[name].gaps
        rows.append(
            [
                name,
                ms(p50(latency[name].ttft)),
                ms(p99(latency[name].ttft)),
                "" if name == "direct" else signed_ms(added[name]),
                ms(p50(gaps)),
                ms(p99(gaps)),
                "" if name == "direct" else signed_ms(p99(gaps) - p99(streaming["direct"].gaps)),
                f"{rate[name]:.0f}",
                ratio(rate[name], rate["direct"]),
                errors[name],
            ]
        )
    verdicts = []
    for ours in (WARMPATH, WARMPATH_IN_PROCESS):
        for peer, latency_target, rate_target in (
            ("LiteLLM proxy", 0.15, 5.0),
            ("vLLM Router", 10.0, None),
        ):
            if peer in added:
                verdicts.append(verdict(ours, peer, added, rate, latency_target, rate_target))
    # Issue 21's targets for the HTTP front door, client protocol for client protocol.
    for peer, latency_target, rate_target in (
        ("LiteLLM proxy", 0.1, None),
        ("vLLM Router", 2.0, 1.0),
    ):
        if peer in added:
            verdicts.append(verdict(WARMPATH_HTTP, peer, added, rate, latency_target, rate_target))
    verdicts.append(
        f"- HTTP front door over the gRPC path (same router): added TTFT p50 "
        f"{signed_ms(added[WARMPATH_HTTP] - added[WARMPATH_IN_PROCESS])} ms, throughput "
        f"{ratio(rate[WARMPATH_HTTP], rate[WARMPATH_IN_PROCESS])} of gRPC's; the router's "
        f"CPU per request at 32 concurrent: {ms(p50(router_cpu[WARMPATH_HTTP]))} ms over HTTP, "
        f"{ms(p50(router_cpu[WARMPATH_IN_PROCESS]))} ms over gRPC "
        f"({ratio(p50(router_cpu[WARMPATH_HTTP]), p50(router_cpu[WARMPATH_IN_PROCESS]))})."
    )
    text = "\n".join(
        [
            "## Side by side with LiteLLM proxy and vLLM Router (issue 7 item 4, issue 21 item 8)",
            "",
            f"`{command_line()}`: every proxy in its own process in front of the same mock "
            f"({DELAY_MS:g} ms between tokens; the first token at once), one client process, "
            f"paths interleaved, {repeats} repeat(s) after a discarded warm-up. Peers: "
            + ", ".join(f"`{' '.join(spec)}`" for spec in PEERS.values())
            + " in their own virtualenvs under bench/.venvs/ (LiteLLM with one worker, as "
            "2 cores allow; vLLM Router round robin over the one worker). The peers and direct "
            "are read with httpx over HTTP + SSE, Warmpath's gRPC rows with grpc.aio, and "
            "Warmpath's HTTP row with the same httpx client as the peers (apples to apples). "
            f"Machine: {os.cpu_count()} cores, no GPU (the backend is a mock), shared with "
            f"other work while it ran; load before: {load_before}, after: {load_average()}; "
            f"took {took:.0f} s.",
            "",
            *verdicts,
            *notes,
            "",
            table(
                [
                    "path",
                    "TTFT p50 (ms)",
                    "TTFT p99 (ms)",
                    "added TTFT p50",
                    "gap p50 @16",
                    "gap p99 @16",
                    "added gap p99 @16",
                    "req/s @32 (1 token)",
                    "req/s vs direct",
                    "errors",
                ],
                rows,
            ),
        ]
    )
    write_section(Path(args.out), text)


if __name__ == "__main__":
    main()
