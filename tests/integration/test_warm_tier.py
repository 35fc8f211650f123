"""llama.cpp's warm tier with the real server and the real Gemma weights: the agent stops
the server and keeps the GGUF in the page cache, and the next request's reload is the
wake. Measured against a reload after the GGUF was dropped from the page cache
(POSIX_FADV_DONTNEED, as an unload does). The figures are printed, never asserted: this
machine is shared and its timings are not ours to promise.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import GEMMA
from tests.fakes.sleep import FakeServerSleep
from tests.gpu_agent.test_residency import Clock, manager
from warmpath_agent.llama_cpp_launch import resolve_model_file
from warmpath_agent.llama_cpp_process_driver import LlamaCppProcessDriver
from warmpath_agent.residents import ResidencyState
from warmpath_agent.sleep_api import PosixPageCache
from warmpath_agent.sleepers import WarmTier
from warmpath_cli.mesh import free_port
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
