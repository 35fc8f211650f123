"""The `router` section: hosts, automatic routing, limits, the HTTP front door."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from warmpath_common.config.base import (
    ADDRESS_PATTERN,
    ModelName,
    Strict,
    check_address,
    check_optional_address,
    reject_duplicates,
)
from warmpath_common.config.security import TlsSettings
from warmpath_common.liveness import FirstTokenTimeout, KeepaliveSettings

__all__ = [
    "IN_PROCESS_ADAPTER",
    "AutoClass",
    "AutoRouting",
    "HostSpec",
    "HttpSettings",
    "RouterSettings",
]

IN_PROCESS_ADAPTER = "in-process"
"""`hosts[].adapter` value for an adapter that runs inside the router."""


class HostSpec(Strict):
    """A host the router sends requests to: its gpu-agent and backend-adapter."""

    name: ModelName
    """Host name; the gpu-agent there must use the same `agent.host`."""
    agent: str
    """gpu-agent address, host:port (DNS names allowed)."""
    adapter: str
    """backend-adapter address, host:port; or "in-process": the router runs the adapter
    itself for this host, which saves a gRPC hop per request (bench/RESULTS.md) but needs
    the host's model servers reachable from the router (one machine, or one pod)."""

    _agent = field_validator("agent")(check_address)

    @field_validator("adapter")
    @classmethod
    def _adapter_address(cls, value: str) -> str:
        if value == IN_PROCESS_ADAPTER:
            return value
        if not ADDRESS_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is neither host:port (e.g. 127.0.0.1:50053) nor {IN_PROCESS_ADAPTER!r}"
            )
        return check_address(value)

    @property
    def adapter_in_process(self) -> bool:
        return self.adapter == IN_PROCESS_ADAPTER


class AutoClass(Strict):
    """One class of request for `auto` routing (see the router's classifier)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    """Class name; fast, code and heavy get the built-in features and keywords."""
    model: ModelName
    """Registry model that requests of this class go to."""
    keywords: tuple[str, ...] | None = None
    """Words or phrases that count for this class. Unset: the built-in list for a class
    named fast, code or heavy, none otherwise."""
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    """Below this confidence the request goes to `escalate_to` instead, and says so."""
    escalate_to: str | None = None
    """The more capable class to use when this one is chosen with too little confidence."""


class AutoRouting(Strict):
    """How the router picks a model for requests that name `auto` or nothing."""

    classes: tuple[AutoClass, ...] = ()
    """Classify each `auto` request into one of these. Unset: use `default_model`."""
    default_model: ModelName | None = None
    """The model `auto` resolves to when no classes are configured. Unset too: `auto` is
    rejected with a clear error."""


class HttpSettings(Strict):
    """The router's OpenAI- and Anthropic-compatible HTTP front door (docs/http-api.md).

    It serves the same relay as the gRPC server, with router.tls and the same tokens."""

    listen: str | None = None
    """host:port for HTTP (flag --http-listen, env WARMPATH_ROUTER_HTTP_LISTEN). Unset: off."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Largest request body accepted; a larger one is refused with 413."""
    retry_after_seconds: int = Field(default=1, ge=0)
    """Retry-After sent with 429 (a caller over its limit, or every replica busy)."""

    _listen = field_validator("listen")(check_optional_address)


class RouterSettings(Strict):
    listen: str = "127.0.0.1:50051"
    """Address the router listens on (flag --listen, env WARMPATH_ROUTER_LISTEN)."""
    hosts: tuple[HostSpec, ...] = (
        HostSpec(name="local", agent="127.0.0.1:50052", adapter="127.0.0.1:50053"),
    )
    """Every host the router may send requests to."""
    auto: AutoRouting = Field(default_factory=AutoRouting)
    """Automatic routing for requests that name `auto` or no model."""
    request_timeout_seconds: float = Field(default=300.0, gt=0)
    """Deadline applied to requests that arrive without one."""
    max_prompt_chars: int = Field(default=200_000, gt=0)
    """Longest prompt (sum over messages) accepted, in characters."""
    max_messages: int = Field(default=256, gt=0)
    """Most chat messages accepted in one request."""
    max_in_flight_per_caller: int = Field(default=64, gt=0)
    """Generate requests one caller may have in flight; more are refused with
    RESOURCE_EXHAUSTED, so one caller cannot starve the others. A caller is its network
    address."""
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    """On SIGTERM: how long in-flight requests may take to finish."""
    metrics_listen: str | None = None
    """host:port serving Prometheus /metrics (flag --metrics-listen). Unset: off."""
    tls: TlsSettings | None = None
    """TLS for the router's server and for its connections to agents and adapters."""
    keepalive: KeepaliveSettings = Field(default_factory=KeepaliveSettings)
    """gRPC keepalive on every channel to the agents and adapters."""
    heartbeat_timeout_seconds: float = Field(default=15.0, gt=0)
    """A host whose gpu-agent sent nothing on WatchState for this long is marked
    unreachable (and Route says so); a few of `agent.heartbeat_seconds`."""
    first_token_timeout: FirstTokenTimeout = Field(default_factory=FirstTokenTimeout)
    """How long one try may go without a first token, for models that set none."""
    http: HttpSettings = Field(default_factory=HttpSettings)
    """The OpenAI- and Anthropic-compatible HTTP front door."""

    _listen = field_validator("listen")(check_address)
    _metrics = field_validator("metrics_listen")(check_optional_address)

    @model_validator(mode="after")
    def _unique_hosts(self) -> Self:
        reject_duplicates("hosts", [h.name for h in self.hosts])
        return self
