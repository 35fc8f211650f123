"""gpu-agent entry point: read config, open NVML or the simulated inventory, serve."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Annotated

import docker
import docker.errors
import httpx
import pynvml
import typer
from prometheus_client import CollectorRegistry

from warmpath.v1 import gpu_agent_pb2, gpu_agent_pb2_grpc
from warmpath_agent.capacity import capacity_problems, shape_for
from warmpath_agent.docker_driver import DockerDriver
from warmpath_agent.drivers import DriverSet, ModelDriver, ModelLoadFailed
from warmpath_agent.footprint import NotAGgufFile, estimate_footprint
from warmpath_agent.host_memory import DeclaredHostMemory, LiveHostMemory
from warmpath_agent.inventory import GpuInventory, HostMemory, MemoryBook
from warmpath_agent.layouts import ModelShape
from warmpath_agent.llama_cpp_launch import resolve_model_file
from warmpath_agent.llama_cpp_process_driver import LlamaCppProcessDriver
from warmpath_agent.measurement import ASSUMED_SERVER_LAYERS
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.nvml import NvmlInventory
from warmpath_agent.ollama_driver import OllamaDriver
from warmpath_agent.residency import ResidencyManager
from warmpath_agent.server_probe import HttpServerProbe
from warmpath_agent.server_watch import ServerWatch
from warmpath_agent.servicer import GpuAgentServicer
from warmpath_agent.simulated_inventory import SimulatedInventory
from warmpath_agent.sleep_api import HttpServerSleep, PosixPageCache
from warmpath_agent.sleepers import WarmTier
from warmpath_common.config import (
    AgentSettings,
    ConfigError,
    ModelSpec,
    Runtime,
    WarmpathConfig,
    WarmTierSettings,
    load_config,
    with_overrides,
)
from warmpath_common.entrypoint import ConfigOption, LogLevelOption, run_service
from warmpath_common.grpc_server import ServiceServer, create_server, serve_until_signalled
from warmpath_common.metrics import serve_metrics
from warmpath_common.security import PeerIdentityGuard

__all__ = ["gpu_health_name", "main", "observe_gpus", "open_docker"]

logger = logging.getLogger(__name__)

SERVICE_NAME = gpu_agent_pb2.DESCRIPTOR.services_by_name["GpuAgent"].full_name
_EXPIRY_CHECK_SECONDS = 5.0


def open_inventory(settings: AgentSettings, book: MemoryBook) -> GpuInventory:
    if settings.inventory.simulated:
        logger.warning(
            "using a SIMULATED GPU inventory declared in config (%d GPU(s)); "
            "every state message says simulated",
            len(settings.inventory.gpus),
        )
        return SimulatedInventory(settings.inventory.gpus, book)
    try:
        pynvml.nvmlInit()
    except Exception as error:
        raise ConfigError(
            f"agent.inventory: NVML is not available on this host ({error}). "
            "On a host without NVIDIA GPUs declare a simulated inventory: "
            "agent.inventory.simulated: true with a gpus list."
        ) from error
    return NvmlInventory(pynvml)


def estimate_bytes(spec: ModelSpec) -> int:
    """Configured memory, else an estimate from the GGUF file (see footprint.py)."""
    if spec.memory is not None:
        return int(spec.memory)
    try:
        return estimate_footprint(resolve_model_file(spec.source), spec.context_length).total_bytes
    except NotAGgufFile as error:
        raise ModelLoadFailed(
            f"cannot estimate {spec.name}'s memory ({error}); set its memory"
        ) from error


def estimate_shape(spec: ModelSpec) -> ModelShape:
    """A model's layers and their sizes, for splits and offload (footprint.py)."""
    if spec.source.served_id is not None:
        if spec.memory is None or not spec.splits_by_layer:
            raise ModelLoadFailed("no model file to read its layers from")
        total = int(spec.memory)
        # No file here to read its layers from (Ollama): equal layers are assumed, with a
        # tenth of the model needed on every GPU; Ollama decides the real split and
        # offload itself, and the agent reads what it placed (/api/ps).
        per_layer = total * 9 // 10 // ASSUMED_SERVER_LAYERS
        return ModelShape(total, ASSUMED_SERVER_LAYERS, per_layer, page_cache_bytes=total)
    try:
        estimate = estimate_footprint(resolve_model_file(spec.source), spec.context_length)
    except (NotAGgufFile, OSError) as error:
        raise ModelLoadFailed(f"cannot read {spec.name}'s layers ({error})") from error
    return ModelShape(
        estimate.total_bytes,
        estimate.layers,
        estimate.layer_bytes,
        page_cache_bytes=estimate.weights_bytes,
    )


