"""llama.cpp's warm tier with the real server and the real Gemma weights: the agent stops
the server and keeps the GGUF in the page cache, and the next request's reload is the
wake; once through a whole mesh of real processes. Measured against a reload after the
GGUF was dropped from the page cache (POSIX_FADV_DONTNEED, as an unload does). The
figures are printed, never asserted: this machine is shared and its timings are not ours
to promise.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import grpc
import httpx
import pytest
import yaml

from tests.conftest import GEMMA, wait_until
from tests.fakes.sleep import FakeServerSleep
from tests.gpu_agent.test_residency import Clock, manager
from tests.integration.conftest import mesh_config
from warmpath.v1 import generate_pb2, gpu_agent_pb2, gpu_agent_pb2_grpc, router_pb2, router_pb2_grpc
from warmpath_agent.llama_cpp_launch import resolve_model_file
from warmpath_agent.llama_cpp_process_driver import LlamaCppProcessDriver
from warmpath_agent.residents import ResidencyState
from warmpath_agent.sleep_api import PosixPageCache
from warmpath_agent.sleepers import WarmTier
from warmpath_cli.mesh import LocalMesh, MeshPorts, free_port
from warmpath_common.config import ModelSpec, ProcessDriverSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

KEEP_ALIVE = 60.0


async def test_gemma_sleeps_in_the_page_cache_and_its_reload_is_the_wake(tmp_path) -> None:
    gemma = ModelSpec.model_validate({**GEMMA, "keep_alive_seconds": KEEP_ALIVE})
    page_cache = PosixPageCache()
    # llama.cpp has no sleep endpoint: the server port is never called (no vLLM here).
    servers = FakeServerSleep()
    clock = Clock()
    low = free_port()
    settings = ProcessDriverSettings(port_range=(low, low + 20), log_dir=tmp_path)
    figures: dict[str, list[float]] = {"disk": [], "page cache": []}
    async with httpx.AsyncClient() as client:
        for _ in range(2):
            # Its wake counted as fast, so that the agent puts Gemma to sleep whatever
            # this shared machine's timings say; the figures are what is measured.
            tier = WarmTier(servers, page_cache, 600.0, timed_wakes={gemma.name: 0.001})
            driver = LlamaCppProcessDriver(settings, client)
            agent = manager(driver, gemma, clock=clock, warm_tier=tier)
            try:
                await page_cache.drop(gemma)  # out of the page cache: a load from disk
                cold = await agent.ensure_loaded(gemma.name, deadline_seconds=None)
                assert cold.cold_start
                assert not cold.woken
                figures["disk"].append(cold.load_seconds)

                clock.now += KEEP_ALIVE + 1
                await agent.expire_idle()
                (asleep,) = (await agent.state()).models
                assert asleep.state is ResidencyState.ASLEEP, "Gemma went to sleep, not away"
                assert asleep.running is None, "its server was stopped"
                assert asleep.asleep_bytes > 0, "the GGUF's size is booked in host RAM"

                woken = await agent.ensure_loaded(gemma.name, deadline_seconds=None)
                assert woken.woken
                assert woken.residency.wake_seconds > 0
                assert woken.residency.load_seconds == cold.residency.load_seconds, (
                    "a wake keeps the load from disk as the model's load time"
                )
                figures["page cache"].append(woken.load_seconds)
                running = woken.residency.running
                assert running is not None
                answer = await client.post(
                    f"{running.base_url}/v1/chat/completions",
                    json={
                        "model": running.served_model_id,
                        "messages": [{"role": "user", "content": "Hi"}],
                        "max_tokens": 2,
                    },
                    timeout=120,
                )
                assert answer.status_code == 200, "the woken server answers"
            finally:
                await agent.close()
    assert servers.sleeps == []
    assert servers.wakes == []
    figures["GGUF read after DONTNEED"] = [await _read_seconds(gemma, page_cache, drop=True)]
    figures["GGUF read cached"] = [await _read_seconds(gemma, page_cache, drop=False)]
    print(
        "\nGemma 3 270M (Q4_K_M GGUF) reload, real llama.cpp server: "
        + "; ".join(
            f"{where}: " + ", ".join(f"{seconds:.3f} s" for seconds in times)
            for where, times in figures.items()
        )
    )


async def _read_seconds(spec: ModelSpec, page_cache: PosixPageCache, *, drop: bool) -> float:
    """Seconds to read the whole GGUF, after dropping it from the page cache or not: what
    the disk itself costs here, beside the server's start-up."""
    if drop:
        await page_cache.drop(spec)
    else:
        await page_cache.keep(spec)
    return await asyncio.to_thread(_read, resolve_model_file(spec.source))


