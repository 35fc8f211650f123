"""Shared start-up for the services' ``__main__`` modules."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from warmpath_common.config import ConfigError
from warmpath_common.logs import configure_logging
from warmpath_common.telemetry import setup_tracing, shutdown_tracing

logger = logging.getLogger(__name__)

# Distinct from a crash (1) so supervisors can tell "fix your config" apart.
EXIT_BAD_CONFIG = 2


def run_service(
    service: str,
    log_level: str,
    start: Callable[[], Coroutine[Any, Any, None]],
    environ: Mapping[str, str],
) -> None:
    """Runs `start()` to completion; a config error exits 2 with one clear message."""
    configure_logging(service, log_level)
    provider = setup_tracing(f"warmpath-{service}", environ)
    try:
        asyncio.run(start())
    except ConfigError as error:
        print(f"{service}: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)
    except OSError as error:
        print(f"{service}: {error}", file=sys.stderr)
        sys.exit(1)
    finally:
        shutdown_tracing(provider)
