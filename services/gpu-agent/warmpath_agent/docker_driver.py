"""Runs each resident model as a container on the local Docker engine (Docker SDK).

Ownership: see warmpath_agent.docker_container (labels, names, create arguments).

Addressing. Without `agent.docker.network` the container port is published on
`publish_host` with an ephemeral host port, and the model is reached at
`http://<advertise_host or publish_host>:<host port>` (the agent runs on the
host). With a network, the container joins it and publishes nothing; it is
reached by container name, `http://<container name>:<port>`, from services on
that network (the agent and backend-adapter in compose). Readiness is probed
on the published port, or on the container's address on that network.

Lifetime. `stop` stops (with `stop_timeout_seconds` of grace) and removes.
`close` leaves containers running on purpose: a restarted agent adopts them
(`adopt`) without reloading the weights. To remove them all, stop the agent
and `docker rm -f $(docker ps -aq --filter label=warmpath.owner=<host>)`.
Containers get no restart policy: a model server that dies is reported
failed to the residency manager, which decides whether to load it again.

Every SDK call blocks, so each runs in a worker thread (`asyncio.to_thread`).
Crash detection polls the container's state rather than blocking in
`container.wait()`, whose thread could not be cancelled on agent shutdown.
A container can outlive its server (a shell or supervisor as its main
process), so the readiness path is asked too: by a caller's `check`
(EnsureLoaded with verify) at once, and by the watcher every
`liveness_seconds`. Only a refused or dropped connection counts as down there,
never a slow answer, since a server busy generating may answer late but is not
dead; a container found so is removed, so that it frees its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import docker.errors
import httpx
from docker.models.containers import Container

from warmpath_agent.docker_container import (
    ALIVE,
    GPU_LABEL,
    MODEL_LABEL,
    OWNER_LABEL,
    PORT_LABEL,
    SERVED_ID_LABEL,
    create_arguments,
    exit_reason,
    exited_while_loading,
    force_remove,
    log_tail,
    readiness_path,
)
from warmpath_agent.drivers import GpuPlacement, ModelLoadFailed, RunningModel, reachable_host
from warmpath_agent.inventory import GpuReading
from warmpath_agent.readiness import poll_until_ready
from warmpath_common.config import DockerSettings, ModelSpec, Runtime

__all__ = ["DockerDriver"]

logger = logging.getLogger(__name__)

_CHECK_TIMEOUT_SECONDS = 2.0
_CHECK_PAUSE_SECONDS = 0.2
_CHECK_ATTEMPTS = 2
"""A pooled connection the server closed can fail once on its own; two refusals
in a row are the server."""
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Address:
    base_url: str
    """Where the backend-adapter reaches the model."""
    probe_url: str
    """Where this agent reaches it, for readiness (no path)."""


class DockerDriver:
    """One container per resident model; see the module docstring for the rules."""

    def __init__(
        self,
        settings: DockerSettings,
        client: docker.DockerClient,
        owner: str,
        http: httpx.AsyncClient,
        *,
        poll_seconds: float = 1.0,
        liveness_seconds: float = 10.0,
        sleep_mode: bool = False,
    ) -> None:
        self._sleep_mode = sleep_mode
        self._settings = settings
        self._client = client
        self._owner = owner
        self._http = http
        self._poll_seconds = poll_seconds
        self._liveness_seconds = liveness_seconds
        self._containers: dict[str, str] = {}
        """Model name -> id of the container serving it (started or adopted)."""
        self._readiness_urls: dict[str, str] = {}
        """Container id -> where this agent asks it whether it answers."""
        self._stopping: set[str] = set()

    # -- ModelDriver -----------------------------------------------------

    async def start(
        self, spec: ModelSpec, gpu: GpuReading, placement: GpuPlacement | None = None
    ) -> RunningModel:
        if spec.container is None:
            raise ModelLoadFailed(f"{spec.name}: runtime docker needs a container section")
        arguments = create_arguments(
            self._settings,
            self._owner,
            spec,
            spec.container,
            gpu,
            placement,
            sleep_mode=self._sleep_mode,
        )
        name = arguments["name"]
        await self._run(self._require_image, spec.container.image, spec.name)
        await self._run(self._clear_name, name, spec.name)
        logger.info(
            "starting container %s (%s) for %s on GPU %s",
            name, spec.container.image, spec.name, arguments["labels"][GPU_LABEL],
        )  # fmt: skip
        container = await self._run(self._create_and_start, arguments)
        self._containers[spec.name] = container.id
        try:
            address = await self._run(self._address, container)
            running = self._running(spec.name, address, container)
            await self._wait_ready(spec.name, container, address)
        except BaseException:
            await self._remove(spec.name, container.id)
            raise
        return running

    async def stop(self, running: RunningModel) -> None:
        container_id = self._containers.get(running.model)
        if container_id is None:
            return
        self._stopping.add(running.model)
        try:
            await self._remove(running.model, container_id)
        finally:
            self._stopping.discard(running.model)

    async def wait_exited(self, running: RunningModel) -> str:
        watched = self._containers.get(running.model)
        asked_at = time.monotonic()
        while True:
            reason = await self._check(running.model, watched)
            if reason is None and time.monotonic() - asked_at >= self._liveness_seconds:
                asked_at = time.monotonic()
                reason = await self._check_server(running.model, watched)
            if reason is not None:
                return reason
            await asyncio.sleep(self._poll_seconds)

    async def check(self, running: RunningModel) -> str | None:
        container_id = self._containers.get(running.model)
        reason = await self._check(running.model, container_id)
        if reason is None:
            reason = await self._check_server(running.model, container_id)
        return reason

    async def _check_server(self, model: str, container_id: str | None) -> str | None:
        """None unless nothing accepts connections at the running container's
        readiness path; then the container is removed, and why is returned."""
        url = self._readiness_urls.get(container_id or "")
        if container_id is None or url is None:
            return None
        reason = await self._refused(url)
        if reason is not None:
            # The container would otherwise go on holding its GPU memory, and its
            # name, from the replacement the manager starts next.
            await self._remove(model, container_id)
        return reason

    async def _refused(self, url: str) -> str | None:
        """Why nothing serves `url`, if no connection to it can be made; None if
        anything answers, whatever its status, or it is only slow."""
        refusal: httpx.HTTPError | None = None
        for attempt in range(_CHECK_ATTEMPTS):
            if attempt:
                await asyncio.sleep(_CHECK_PAUSE_SECONDS)
            try:
                await self._http.get(url, timeout=_CHECK_TIMEOUT_SECONDS)
                return None
            except httpx.TimeoutException:
                return None
            except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
                refusal = error
        return (
            f"container running, but nothing serves {url} "
            f"({type(refusal).__name__}: {refusal or 'no answer'})"
        )

    async def _check(self, model: str, container_id: str | None) -> str | None:
        """None while `container_id` still serves `model` and is alive."""
        if (
            container_id is None
            or self._containers.get(model) != container_id
            or model in self._stopping
        ):
            return "stopped by Warmpath"
        try:
            container = await asyncio.to_thread(self._client.containers.get, container_id)
        except docker.errors.NotFound:
            return "container removed outside Warmpath"
        except docker.errors.DockerException as error:
            return f"Docker engine stopped answering: {error}"
        if container.status not in (*ALIVE, "paused"):
            return exit_reason(container)
        return None

    async def close(self) -> None:
        # Containers keep running: the next agent on this host adopts them
        # instead of reloading the weights (see the module docstring).
        if self._containers:
            logger.info(
                "leaving %d model container(s) running for the next agent to adopt: %s",
                len(self._containers), ", ".join(sorted(self._containers)),
            )  # fmt: skip
        self._containers.clear()
        self._readiness_urls.clear()

    # -- adoption --------------------------------------------------------

    async def adopt(self) -> list[tuple[RunningModel, str]]:
        """Running containers this owner started earlier, once each answers its
        readiness path: (the model, the UUID of the GPU it was started on).

        Owned containers that exited are removed; owned ones that never become
        ready within `startup_timeout_seconds` are stopped and removed too.
        """
        containers = await self._run(self._owned_containers)
        adopted = await asyncio.gather(*(self._adopt_one(c) for c in containers))
        return [found for found in adopted if found is not None]

    async def _adopt_one(self, container: Container) -> tuple[RunningModel, str] | None:
        labels = container.labels
        model = labels.get(MODEL_LABEL)
        if not model or container.status != "running" or model in self._containers:
            logger.info(
                "removing stale model container %s (%s, model %r)",
                container.name, container.status, model,
            )  # fmt: skip
            await self._run(force_remove, container)
            return None
        self._containers[model] = container.id
        try:
            address = await self._run(self._address, container)
            await self._wait_ready(model, container, address)
        except ModelLoadFailed as error:
            logger.warning("not adopting %s: %s", container.name, error)
            await self._remove(model, container.id)
            return None
        logger.info("adopted running container %s for %s", container.name, model)
        return self._running(model, address, container), labels.get(GPU_LABEL, "")

    # -- internals -------------------------------------------------------

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        """A blocking SDK call in a thread, engine errors as ModelLoadFailed."""
        try:
            return await asyncio.to_thread(function, *args)
        except docker.errors.DockerException as error:
            raise ModelLoadFailed(f"Docker engine error: {error}") from error

    def _require_image(self, image: str, model: str) -> None:
        try:
            self._client.images.get(image)
        except docker.errors.ImageNotFound:
            raise ModelLoadFailed(
                f"{model}: image {image!r} is not on this host (the agent never pulls; "
                "build or load it first)"
            ) from None

    def _clear_name(self, name: str, model: str) -> None:
        """Removes an owned leftover holding `name`; refuses to touch anyone else's."""
        try:
            existing = self._client.containers.get(name)
        except docker.errors.NotFound:
            return
        if existing.labels.get(OWNER_LABEL) != self._owner:
            raise ModelLoadFailed(
                f"{model}: a container named {name} exists that this agent does not own "
                f"(no {OWNER_LABEL}={self._owner} label); not touching it"
            )
        logger.info("removing leftover container %s (%s) for %s", name, existing.status, model)
        force_remove(existing)

    def _create_and_start(self, arguments: dict[str, Any]) -> Container:
        container: Container = self._client.containers.create(**arguments)
        try:
            container.start()
            container.reload()
        except BaseException:
            force_remove(container)
            raise
        return container

    def _owned_containers(self) -> list[Container]:
        found: list[Container] = self._client.containers.list(
            all=True, filters={"label": f"{OWNER_LABEL}={self._owner}"}
        )
        return found

    def _address(self, container: Container) -> _Address:
        container.reload()
        if container.status not in ALIVE:
            raise exited_while_loading(container)
        port = int(container.labels.get(PORT_LABEL, "0"))
        settings = container.attrs.get("NetworkSettings") or {}
        networks = settings.get("Networks") or {}
        if self._settings.network is not None and self._settings.network in networks:
            ip = networks[self._settings.network].get("IPAddress")
            if ip:
                return _Address(f"http://{container.name}:{port}", f"http://{ip}:{port}")
        for binding in (settings.get("Ports") or {}).get(f"{port}/tcp") or ():
            host_port = binding.get("HostPort")
            if host_port:
                advertised = self._settings.advertise_host or self._settings.publish_host
                return _Address(
                    f"http://{advertised}:{host_port}",
                    f"http://{reachable_host(self._settings.publish_host)}:{host_port}",
                )
        where = (
            f"is not attached to network {self._settings.network}"
            if self._settings.network
            else f"publishes no host port for {port}/tcp"
        )
        raise ModelLoadFailed(f"container {container.name} {where}")

    def _running(self, model: str, address: _Address, container: Container) -> RunningModel:
        pid = int((container.attrs.get("State") or {}).get("Pid") or 0)
        return RunningModel(
            model=model,
            base_url=address.base_url,
            served_model_id=container.labels.get(SERVED_ID_LABEL) or model,
            # The server's host PID when it is the container's main process,
            # so NVML's per-process memory can be read for it.
            pid=pid or None,
            runtime=Runtime.DOCKER,
            probe_url=address.probe_url + readiness_path(container),
        )

    async def _wait_ready(self, model: str, container: Container, address: _Address) -> None:
        path = readiness_path(container)
        url = address.probe_url + path
        self._readiness_urls[container.id] = url

        async def check_alive() -> None:
            await self._run(container.reload)
            if container.status not in ALIVE:
                raise await self._run(exited_while_loading, container)

        timeout = self._settings.startup_timeout_seconds
        if await poll_until_ready(self._http, url, timeout, check_alive=check_alive):
            return
        raise ModelLoadFailed(
            f"container {container.name} for {model} did not answer {path} within "
            f"{timeout:g} s; last log lines:\n"
            f"{await self._run(log_tail, container)}"
        )

    async def _remove(self, model: str, container_id: str) -> None:
        """Stops with grace, then removes. Idempotent; only ever given owned ids."""
        if self._containers.get(model) == container_id:
            del self._containers[model]
        self._readiness_urls.pop(container_id, None)
        try:
            await asyncio.to_thread(self._stop_and_remove, container_id)
        except docker.errors.DockerException as error:
            logger.warning("could not remove container %s of %s: %s", container_id, model, error)

    def _stop_and_remove(self, container_id: str) -> None:
        try:
            container = self._client.containers.get(container_id)
        except docker.errors.NotFound:
            return
        if container.labels.get(OWNER_LABEL) != self._owner:
            logger.error("refusing to remove container %s: not owned by this agent", container_id)
            return
        with contextlib.suppress(docker.errors.NotFound):
            container.stop(timeout=math.ceil(self._settings.stop_timeout_seconds))
        force_remove(container)