def _read(path: Path) -> float:
    started = time.monotonic()
    with path.open("rb") as file:
        while file.read(1 << 24):
            pass
    return time.monotonic() - started


def _warm_mesh_config(ports: MeshPorts) -> dict[str, object]:
    config = mesh_config(ports)
    config["agent"] = {
        "host": "local",
        "models": [GEMMA["name"]],
        "inventory": {
            "simulated": True,
            "gpus": [{"name": "Test GPU", "memory": "4GiB"}],
            "host_memory": "8GiB",
        },
        "warm_tier": {"enabled": True},
    }
    return config


def test_an_operator_puts_gemma_to_sleep_and_a_generate_wakes_it(tmp_path: Path) -> None:
    """Router, agent and adapter as real processes, Gemma under the real llama.cpp. The
    sleep is asked for (Unload with `sleep`): the agent's own choice would hang on this
    machine's timings, where Gemma's wake and load take about as long."""
    ports = MeshPorts.free()
    path = tmp_path / "warmpath.yaml"
    path.write_text(yaml.safe_dump(_warm_mesh_config(ports)))
    mesh = LocalMesh(config=path, log_dir=tmp_path / "logs", ports=ports)
    mesh.start()
    request = generate_pb2.GenerateRequest(model=GEMMA["name"], prompt="Hi", max_tokens=4)
    try:
        with (
            grpc.insecure_channel(ports.address("router")) as to_router,
            grpc.insecure_channel(ports.address("gpu-agent")) as to_agent,
        ):
            router = router_pb2_grpc.RouterStub(to_router)
            agent = gpu_agent_pb2_grpc.GpuAgentStub(to_agent)
            cold = list(router.Generate(request, timeout=300))[-1].route
            assert not cold.woken
            assert cold.load_description.startswith("cold load in ")

            # force: the router's lease from that request still runs (15 s).
            unload = gpu_agent_pb2.UnloadRequest(model=GEMMA["name"], force=True, sleep=True)
            asleep = agent.Unload(unload, timeout=60)
            assert asleep.unloaded and asleep.asleep
            state = agent.GetState(gpu_agent_pb2.GetStateRequest(), timeout=30)
            (gemma,) = [m for m in state.models if m.model == GEMMA["name"]]
            assert gemma.state == gpu_agent_pb2.RESIDENCY_STATE_ASLEEP

            def route_says_asleep() -> bool:
                decision = router.Route(router_pb2.RouteRequest(request=request), timeout=30)
                return decision.wake_required and "asleep in host RAM" in decision.explanation

            wait_until(route_says_asleep)
            woken = list(router.Generate(request, timeout=300))[-1].route
            assert woken.woken
            assert re.fullmatch(r"woken from sleep in \d+\.\d s", woken.load_description)
            print(f"\nGemma through the mesh: {cold.load_description}; {woken.load_description}")

            # Once more through the HTTP front door: its headers say it was woken.
            assert agent.Unload(unload, timeout=60).asleep
            wait_until(route_says_asleep)
            answer = httpx.post(
                f"http://127.0.0.1:{ports.http}/v1/chat/completions",
                json={
                    "model": GEMMA["name"],
                    "messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 4,
                },
                timeout=300,
            )
            assert answer.status_code == 200
            assert answer.headers["x-warmpath-woken"] == "true"
    finally:
        codes = mesh.stop()
    assert codes == {"router": 0, "backend-adapter": 0, "gpu-agent": 0}, codes