def open_warm_tier(settings: WarmTierSettings, client: httpx.AsyncClient) -> WarmTier | None:
    if not settings.enabled:
        return None
    return WarmTier(
        HttpServerSleep(client, settings.call_timeout_seconds),
        PosixPageCache(),
        settings.asleep_keep_alive_seconds,
    )


def open_host_memory(settings: AgentSettings, book: MemoryBook) -> HostMemory:
    declared = settings.inventory.host_memory
    if declared is not None:
        return DeclaredHostMemory(int(declared), book)
    return LiveHostMemory(book)


async def check_capacity(
    config: WarmpathConfig,
    specs: Mapping[str, ModelSpec],
    inventory: GpuInventory,
    host_memory: HostMemory,
) -> None:
    """Refuses to start when a served model fits nowhere on this host (capacity.py)."""
    shapes = {}
    for position, spec in enumerate(config.models):
        if spec.name not in specs:
            continue
        try:
            need = await asyncio.to_thread(estimate_bytes, spec)
        except ModelLoadFailed as error:
            logger.warning("cannot check that %s fits this host: %s", spec.name, error)
            continue
        try:
            layers: ModelShape | None = await asyncio.to_thread(estimate_shape, spec)
        except ModelLoadFailed:
            layers = None
        shapes[spec.name] = (f"models.{position}", shape_for(spec, need, layers))
    problems = list(
        capacity_problems(shapes, await inventory.read(), await host_memory.available_bytes())
    )
    if problems:
        raise ConfigError(
            f"agent {config.agent.host}: models that cannot be served on this host:\n  - "
            + "\n  - ".join(problems)
        )


@contextlib.asynccontextmanager
async def open_docker(specs: Mapping[str, ModelSpec]) -> AsyncIterator[docker.DockerClient | None]:
    """The Docker engine, only where a served model has runtime docker."""
    models = sorted(n for n, s in specs.items() if s.effective_runtime is Runtime.DOCKER)
    if not models:
        yield None
        return
    try:
        client = await asyncio.to_thread(docker.from_env)
    except docker.errors.DockerException as error:
        raise ConfigError(
            f"agent.docker: {', '.join(models)} run in Docker (runtime docker), but no Docker "
            f"engine answers ({error}). Start dockerd or set DOCKER_HOST, or leave these "
            "models out of agent.models on this host."
        ) from error
    try:
        yield client
    finally:
        client.close()


