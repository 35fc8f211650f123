"""Settings that find a peer that stopped answering: gRPC keepalive, the agents'
heartbeats, and the first-token timeout of each try (docs/failures.md).

Pure data; the gRPC options they become are built here too, as plain tuples, so
that channels and servers agree on them in one place.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["FirstTokenTimeout", "KeepaliveSettings", "channel_options", "server_keepalive_options"]

SERVER_MIN_PING_INTERVAL_SECONDS = 5.0
"""Every Warmpath server accepts keepalive pings this often, also between calls;
a client that pings more often is refused (`router.keepalive.time_seconds` is
checked against it at start)."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class KeepaliveSettings(_Strict):
    """HTTP/2 keepalive on the router's channels to agents and adapters: a peer that is
    stopped, or a link that drops packets, is found in `time_seconds + timeout_seconds`
    even while no call is in flight."""

    time_seconds: float = Field(default=10.0, gt=0)
    """Send a ping after this long without a frame from the peer. At least 5 s (every
    Warmpath server refuses pings more frequent than that)."""
    timeout_seconds: float = Field(default=5.0, gt=0)
    """A ping unanswered for this long closes the connection; its calls fail UNAVAILABLE."""

    @field_validator("time_seconds")
    @classmethod
    def _accepted_by_servers(cls, value: float) -> float:
        if value < SERVER_MIN_PING_INTERVAL_SECONDS:
            raise ValueError(
                f"{value:g} s is more aggressive than Warmpath servers accept "
                f"(at least {SERVER_MIN_PING_INTERVAL_SECONDS:g} s between pings)"
            )
        return value


class FirstTokenTimeout(_Strict):
    """How long one try may stay silent before its first token.

    The timeout is `multiplier` times the `percentile` of the model's own measured
    times to first token (over the last tries the router saw, scaled up for a
    prompt longer than usual), kept within [floor_seconds, ceiling_seconds]; until
    `min_samples` were measured it is `ceiling_seconds`. Time the request spends
    queued (for admission at the adapter, or behind other requests at a server that
    serves one at a time) does not count: the clock starts when the model server
    gets the request."""

    multiplier: float = Field(default=4.0, ge=1)
    """Times the measured percentile."""
    percentile: float = Field(default=0.95, gt=0, le=1)
    """Which percentile of the measured times to first token, e.g. 0.95."""
    floor_seconds: float = Field(default=2.0, gt=0)
    """Never shorter than this."""
    ceiling_seconds: float = Field(default=60.0, gt=0)
    """Never longer than this; also the timeout before enough measurements."""
    min_samples: int = Field(default=5, ge=1)
    """Measurements needed before the timeout adapts."""

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> Self:
        if self.floor_seconds >= self.ceiling_seconds:
            raise ValueError(
                f"floor_seconds {self.floor_seconds:g} must be below "
                f"ceiling_seconds {self.ceiling_seconds:g}"
            )
        return self


def channel_options(keepalive: KeepaliveSettings) -> list[tuple[str, int]]:
    """gRPC channel arguments for a client that pings as `keepalive` says."""
    return [
        ("grpc.keepalive_time_ms", int(keepalive.time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive.timeout_seconds * 1000)),
        # Watch streams are calls, but an idle adapter channel has none: ping anyway.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_keepalive_options() -> list[tuple[str, int]]:
    """gRPC server arguments that accept clients pinging every
    SERVER_MIN_PING_INTERVAL_SECONDS, with or without calls in flight."""
    interval_ms = int(SERVER_MIN_PING_INTERVAL_SECONDS * 1000)
    return [
        ("grpc.http2.min_ping_interval_without_data_ms", interval_ms),
        ("grpc.http2.min_time_between_pings_ms", interval_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 2),
    ]
