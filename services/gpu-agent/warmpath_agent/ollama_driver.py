"""Models served by an Ollama server that already runs on this host.

Residency is what Ollama's `GET /api/ps` lists. A model is preloaded with
`POST /api/generate` carrying only the model and `keep_alive: -1` (Ollama's
documented way to load without generating: there is no prompt), and
unloaded with `keep_alive: 0`. Warmpath, not Ollama, decides when a model
leaves, so preloads ask Ollama to keep it indefinitely. Nothing here ever
sends a prompt: readiness and liveness come from /api/ps and /api/version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx

from warmpath_agent.drivers import GpuPlacement, ModelLoadFailed, RunningModel
from warmpath_agent.inventory import GpuReading
from warmpath_common.config import ModelSpec, OllamaSettings, Runtime

__all__ = ["OllamaDriver"]

logger = logging.getLogger(__name__)

_READINESS_POLL_SECONDS = 0.2


def _canonical(name: str) -> str:
    """Ollama lists `llama3.2` as `llama3.2:latest`."""
    return name if ":" in name else f"{name}:latest"


class OllamaDriver:
    def __init__(self, settings: OllamaSettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        self._url = settings.url.rstrip("/")
        self._stopping: set[str] = set()

    async def start(
        self, spec: ModelSpec, gpu: GpuReading, placement: GpuPlacement | None = None
    ) -> RunningModel:
        served_id = spec.source.served_id
        if served_id is None:
            raise ModelLoadFailed(f"{spec.name}: runtime ollama needs source.served_id")
        logger.info("preloading %s in Ollama at %s", served_id, self._url)
        try:
            response = await self._client.post(
                f"{self._url}/api/generate",
                json={"model": served_id, "keep_alive": -1, "stream": False},
                timeout=self._settings.load_timeout_seconds,
            )
        except httpx.HTTPError as error:
            raise ModelLoadFailed(f"Ollama at {self._url} is unreachable: {error}") from error
        if response.status_code == 404:
            raise ModelLoadFailed(
                f"Ollama at {self._url} has no model {served_id!r} (pull it first)"
            )
        if response.status_code >= 400:
            raise ModelLoadFailed(
                f"Ollama refused to load {served_id!r} (HTTP {response.status_code})"
            )
        listed = await self._wait_listed(served_id, spec.name)
        # What Ollama really placed: size_vram on GPUs, the rest of size in host RAM.
        size, vram = int(listed.get("size") or 0), int(listed.get("size_vram") or 0)
        return RunningModel(
            model=spec.name,
            base_url=self._url,
            served_model_id=served_id,
            pid=None,
            runtime=Runtime.OLLAMA,
            memory_bytes=vram or None,
            host_bytes=(size - vram) if size > vram else None,
            # Answered while Ollama generates: a hung Ollama fails it, a busy one not.
            probe_url=f"{self._url}/api/version",
        )

    async def stop(self, running: RunningModel) -> None:
        self._stopping.add(running.model)
        try:
            with contextlib.suppress(httpx.HTTPError):
                await self._client.post(
                    f"{self._url}/api/generate",
                    json={"model": running.served_model_id, "keep_alive": 0, "stream": False},
                    timeout=self._settings.load_timeout_seconds,
                )
        finally:
            self._stopping.discard(running.model)

    async def wait_exited(self, running: RunningModel) -> str:
        """Returns when Ollama stops listing the model, or stops answering."""
        while True:
            await asyncio.sleep(self._settings.poll_seconds)
            reason = await self.check(running)
            if reason is not None:
                return reason

    async def check(self, running: RunningModel) -> str | None:
        if running.model in self._stopping:
            return "unloaded by Warmpath"
        try:
            listed = await self._listed(running.served_model_id)
        except httpx.HTTPError as error:
            return f"Ollama at {self._url} stopped answering: {type(error).__name__}"
        if listed is None:
            return "Ollama no longer lists the model (unloaded outside Warmpath)"
        return None

    async def close(self) -> None:
        # Models stay in Ollama, which outlives the agent; the agent's next
        # start finds them through /api/ps.
        return

    async def _wait_listed(self, served_id: str, model: str) -> dict[str, Any]:
        deadline = time.monotonic() + self._settings.load_timeout_seconds
        while time.monotonic() < deadline:
            try:
                listed = await self._listed(served_id)
            except httpx.HTTPError as error:
                raise ModelLoadFailed(
                    f"Ollama at {self._url} stopped answering: {error}"
                ) from error
            if listed is not None:
                return listed
            await asyncio.sleep(_READINESS_POLL_SECONDS)
        raise ModelLoadFailed(f"Ollama never listed {model} as loaded")

    async def _listed(self, served_id: str) -> dict[str, Any] | None:
        response = await self._client.get(f"{self._url}/api/ps", timeout=10)
        response.raise_for_status()
        wanted = _canonical(served_id)
        for entry in response.json().get("models", []):
            if _canonical(str(entry.get("model") or entry.get("name") or "")) == wanted:
                return dict(entry)
        return None
