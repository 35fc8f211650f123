"""The one readiness poll both model-server drivers use while a server loads: ask its
readiness endpoint until it answers 200, and stop early when the server died."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import httpx

__all__ = ["poll_until_ready", "served_model_ids"]

_POLL_SECONDS = 0.2
_REQUEST_TIMEOUT_SECONDS = 2.0


def _answered(response: httpx.Response) -> bool:
    return True


async def poll_until_ready(
    client: httpx.AsyncClient,
    url: str,
    timeout_seconds: float,
    *,
    check_alive: Callable[[], Awaitable[None]],
    accept: Callable[[httpx.Response], bool] = _answered,
) -> bool:
    """True once `url` answers 200 and `accept` takes the answer (it may raise to say the
    wrong server answered); False when `timeout_seconds` pass first. `check_alive` runs
    between polls and raises when the server died while loading. Never generates."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        await check_alive()
        with contextlib.suppress(httpx.HTTPError):
            response = await client.get(url, timeout=_REQUEST_TIMEOUT_SECONDS)
            if response.status_code == 200 and accept(response):
                return True
        await asyncio.sleep(_POLL_SECONDS)
    return False


def served_model_ids(response: httpx.Response) -> set[str]:
    """Model ids in an OpenAI `/v1/models` answer; empty if it is not one."""
    try:
        body = response.json()
    except ValueError:
        return set()
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return set()
    return {str(item["id"]) for item in data if isinstance(item, dict) and "id" in item}
