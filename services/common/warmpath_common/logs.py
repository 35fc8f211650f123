"""Logging set-up shared by the services' entry points."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(service: str, level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: far too much for a relay on the hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # When a caller cancels a stream, the server span's context can be detached
    # from another context and OpenTelemetry logs a traceback; the span still
    # ends, so the message is noise.
    logging.getLogger("opentelemetry.context").setLevel(logging.CRITICAL)
