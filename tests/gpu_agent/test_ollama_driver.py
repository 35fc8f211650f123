"""The Ollama driver against a protocol-faithful stand-in (Ollama cannot be installed here)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import GEMMA
from tests.fakes.ollama_server import GB, OllamaStandIn, OllamaState
from warmpath_agent.drivers import ModelLoadFailed
from warmpath_agent.inventory import GpuReading, MemoryBook
from warmpath_agent.layouts import Layout
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.ollama_driver import OllamaDriver
from warmpath_agent.residency import ResidencyManager
from warmpath_agent.simulated_inventory import SimulatedInventory
from warmpath_common.config import ModelSpec, OllamaSettings, Runtime, SimulatedGpu

GPU = GpuReading(0, "GPU-x", "test", 8 * GB, 0, 8 * GB, simulated=False)


def spec(served_id: str) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            **GEMMA,
            "name": "llama",
            "backend": "ollama",
            "source": {"served_id": served_id},
            "memory": "2GiB",
            "chat_format": None,
        }
    )


@pytest.fixture
def ollama() -> Iterator[OllamaStandIn]:
    with OllamaStandIn() as server:
        yield server


def driver(url: str) -> OllamaDriver:
    return OllamaDriver(OllamaSettings(url=url, poll_seconds=0.05), httpx.AsyncClient())


async def test_preload_without_a_prompt_and_residency_from_ps(ollama: OllamaStandIn) -> None:
    running = await driver(ollama.url).start(spec("llama3.2"), GPU)
    assert running.runtime is Runtime.OLLAMA
    assert running.served_model_id == "llama3.2"
    assert running.memory_bytes == 2 * GB, "size_vram from /api/ps is the measurement"
    assert ollama.state.loads == 1
    assert ollama.state.generate_calls == 0, "loading must not generate"
    preload = ollama.state.bodies[0]
    assert "prompt" not in preload and preload["keep_alive"] == -1


async def test_unload_with_keep_alive_zero(ollama: OllamaStandIn) -> None:
    ours = driver(ollama.url)
    running = await ours.start(spec("llama3.2"), GPU)
    await ours.stop(running)
    assert ollama.state.loaded == {}
    assert ollama.state.bodies[-1] == {"model": "llama3.2", "keep_alive": 0, "stream": False}


async def test_a_model_unloaded_behind_our_back_is_noticed(ollama: OllamaStandIn) -> None:
    ours = driver(ollama.url)
    running = await ours.start(spec("llama3.2"), GPU)
    ollama.state.loaded.clear()
    assert "no longer lists" in await ours.wait_exited(running)


async def test_check_asks_ps_at_once_and_never_generates(ollama: OllamaStandIn) -> None:
    # A poll period of an hour: only check() can notice here.
    ours = OllamaDriver(OllamaSettings(url=ollama.url, poll_seconds=3600), httpx.AsyncClient())
    running = await ours.start(spec("llama3.2"), GPU)
    assert await ours.check(running) is None
    ollama.state.loaded.clear()
    assert "no longer lists" in (await ours.check(running) or "")
    gone = OllamaDriver(OllamaSettings(url="http://127.0.0.1:9"), httpx.AsyncClient())
    assert "stopped answering" in (await gone.check(running) or "")
    assert ollama.state.generate_calls == 0


async def test_unknown_and_unreachable_models_fail_clearly(ollama: OllamaStandIn) -> None:
    with pytest.raises(ModelLoadFailed, match="pull it first"):
        await driver(ollama.url).start(spec("mistral:7b"), GPU)
    with pytest.raises(ModelLoadFailed, match="unreachable"):
        await driver("http://127.0.0.1:9").start(spec("llama3.2"), GPU)


async def test_what_ollama_placed_in_host_ram_is_read_from_ps() -> None:
    with OllamaStandIn(OllamaState(vram_bytes=GB // 2)) as ollama:
        running = await driver(ollama.url).start(spec("llama3.2"), GPU)
    assert running.memory_bytes == GB // 2, "size_vram: the part on the GPU"
    assert running.host_bytes == 2 * GB - GB // 2, "size - size_vram: the part in host RAM"


async def test_the_residency_says_ollama_offloaded_part_of_the_model() -> None:
    book = MemoryBook()
    with OllamaStandIn(OllamaState(vram_bytes=GB // 2)) as ollama:
        agent = ResidencyManager(
            "host-a",
            {"llama": spec("llama3.2")},
            SimulatedInventory((SimulatedGpu(memory=4 * GB),), book),
            driver(ollama.url),
            book=book,
            estimate_bytes=lambda s: int(s.memory or 0),
            metrics=AgentMetrics(CollectorRegistry()),
        )
        loaded = (await agent.ensure_loaded("llama")).residency
    assert loaded.layout is Layout.OFFLOAD
    assert loaded.host_bytes == 2 * GB - GB // 2
    assert "layers offloaded to host RAM" in loaded.description
    assert "the server placed 1536 MiB of the model in host RAM" in loaded.placement_reason
    assert book.host_booked_bytes() == loaded.host_bytes
