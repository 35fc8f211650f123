"""backend-adapter entry point: parse config, build backends, serve."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry

from warmpath.v1 import backend_adapter_pb2, backend_adapter_pb2_grpc
from warmpath_adapter.assembly import build_dispatcher, http_client
from warmpath_adapter.servicer import BackendAdapterServicer
from warmpath_common.config import (
    AdapterSettings,
    SecuritySettings,
    load_config,
    with_overrides,
)
from warmpath_common.entrypoint import ConfigOption, LogLevelOption, run_service
from warmpath_common.grpc_server import create_server, serve_until_signalled
from warmpath_common.metrics import serve_metrics
from warmpath_common.security import PeerIdentityGuard
from warmpath_common.telemetry import TraceContentPolicy

__all__ = ["main"]

SERVICE_NAME = backend_adapter_pb2.DESCRIPTOR.services_by_name["BackendAdapter"].full_name


async def serve(
    settings: AdapterSettings,
    content: TraceContentPolicy,
    security: SecuritySettings | None = None,
) -> None:
    async with http_client() as client:
        metrics = CollectorRegistry()
        dispatcher = build_dispatcher(settings, client, content, metrics)
        if settings.metrics_listen:
            serve_metrics(settings.metrics_listen, metrics, "adapter.metrics_listen")
        server = await create_server(
            settings.listen,
            lambda s: backend_adapter_pb2_grpc.add_BackendAdapterServicer_to_server(
                BackendAdapterServicer(dispatcher), s
            ),
            [SERVICE_NAME],
            metrics,
            tls=settings.tls,
            section="adapter",
            # Only the router may send work to model servers: nothing bypasses routing.
            guards=(
                [
                    PeerIdentityGuard(
                        security.router_identities, ["/warmpath.v1.BackendAdapter/Generate"]
                    )
                ]
                if security is not None and security.enabled
                else []
            ),
        )
        await serve_until_signalled(server, settings.shutdown_grace_seconds)


def cli(
    config: ConfigOption = None,
    listen: Annotated[
        str | None, typer.Option(envvar="WARMPATH_ADAPTER_LISTEN", help="host:port to listen on.")
    ] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option(envvar="WARMPATH_ADAPTER_METRICS_LISTEN", help="host:port for /metrics."),
    ] = None,
    trace_content: Annotated[
        bool,
        typer.Option(
            envvar="WARMPATH_TRACE_CONTENT",
            help="Record prompt and completion text in traces (off: never recorded).",
        ),
    ] = False,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the Warmpath backend-adapter."""

    async def start() -> None:
        loaded = load_config(config)
        settings = with_overrides(loaded.adapter, listen=listen, metrics_listen=metrics_listen)
        await serve(settings, TraceContentPolicy(record_content=trace_content), loaded.security)

    run_service("backend-adapter", log_level, start, os.environ, event_loop="uvloop")


def main() -> None:
    typer.run(cli)


if __name__ == "__main__":
    main()
