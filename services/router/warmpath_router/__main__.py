"""router entry point: read config, connect to every host's agent, serve."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry

from warmpath.v1 import router_pb2, router_pb2_grpc
from warmpath_adapter.assembly import build_dispatcher, http_client
from warmpath_common.config import RouterSettings, WarmpathConfig, load_config, with_overrides
from warmpath_common.entrypoint import ConfigOption, LogLevelOption, run_service
from warmpath_common.grpc_server import ServiceServer, create_server, serve_until_signalled
from warmpath_common.metrics import serve_metrics
from warmpath_common.security import BearerTokenGuard, channel_credentials, server_ssl_context
from warmpath_common.telemetry import PROMPTS_NOT_RECORDED, TraceContentPolicy
from warmpath_router.clients import AdapterClient, AgentClient, HostChannels, watch_cluster
from warmpath_router.cluster import ClusterView
from warmpath_router.http_api import HttpFrontDoor
from warmpath_router.in_process_adapter import AdaptersByHost, InProcessAdapter
from warmpath_router.metrics import RouterMetrics
from warmpath_router.registry import ModelRegistry
from warmpath_router.relay import Relay
from warmpath_router.reload import ConfigReloader
from warmpath_router.routing import models_fitting_nowhere
from warmpath_router.servicer import RouterServicer

__all__ = ["main"]

logger = logging.getLogger(__name__)

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name
_READINESS_POLL_SECONDS = 0.1
_RELOAD_POLL_SECONDS = 1.0


async def serve(
    config: WarmpathConfig,
    settings: RouterSettings,
    config_path: Path | None = None,
    content: TraceContentPolicy = PROMPTS_NOT_RECORDED,
) -> None:
    local_hosts = frozenset(host.name for host in settings.hosts if host.adapter_in_process)
    async with contextlib.AsyncExitStack() as stack:
        metrics = CollectorRegistry()
        local = None
        if local_hosts:
            client = await stack.enter_async_context(http_client())
            local = InProcessAdapter(build_dispatcher(config.adapter, client, content, metrics))
            logger.info("running the backend-adapter in-process for %s", ", ".join(local_hosts))
        await _serve(config, settings, config_path, metrics, local, local_hosts)


async def _serve(
    config: WarmpathConfig,
    settings: RouterSettings,
    config_path: Path | None,
    metrics: CollectorRegistry,
    local_adapter: InProcessAdapter | None,
    local_hosts: frozenset[str],
) -> None:
    registry = ModelRegistry(config.models, settings.auto)
    cluster = ClusterView.of(host.name for host in settings.hosts)
    channels = HostChannels(
        settings.hosts,
        channel_credentials(settings.tls, "router") if settings.tls is not None else None,
        settings.keepalive,
    )
    relay = Relay(
        registry,
        cluster,
        AgentClient(channels),
        AdaptersByHost(AdapterClient(channels), local_adapter, local_hosts),
        settings,
        RouterMetrics(metrics),
    )
    stop_watching = asyncio.Event()
    watcher = asyncio.create_task(
        watch_cluster(channels, cluster, stop_watching, settings.heartbeat_timeout_seconds)
    )
    guard = (
        BearerTokenGuard(config.security.tokens, "/warmpath.v1.Router/")
        if config.security.enabled
        else None
    )
    if settings.metrics_listen:
        serve_metrics(settings.metrics_listen, metrics, "router.metrics_listen")
    server = await create_server(
        settings.listen,
        lambda s: router_pb2_grpc.add_RouterServicer_to_server(RouterServicer(relay, cluster), s),
        [SERVICE_NAME],
        metrics,
        serving=False,
        tls=settings.tls,
        section="router",
        guards=[guard] if guard is not None else [],
    )
    http = None
    if settings.http.listen:
        # The same relay, tokens and certificates as the gRPC server, in this process.
        http = HttpFrontDoor(
            relay,
            settings.http,
            guard,
            server_ssl_context(settings.tls, "router") if settings.tls is not None else None,
            settings.shutdown_grace_seconds,
        )
        try:
            await http.start(settings.http.listen)
        except OSError:
            await server.stop(0)
            raise
    readiness = asyncio.create_task(_track_readiness(server, cluster, relay))
    leases = asyncio.create_task(relay.keep_leases())
    reloading = (
        asyncio.create_task(_reload_on_change(config_path, config, relay, metrics))
        if config_path is not None
        else None
    )
    try:
        await serve_until_signalled(
            server, settings.shutdown_grace_seconds, http.stop if http is not None else None
        )
    finally:
        readiness.cancel()
        leases.cancel()
        if reloading is not None:
            reloading.cancel()
        stop_watching.set()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await relay.close()
        await channels.close()


async def _reload_on_change(
    path: Path, config: WarmpathConfig, relay: Relay, metrics: CollectorRegistry
) -> None:
    """Reloads on SIGHUP, and when the file changes (polled: works on every filesystem)."""

    def apply(new: WarmpathConfig) -> None:
        relay.reconfigure(ModelRegistry(new.models, new.router.auto), new.router)

    reloader = ConfigReloader(path, config, apply, metrics)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.reload)
    while True:
        await asyncio.sleep(_RELOAD_POLL_SECONDS)
        if reloader.changed():
            reloader.reload()


async def _track_readiness(server: ServiceServer, cluster: ClusterView, relay: Relay) -> None:
    """SERVING only while at least one gpu-agent's state is known: before that the
    router could only answer UNAVAILABLE, so load balancers should not send to it.
    Also reports, once each, models too big for every GPU the agents report."""
    ready = False
    reported: dict[str, tuple[int, int]] = {}
    while True:
        too_big = models_fitting_nowhere(relay.registry.specs, cluster)
        for name, (need, largest) in too_big.items():
            if reported.get(name) != (need, largest):
                logger.error(
                    "model %s needs %d MiB but the largest GPU of any reachable host has %d MiB: "
                    "it cannot be served until a bigger GPU joins or its memory is corrected",
                    name,
                    need // 2**20,
                    largest // 2**20,
                )
        reported = too_big
        now_ready = any(view.reachable for view in cluster.hosts.values())
        if now_ready != ready:
            ready = now_ready
            await server.set_serving(ready)
            logger.info("%s", "serving" if ready else "no gpu-agent reachable: NOT_SERVING")
        await asyncio.sleep(_READINESS_POLL_SECONDS)


def cli(
    config: ConfigOption = None,
    listen: Annotated[
        str | None, typer.Option(envvar="WARMPATH_ROUTER_LISTEN", help="host:port to listen on.")
    ] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option(envvar="WARMPATH_ROUTER_METRICS_LISTEN", help="host:port for /metrics."),
    ] = None,
    http_listen: Annotated[
        str | None,
        typer.Option(
            envvar="WARMPATH_ROUTER_HTTP_LISTEN",
            help="host:port for the OpenAI/Anthropic HTTP API.",
        ),
    ] = None,
    trace_content: Annotated[
        bool,
        typer.Option(
            envvar="WARMPATH_TRACE_CONTENT",
            help="With an in-process adapter: record prompt and completion text in traces.",
        ),
    ] = False,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the Warmpath router."""

    async def start() -> None:
        loaded = load_config(config)
        settings = with_overrides(loaded.router, listen=listen, metrics_listen=metrics_listen)
        if http_listen is not None:
            http = with_overrides(settings.http, listen=http_listen)
            settings = with_overrides(settings, http=http)
        await serve(loaded, settings, config, TraceContentPolicy(record_content=trace_content))

    run_service("router", log_level, start, os.environ, event_loop="uvloop")


def main() -> None:
    typer.run(cli)


if __name__ == "__main__":
    main()
