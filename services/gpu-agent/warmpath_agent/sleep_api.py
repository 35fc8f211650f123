"""The warm tier's adapters: model servers' sleep and wake endpoints, and the page cache.

vLLM (sleep mode, a development-mode API): `POST /sleep?level=1` moves the weights to
host RAM and drops the KV cache, `POST /wake_up` brings them back; the server needs
`--enable-sleep-mode` and `VLLM_SERVER_DEV_MODE=1`. SGLang: `POST
/release_memory_occupation` and `POST /resume_memory_occupation`; the server needs
`--enable-memory-saver`. Only the agent calls these; Warmpath exposes none of them.
"""

from __future__ import annotations

import asyncio
import os

import httpx

from warmpath_agent.drivers import ModelLoadFailed, RunningModel
from warmpath_agent.llama_cpp_launch import resolve_model_file
from warmpath_agent.warm_tier import SleepFailed
from warmpath_common.config import BackendKindName, ModelSpec

__all__ = ["HttpServerSleep", "PosixPageCache", "sleep_mode_launch"]

_SLEEP = {
    BackendKindName.VLLM: ("/sleep", {"level": "1"}),
    BackendKindName.SGLANG: ("/release_memory_occupation", {}),
}
_WAKE = {
    BackendKindName.VLLM: "/wake_up",
    BackendKindName.SGLANG: "/resume_memory_occupation",
}


def sleep_mode_launch(backend: BackendKindName) -> tuple[tuple[str, ...], dict[str, str]]:
    """Server arguments and environment that enable its sleep endpoints."""
    if backend is BackendKindName.VLLM:
        return ("--enable-sleep-mode",), {"VLLM_SERVER_DEV_MODE": "1"}
    if backend is BackendKindName.SGLANG:
        return ("--enable-memory-saver",), {}
    return (), {}


class HttpServerSleep:
    """Calls a vLLM or SGLang server's sleep and wake endpoints."""

    def __init__(self, client: httpx.AsyncClient, timeout_seconds: float) -> None:
        self._client = client
        self._timeout = timeout_seconds

    async def sleep(self, backend: BackendKindName, running: RunningModel) -> None:
        if backend not in _SLEEP:
            raise SleepFailed(f"{backend.value} servers have no sleep endpoint")
        path, params = _SLEEP[backend]
        await self._post(running, path, params)

    async def wake(self, backend: BackendKindName, running: RunningModel) -> None:
        if backend not in _WAKE:
            raise SleepFailed(f"{backend.value} servers have no wake endpoint")
        await self._post(running, _WAKE[backend], {})

    async def is_sleeping(self, backend: BackendKindName, running: RunningModel) -> bool:
        if backend is not BackendKindName.VLLM:
            return False  # SGLang has no such endpoint
        url = running.base_url.rstrip("/") + "/is_sleeping"
        try:
            response = await self._client.get(url, timeout=self._timeout)
            return response.status_code == 200 and response.json().get("is_sleeping") is True
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            raise SleepFailed(
                f"GET /is_sleeping of {running.model}'s server failed: {error!r}"
            ) from error

    async def _post(self, running: RunningModel, path: str, params: dict[str, str]) -> None:
        url = running.base_url.rstrip("/") + path
        try:
            # SGLang reads a JSON body; vLLM ignores one.
            response = await self._client.post(url, params=params, json={}, timeout=self._timeout)
        except httpx.HTTPError as error:
            raise SleepFailed(
                f"POST {path} to {running.model}'s server failed: {error!r}"
            ) from error
        if response.status_code >= 400:
            raise SleepFailed(
                f"POST {path} to {running.model}'s server answered {response.status_code}: "
                f"{response.text[:200]} (was it started with its sleep mode enabled?)"
            )


class PosixPageCache:
    """Keeps a GGUF in the page cache (POSIX_FADV_WILLNEED) or drops it (DONTNEED)."""

    async def keep(self, spec: ModelSpec) -> int:
        return await asyncio.to_thread(_advise, spec, os.POSIX_FADV_WILLNEED)

    async def drop(self, spec: ModelSpec) -> None:
        await asyncio.to_thread(_advise, spec, os.POSIX_FADV_DONTNEED)


def _advise(spec: ModelSpec, advice: int) -> int:
    try:
        fd = os.open(resolve_model_file(spec.source), os.O_RDONLY)
    except (OSError, ModelLoadFailed) as error:
        raise SleepFailed(f"cannot open {spec.name}'s model file: {error}") from error
    try:
        os.posix_fadvise(fd, 0, 0, advice)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)
