"""The `adapter` section: how the backend-adapter talks to this host's model servers."""

from __future__ import annotations

from pydantic import Field, field_validator

from warmpath_common.config.base import Strict, check_address, check_optional_address
from warmpath_common.config.models import BackendKindName
from warmpath_common.config.security import TlsSettings

__all__ = ["AdapterSettings"]


class AdapterSettings(Strict):
    listen: str = "127.0.0.1:50053"
    """Address the backend-adapter listens on (flag --listen, env WARMPATH_ADAPTER_LISTEN)."""
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    """How long connecting to an inference server may take."""
    idle_timeout_seconds: float = Field(default=60.0, gt=0)
    """A backend silent for this long (for its first byte, or mid-stream) is treated as
    stalled: the request fails DEADLINE_EXCEEDED rather than wait out its deadline."""
    max_concurrent_per_backend: int = Field(default=32, gt=0)
    """Requests sent to one model server at once; more wait in a queue."""
    max_queued_per_backend: int = Field(default=64, ge=0)
    """Requests waiting for one model server; beyond this, RESOURCE_EXHAUSTED at once."""
    one_at_a_time: tuple[BackendKindName, ...] = (BackendKindName.LLAMA_CPP,)
    """Server kinds that serve one request at a time (llama-cpp-python's server): the
    adapter sends them one request at a time and tells the router which requests wait
    their turn, so that wait is never taken for a hung server."""
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    """On SIGTERM: how long in-flight streams may take to finish."""
    metrics_listen: str | None = None
    """host:port serving Prometheus /metrics (flag --metrics-listen). Unset: off."""
    tls: TlsSettings | None = None
    """TLS for this service's server."""

    _listen = field_validator("listen")(check_address)
    _metrics = field_validator("metrics_listen")(check_optional_address)