async def serve(config: WarmpathConfig, settings: AgentSettings) -> None:
    served = settings.models or tuple(spec.name for spec in config.models)
    specs = {name: config.model(name) for name in served}
    book = MemoryBook()
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    async with httpx.AsyncClient() as client, open_docker(specs) as docker_client:
        processes = LlamaCppProcessDriver(settings.process, client)
        drivers: dict[Runtime, ModelDriver] = {
            Runtime.PROCESS: processes,
            Runtime.OLLAMA: OllamaDriver(settings.ollama, client),
        }
        containers = None
        if docker_client is not None:
            containers = DockerDriver(
                settings.docker,
                docker_client,
                settings.host,
                client,
                sleep_mode=settings.warm_tier.enabled,
            )
            drivers[Runtime.DOCKER] = containers
        inventory = open_inventory(settings, book)
        host_memory = open_host_memory(settings, book)
        await check_capacity(config, specs, inventory, host_memory)
        manager = ResidencyManager(
            settings.host,
            specs,
            inventory,
            DriverSet(drivers),
            book=book,
            estimate_bytes=estimate_bytes,
            metrics=metrics,
            min_residency_seconds=settings.min_residency_seconds,
            estimate_shape=estimate_shape,
            host_memory=host_memory,
            warm_tier=open_warm_tier(settings.warm_tier, client),
        )
        # Before serving and before pinned loads: a model whose server survived
        # the last agent is ready now, not loaded a second time.
        try:
            found = await processes.adopt(specs)
        except OSError as error:
            logger.error("could not read the llama.cpp server records: %s", error)
            found = []
        adopted = set(await manager.adopt(found))
        for running, _ in found:
            if running.model not in adopted:
                # Unbooked, it would hold memory the placement cannot see.
                await processes.stop(running)
        if containers is not None:
            try:
                await manager.adopt(await containers.adopt())
            except ModelLoadFailed as error:
                logger.error("could not adopt running model containers: %s", error)
        servicer = GpuAgentServicer(
            manager,
            {name: spec.backend for name, spec in specs.items()},
            settings.heartbeat_seconds,
        )
        if settings.metrics_listen:
            serve_metrics(settings.metrics_listen, registry, "agent.metrics_listen")
        server = await create_server(
            settings.listen,
            lambda s: gpu_agent_pb2_grpc.add_GpuAgentServicer_to_server(servicer, s),
            [SERVICE_NAME],
            registry,
            tls=settings.tls,
            section="agent",
            guards=(
                [
                    PeerIdentityGuard(
                        config.security.router_identities,
                        ["/warmpath.v1.GpuAgent/EnsureLoaded", "/warmpath.v1.GpuAgent/Unload"],
                    )
                ]
                if config.security.enabled
                else []
            ),
        )
        pinned = asyncio.create_task(manager.load_pinned())
        expiry = asyncio.create_task(_housekeeping(manager, metrics, server))
        probes = asyncio.create_task(
            ServerWatch(manager, HttpServerProbe(client), settings.server_probe).run()
        )
        try:
            await serve_until_signalled(server, settings.shutdown_grace_seconds)
        finally:
            for task in (pinned, expiry, probes):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await manager.close()


async def _housekeeping(
    manager: ResidencyManager, metrics: AgentMetrics, server: ServiceServer
) -> None:
    """Keep-alive expiry and GPU health, every few seconds."""
    while True:
        await observe_gpus(manager, metrics, server)
        await asyncio.sleep(_EXPIRY_CHECK_SECONDS)
        await manager.expire_idle()


def gpu_health_name(index: int) -> str:
    """The gRPC health service name of one GPU, e.g. `warmpath.v1.GpuAgent/gpu/0`."""
    return f"{SERVICE_NAME}/gpu/{index}"


async def observe_gpus(
    manager: ResidencyManager, metrics: AgentMetrics, server: ServiceServer
) -> None:
    """Each GPU's health to the state feed, the gauges and gRPC health."""
    gpus = await manager.watch_gpus()
    for gpu in gpus:
        await server.set_part_serving(gpu_health_name(gpu.index), gpu.healthy)
    metrics.observe_gpus(gpus)


def cli(
    config: ConfigOption = None,
    listen: Annotated[
        str | None, typer.Option(envvar="WARMPATH_AGENT_LISTEN", help="host:port to listen on.")
    ] = None,
    host: Annotated[
        str | None, typer.Option(envvar="WARMPATH_AGENT_HOST", help="This host's name.")
    ] = None,
    log_dir: Annotated[
        Path | None, typer.Option(envvar="WARMPATH_AGENT_LOG_DIR", help="Model server logs.")
    ] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option(envvar="WARMPATH_AGENT_METRICS_LISTEN", help="host:port for /metrics."),
    ] = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the Warmpath gpu-agent."""

    async def start() -> None:
        loaded = load_config(config)
        settings = with_overrides(
            loaded.agent, listen=listen, host=host, metrics_listen=metrics_listen
        )
        if log_dir is not None:
            settings = with_overrides(
                settings, process={**settings.process.model_dump(), "log_dir": log_dir}
            )
        await serve(loaded, settings)

    run_service("gpu-agent", log_level, start, os.environ)


def main() -> None:
    typer.run(cli)


if __name__ == "__main__":
    main()
