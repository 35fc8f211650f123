"""The warm tier against a real vLLM on a real NVIDIA host (skipped elsewhere).

What runs: a vLLM server started with the flags the agent gives it
(sleep_api.sleep_mode_launch), put to sleep and woken through the agent's own adapter
(HttpServerSleep), with its GPU memory read through NVML (NvmlInventory) before the
sleep, asleep and awake, and the wake timed. Needs pynvml and a GPU, vLLM installed,
and WARMPATH_VLLM_MODEL naming a model vLLM can load without a download (a local path).
Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import eventually, nvml_or_skip
from warmpath_agent.drivers import RunningModel
from warmpath_agent.nvml import NvmlInventory
from warmpath_agent.sleep_api import HttpServerSleep, sleep_mode_launch
from warmpath_cli.mesh import free_port
from warmpath_common.config import BackendKindName

pynvml = nvml_or_skip()
pytest.importorskip("vllm")
MODEL = os.environ.get("WARMPATH_VLLM_MODEL")
if not MODEL:
    pytest.skip("set WARMPATH_VLLM_MODEL to a local model path for vLLM", allow_module_level=True)

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(900)]
MIB = 1024 * 1024


@pytest.fixture
def vllm_server() -> Iterator[tuple[str, int]]:
    """A vLLM server with its sleep mode on: (its base URL, its pid)."""
    port = free_port()
    flags, environment = sleep_mode_launch(BackendKindName.VLLM)
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL)]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--gpu-memory-utilization", "0.5", *flags],
        env={**os.environ, **environment},
    )
    try:
        yield f"http://127.0.0.1:{port}", server.pid
    finally:
        server.terminate()
        server.wait(timeout=60)


async def test_a_real_vllm_sleeps_off_its_gpu_and_wakes_through_the_agents_adapter(
    vllm_server: tuple[str, int],
) -> None:
    url, pid = vllm_server
    inventory = NvmlInventory(pynvml)
    running = RunningModel("vllm", url, str(MODEL), pid)

    async def on_gpu() -> int:
        return sum((await inventory.process_memory(pid)).values())

    async with httpx.AsyncClient() as client:

        async def ready() -> bool:
            try:
                return (await client.get(f"{url}/health", timeout=5)).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout=600, interval=2)
        sleeper = HttpServerSleep(client, timeout_seconds=120)
        awake = await on_gpu()
        await sleeper.sleep(BackendKindName.VLLM, running)
        asleep = await on_gpu()
        assert (await client.get(f"{url}/is_sleeping")).json()["is_sleeping"]
        started = time.monotonic()
        await sleeper.wake(BackendKindName.VLLM, running)
        wake = time.monotonic() - started
        assert not (await client.get(f"{url}/is_sleeping")).json()["is_sleeping"]
        answer = await client.post(
            f"{url}/v1/chat/completions",
            json={"model": str(MODEL), "messages": [{"role": "user", "content": "Hi"}]},
            timeout=120,
        )
        assert answer.status_code == 200
    print(
        f"\nvLLM {MODEL}: GPU memory awake {awake / MIB:.0f} MiB, asleep {asleep / MIB:.0f} MiB, "
        f"woken in {wake:.2f} s"
    )
    assert asleep < awake, "sleep level 1 frees the weights' and the KV cache's GPU memory"
