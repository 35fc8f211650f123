"""Shared start-up for the services' ``__main__`` modules."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import uvloop

from warmpath_common.config import ConfigError
from warmpath_common.logs import configure_logging
from warmpath_common.telemetry import setup_tracing, shutdown_tracing

__all__ = ["EXIT_BAD_CONFIG", "ConfigOption", "LogLevelOption", "run_service"]

logger = logging.getLogger(__name__)

# Distinct from a crash (1) so supervisors can tell "fix your config" apart.
EXIT_BAD_CONFIG = 2

# The command-line options every service takes, the same way.
ConfigOption = Annotated[
    Path | None, typer.Option(envvar="WARMPATH_CONFIG", help="Config file (default: embedded).")
]
LogLevelOption = Annotated[str, typer.Option(envvar="WARMPATH_LOG_LEVEL")]


def _event_loop_factory(
    environ: Mapping[str, str], default: str
) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop: `WARMPATH_EVENT_LOOP` (uvloop or asyncio), else the service's default."""
    choice = environ.get("WARMPATH_EVENT_LOOP", default).strip().lower()
    if choice not in ("uvloop", "asyncio"):
        raise ConfigError(f"WARMPATH_EVENT_LOOP: expected uvloop or asyncio, got {choice!r}")
    return asyncio.new_event_loop if choice == "asyncio" else uvloop.new_event_loop


def run_service(
    service: str,
    log_level: str,
    start: Callable[[], Coroutine[Any, Any, None]],
    environ: Mapping[str, str],
    event_loop: str = "asyncio",
) -> None:
    """Runs `start()` to completion; a config error exits 2 with one clear message.

    `event_loop` is "uvloop" for the services on the request path, whose grpc.aio
    calls cost less CPU on it (bench/results/findings.md), and "asyncio" for the
    gpu-agent: libuv starts child processes with a plain fork(), and gRPC's
    fork handlers then abort the llama.cpp child before it runs (seen in tests).
    """
    configure_logging(service, log_level)
    provider = setup_tracing(f"warmpath-{service}", environ)
    try:
        with asyncio.Runner(loop_factory=_event_loop_factory(environ, event_loop)) as runner:
            runner.run(start())
    except ConfigError as error:
        print(f"{service}: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)
    except OSError as error:
        print(f"{service}: {error}", file=sys.stderr)
        sys.exit(1)
    finally:
        shutdown_tracing(provider)
