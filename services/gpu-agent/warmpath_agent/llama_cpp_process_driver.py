"""Runs each resident model as a llama.cpp server child process on this host.

The server is llama-cpp-python's OpenAI-compatible server. Readiness is its
`GET /v1/models`, which answers only once the weights are loaded; nothing is
ever generated to probe it. Once ready, the agent's periodic probe asks
`GET /docs` instead (`PROBE_PATH`): `/v1/models` takes the model's lock, which
a generation holds to its end, while `/docs` is answered by the HTTP loop alone,
so a busy server is never taken for a hung one (docs/hung-servers.md).

Lifetime. Each child runs in a session of its own, so a signal aimed at the
agent's process group (Ctrl-C in a terminal) reaches the agent alone, which
then decides. A graceful agent stop (SIGTERM, SIGINT) stops every child, unless
`keep_running_on_exit` is set. An agent that dies without stopping them (a
crash, SIGKILL) leaves them serving, and the next agent adopts them.

Records. For adoption each child is recorded in the state directory
(warmpath_agent.child_record); `stop` removes the record. On adoption the server
must also have been launched exactly as the config would launch it now (command
line and environment, the port apart: an operator who changed a model's context
length or chat format, or the driver's arguments, between a crash and the restart
gets a fresh server, not the stale one) and answer `/v1/models` with the model's
name. Records that fail any check are removed, and a server that is ours but fails
one is stopped. An adopted server is not this agent's child: it cannot be waited
for, so its exit is noticed by polling /proc, and the exit code is unknown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from warmpath_agent.child_record import (
    ChildRecord,
    live_record,
    record_path,
    safe_file_name,
    write_record,
)
from warmpath_agent.drivers import GpuPlacement, ModelLoadFailed, RunningModel, reachable_host
from warmpath_agent.inventory import GpuReading
from warmpath_agent.llama_cpp_launch import (
    SERVER_COMMAND,
    ServerLaunch,
    check_launched_as_now,
    placement_arguments,
    resolve_model_file,
)
from warmpath_agent.processes import process_start_time, stop_by_pid, stop_child
from warmpath_agent.readiness import poll_until_ready, served_model_ids
from warmpath_common.config import ModelSpec, ProcessDriverSettings, Runtime

__all__ = ["PROBE_PATH", "LlamaCppProcessDriver"]

logger = logging.getLogger(__name__)

_STOP_GRACE_SECONDS = 10.0
_KILL_WAIT_SECONDS = 5.0
PROBE_PATH = "/docs"
"""Answered without the model's lock: within milliseconds while a generation streams
(measured), where /v1/models waits for the generation to end."""


@dataclass
class _Child:
    pid: int
    port: int
    start_time: int | None
    process: asyncio.subprocess.Process | None
    """None for a server adopted from an earlier agent: not our child."""
    log: IO[bytes] | None
    record: Path | None


class LlamaCppProcessDriver:
    """One `python -m llama_cpp.server` child per resident model."""

    def __init__(
        self,
        settings: ProcessDriverSettings,
        client: httpx.AsyncClient,
        *,
        server_command: Sequence[str] = SERVER_COMMAND,
        poll_seconds: float = 1.0,
    ) -> None:
        self._settings = settings
        self._client = client
        self._server_command = tuple(server_command)
        self._poll_seconds = poll_seconds
        self._children: dict[str, _Child] = {}
        self._ports_in_use: set[int] = set()

    async def start(
        self, spec: ModelSpec, gpu: GpuReading, placement: GpuPlacement | None = None
    ) -> RunningModel:
        model_file = await asyncio.to_thread(resolve_model_file, spec.source)
        # A server that died on its own still holds its port and record here.
        await self._stop_child(spec.name)
        port = self._allocate_port()
        placement = placement or GpuPlacement.one(gpu)
        gpu_uuid = ",".join(placement.uuids)
        launch = self.launch(
            spec,
            model_file,
            port,
            gpu_uuid=gpu_uuid,
            simulated=gpu.simulated,
            placement_words=placement_arguments(placement, simulated=gpu.simulated),
        )
        log = self._open_log(spec.name)
        logger.info(
            "starting llama.cpp server for %s on port %d (GPU %s)", spec.name, port, gpu_uuid
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *launch.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log or asyncio.subprocess.DEVNULL,
                stderr=log or asyncio.subprocess.DEVNULL,
                env={**os.environ, **launch.env},
                # Out of the agent's process group: Ctrl-C meant for the agent
                # must not kill the servers behind its back (module docstring).
                start_new_session=True,
            )
        except BaseException:
            self._ports_in_use.discard(port)
            if log is not None:
                log.close()
            raise
        base_url = self._base_url(port)
        start_time = process_start_time(process.pid)
        child = _Child(process.pid, port, start_time, process, log, None)
        self._children[spec.name] = child
        if start_time is not None:
            # Before readiness: an agent that crashes mid-load leaves a server a
            # later agent can still adopt once it is ready.
            child.record = self._record(
                ChildRecord(
                    spec.name, process.pid, start_time, launch.command, port, base_url,
                    str(model_file), gpu_uuid, launch.env, gpu.simulated,
                )
            )  # fmt: skip
        running = RunningModel(
            model=spec.name,
            base_url=base_url,
            served_model_id=spec.name,
            pid=process.pid,
            runtime=Runtime.PROCESS,
            probe_url=self._local_url(port, PROBE_PATH),
        )
        try:
            await self._wait_ready(spec.name, port, lambda: _exit_reason(process))
        except BaseException:
            await self.stop(running)
            raise
        return running

    def launch(
        self,
        spec: ModelSpec,
        model_file: Path | str,
        port: int,
        *,
        gpu_uuid: str,
        simulated: bool,
        placement_words: tuple[str, ...] | None = None,
    ) -> ServerLaunch:
        """The one place a server's launch is decided: `start` runs it, and adoption
        compares a running server against it. `gpu_uuid`: the gang's UUIDs, comma
        separated; `placement_words`: placement_arguments (None: the whole model on
        one GPU)."""
        command = (
            *self._server_command,
            "--model", str(model_file),
            "--model_alias", spec.name,
            "--host", self._settings.bind_host,
            "--port", str(port),
            "--n_ctx", str(spec.context_length),
            *(
                placement_words
                if placement_words is not None
                # Offload every layer on a real GPU; a simulated one runs on the CPU.
                else ("--n_gpu_layers", "0" if simulated else "-1")
            ),
            # By default the server abandons the request it is streaming whenever
            # another arrives; requests must queue, not cut each other off.
            "--interrupt_requests", "False",
            *(("--chat_format", spec.chat_format) if spec.chat_format else ()),
            *self._settings.extra_args,
        )  # fmt: skip
        return ServerLaunch(command, {"CUDA_VISIBLE_DEVICES": "" if simulated else gpu_uuid})

    async def stop(self, running: RunningModel) -> None:
        await self._stop_child(running.model)

    async def close(self) -> None:
        if self._settings.keep_running_on_exit:
            # Their records stay: the next agent adopts them.
            if self._children:
                logger.info(
                    "leaving %d llama.cpp server(s) running for the next agent to adopt: %s",
                    len(self._children), ", ".join(sorted(self._children)),
                )  # fmt: skip
            for child in self._children.values():
                if child.log is not None:
                    child.log.close()
            self._children.clear()
            return
        for name in list(self._children):
            await self._stop_child(name)

    async def wait_exited(self, running: RunningModel) -> str:
        child = self._children.get(running.model)
        if child is None:
            return "not running"
        if child.process is not None:
            await child.process.wait()
            reason = f"llama.cpp server {_exit_reason(child.process)}"
        else:
            while process_start_time(child.pid) == child.start_time:
                if self._children.get(running.model) is not child:
                    break
                await asyncio.sleep(self._poll_seconds)
            if self._children.get(running.model) is not child:
                return "stopped by Warmpath"
            reason = _adopted_exit_reason(child.pid)
        self._reap(running.model, child)
        return reason

    async def check(self, running: RunningModel) -> str | None:
        child = self._children.get(running.model)
        if child is None or child.pid != running.pid:
            return "not running"
        if child.process is not None:
            exited = _exit_reason(child.process)
            if exited is None:
                return None
            reason = f"llama.cpp server {exited}"
        elif process_start_time(child.pid) == child.start_time:
            return None
        else:
            reason = _adopted_exit_reason(child.pid)
        self._reap(running.model, child)
        return reason

    def _reap(self, model: str, child: _Child) -> None:
        if self._children.get(model) is child:
            # It died on its own: nobody will call stop() for it.
            self._children.pop(model)
            self._release(child)

    # -- adoption --------------------------------------------------------

    async def adopt(
        self, specs: Mapping[str, ModelSpec] | None = None
    ) -> list[tuple[RunningModel, str]]:
        """Servers an earlier agent on this host started and left running, once each
        answers `/v1/models` with its model: (the model, the UUID of its GPU).

        With `specs` (the models this host serves), a server for a model not served
        by this runtime any more, or launched otherwise than the config would launch
        it now (another model file, context length, chat format, extra argument, bind
        host or GPU setting; the port may differ), is stopped.
        Records of processes that are gone are removed; servers that are ours but
        never answer within `startup_timeout_seconds` are stopped.
        """
        state_dir = self._settings.effective_state_dir
        if state_dir is None or not state_dir.is_dir():
            return []
        for partial in state_dir.glob("*.tmp"):
            partial.unlink(missing_ok=True)
        found = await asyncio.gather(
            *(self._adopt_one(path, specs) for path in sorted(state_dir.glob("*.json")))
        )
        return [adopted for adopted in found if adopted is not None]

    async def _adopt_one(
        self, path: Path, specs: Mapping[str, ModelSpec] | None
    ) -> tuple[RunningModel, str] | None:
        record = live_record(path)
        if record is None:
            return None
        if record.model in self._children or path != record_path(path.parent, record.model):
            # Written by hand or by another agent: not ours to judge or stop.
            logger.warning("ignoring process record %s: not this agent's", path.name)
            return None
        child = _Child(record.pid, record.port, record.start_time, None, None, path)
        self._children[record.model] = child
        self._ports_in_use.add(record.port)
        try:
            if specs is not None:
                await check_launched_as_now(
                    record, specs.get(record.model), self.launch, len(self._server_command)
                )
            await self._wait_ready(
                record.model,
                record.port,
                lambda: None if record.is_running() else "exited",
            )
        except ModelLoadFailed as error:
            logger.warning(
                "not adopting %s's server (pid %d): %s; stopping it",
                record.model,
                record.pid,
                error,
            )
            await self._stop_child(record.model)
            return None
        logger.info(
            "adopted the running llama.cpp server for %s (pid %d, port %d)",
            record.model, record.pid, record.port,
        )  # fmt: skip
        running = RunningModel(
            model=record.model,
            # Where peers reach it now: advertise_host may have changed while the
            # agent was down, and it is not part of the launch.
            base_url=self._base_url(record.port),
            served_model_id=record.model,
            pid=record.pid,
            runtime=Runtime.PROCESS,
            probe_url=self._local_url(record.port, PROBE_PATH),
        )
        return running, record.gpu_uuid

    # -- internals -------------------------------------------------------

    async def _stop_child(self, model: str) -> None:
        child = self._children.pop(model, None)
        if child is None:
            return
        try:
            if child.process is not None:
                await stop_child(model, child.process, _STOP_GRACE_SECONDS)
            elif child.start_time is not None:
                await stop_by_pid(
                    model, child.pid, child.start_time, _STOP_GRACE_SECONDS, _KILL_WAIT_SECONDS
                )
        finally:
            self._release(child)

    def _release(self, child: _Child) -> None:
        if child.record is not None:
            child.record.unlink(missing_ok=True)
        if child.log is not None:
            child.log.close()
        self._ports_in_use.discard(child.port)

    def _record(self, record: ChildRecord) -> Path | None:
        state_dir = self._settings.effective_state_dir
        if state_dir is None:
            return None
        try:
            return write_record(state_dir, record)
        except OSError as error:
            # The server works without it; only a later adoption is lost.
            logger.warning("cannot record %s's server in %s: %s", record.model, state_dir, error)
            return None

    async def _wait_ready(self, model: str, port: int, exited: Callable[[], str | None]) -> None:
        async def check_alive() -> None:
            reason = exited()
            if reason is not None:
                raise ModelLoadFailed(
                    f"llama.cpp server for {model} {reason} while loading{self._log_hint(model)}",
                    for_caller=f"its llama.cpp server {reason} while loading "
                    "(the gpu-agent's log says why)",
                )

        def serves_model(response: httpx.Response) -> bool:
            served = served_model_ids(response)
            if model not in served:
                raise ModelLoadFailed(
                    f"the server on port {port} serves {sorted(served)}, not {model}"
                )
            return True

        timeout = self._settings.startup_timeout_seconds
        url = self._local_url(port, "/v1/models")
        if await poll_until_ready(
            self._client, url, timeout, check_alive=check_alive, accept=serves_model
        ):
            return
        waited = f"was not ready after {timeout:g} s"
        raise ModelLoadFailed(
            f"llama.cpp server for {model} {waited}{self._log_hint(model)}",
            for_caller=f"its llama.cpp server {waited} (the gpu-agent's log says why)",
        )

    def _local_url(self, port: int, path: str) -> str:
        # On the bind address: the advertised name may not resolve here.
        return f"http://{reachable_host(self._settings.bind_host)}:{port}{path}"

    def _base_url(self, port: int) -> str:
        return f"http://{self._settings.advertise_host or self._settings.bind_host}:{port}"

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
        return (self._settings.log_dir / f"{safe_file_name(model)}.log").open("ab")

    def _log_hint(self, model: str) -> str:
        if self._settings.log_dir is None:
            return " (set agent.process.log_dir to keep its log)"
        return f" (see {self._settings.log_dir / (safe_file_name(model) + '.log')})"


def _adopted_exit_reason(pid: int) -> str:
    return (
        f"adopted llama.cpp server (pid {pid}) exited (not this agent's child: exit code unknown)"
    )


def _exit_reason(process: asyncio.subprocess.Process) -> str | None:
    if process.returncode is None:
        return None
    return f"exited with code {process.returncode}"
