"""The `agent` section: this host's GPUs, the drivers that run model servers, and how
hung servers are noticed."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import ByteSize, Field, field_validator, model_validator

from warmpath_common.config.base import ModelName, Strict, check_address, check_optional_address
from warmpath_common.config.security import TlsSettings

__all__ = [
    "AgentSettings",
    "DockerSettings",
    "Inventory",
    "OllamaSettings",
    "ProcessDriverSettings",
    "ServerProbeSettings",
    "SimulatedGpu",
    "WarmTierSettings",
]


class SimulatedGpu(Strict):
    name: str = "Simulated GPU"
    """Product name shown in state messages."""
    memory: ByteSize
    """Total memory of the simulated GPU, e.g. "8GiB"."""


class Inventory(Strict):
    """Which GPUs the agent manages."""

    simulated: bool = False
    """True: use `gpus` below instead of NVML. Every state message says so."""
    gpus: tuple[SimulatedGpu, ...] = ()
    """The declared GPUs of a simulated inventory."""
    host_memory: ByteSize | None = None
    """Host RAM of a simulated inventory, which offloaded layers use, e.g. "64GiB".
    Unset: the host's real available memory, read live."""

    @model_validator(mode="after")
    def _gpus_only_when_simulated(self) -> Self:
        if self.simulated and not self.gpus:
            raise ValueError("a simulated inventory needs at least one entry in gpus")
        if not self.simulated and (self.gpus or self.host_memory is not None):
            raise ValueError(
                "gpus and host_memory are only declared for a simulated inventory (simulated: true)"
            )
        return self


class ProcessDriverSettings(Strict):
    """Runs each resident llama.cpp model as a child process on this host."""

    bind_host: str = "127.0.0.1"
    """Address the child servers listen on."""
    advertise_host: str | None = None
    """Host name the backend-adapter uses to reach the child servers (e.g. the agent's
    container name when they run in separate containers). Unset: `bind_host`."""
    port_range: tuple[int, int] = (41000, 41999)
    """[low, high] ports for model servers."""
    startup_timeout_seconds: float = Field(default=120.0, gt=0)
    """How long a model server may take to answer its readiness endpoint."""
    log_dir: Path | None = None
    """Where child server logs go. Unset: discarded."""
    state_dir: Path | None = None
    """Where a record of each running child server is kept (model, pid, start time,
    port), so that an agent restarted after a crash adopts the servers still running
    instead of loading the models again. Unset: `<log_dir>/state`; with no `log_dir`
    either, nothing is recorded and nothing is adopted. One directory per agent."""
    keep_running_on_exit: bool = False
    """True: a graceful agent stop leaves the servers running, for the next agent to
    adopt (as Docker containers are). False: it stops them; only servers that outlive
    an agent crash are adopted. Needs a state directory."""
    extra_args: tuple[str, ...] = ()
    """Extra arguments for `python -m llama_cpp.server`."""

    @field_validator("port_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1024 <= low <= high <= 65535:
            raise ValueError("port_range must be [low, high] with 1024 <= low <= high <= 65535")
        return value

    @field_validator("state_dir")
    @classmethod
    def _named_directory(cls, value: Path | None) -> Path | None:
        # Path("") is the working directory: records would land wherever the
        # agent happened to start, and a later agent would not find them.
        if value is not None and str(value) in ("", "."):
            raise ValueError("state_dir must name a directory")
        return value

    @model_validator(mode="after")
    def _kept_servers_are_recorded(self) -> Self:
        if self.keep_running_on_exit and self.effective_state_dir is None:
            raise ValueError(
                "keep_running_on_exit needs state_dir (or log_dir): otherwise no later "
                "agent could find the servers it leaves running"
            )
        return self

    @property
    def effective_state_dir(self) -> Path | None:
        if self.state_dir is not None:
            return self.state_dir
        return None if self.log_dir is None else self.log_dir / "state"


class OllamaSettings(Strict):
    """An Ollama server already running on this host, for models with runtime ollama."""

    url: str = Field(default="http://127.0.0.1:11434", pattern=r"^https?://")
    """Its base URL."""
    load_timeout_seconds: float = Field(default=300.0, gt=0)
    """How long a preload may take."""
    poll_seconds: float = Field(default=5.0, gt=0)
    """How often /api/ps is read to notice models Ollama unloaded by itself."""


class DockerSettings(Strict):
    """Containers the agent runs for models with runtime docker (Docker SDK, local engine)."""

    network: str | None = None
    """Set: containers join this network, publish nothing, and are reached by container name.
    Unset: the default bridge, with the port published on `publish_host`."""
    publish_host: str = "127.0.0.1"
    """Host address a container's port is published on (only when `network` is unset)."""
    advertise_host: str | None = None
    """Host name the backend-adapter uses to reach published ports (only when `network` is
    unset). Unset: `publish_host`."""
    startup_timeout_seconds: float = Field(default=300.0, gt=0)
    """How long a container may take to answer its readiness path."""
    stop_timeout_seconds: float = Field(default=10.0, ge=0)
    """Grace given to a container on stop before it is killed."""


class ServerProbeSettings(Strict):
    """Readiness probes of every ready model server, so that one that hangs (alive but
    answering nothing) is noticed and routers avoid it (docs/hung-servers.md)."""

    period_seconds: float = Field(default=2.0, gt=0)
    """How often each ready model server is probed (never by generating)."""
    timeout_seconds: float = Field(default=3.0, gt=0)
    """How long a probe waits for an answer before it counts as failed."""
    failures_before_unresponsive: int = Field(default=3, gt=0)
    """Failed probes in a row (no answer in time, or no connection) after which the
    server is reported unresponsive and routers send it nothing."""
    restart_after_seconds: float = Field(default=60.0, gt=0)
    """A server still failing its probes this long after the first failure is stopped
    (killed if it does not stop) and marked failed, so that the next request loads it
    again. Must be longer than `failures_before_unresponsive` x `period_seconds` (or
    x `timeout_seconds` where that is longer: a round of probes lasts that long)."""

    @model_validator(mode="after")
    def _restart_after_unresponsive(self) -> Self:
        spacing = max(self.period_seconds, self.timeout_seconds)
        detection = spacing * self.failures_before_unresponsive
        if self.restart_after_seconds <= detection:
            raise ValueError(
                f"restart_after_seconds ({self.restart_after_seconds:g}) must be longer than "
                f"failures_before_unresponsive x the longer of period_seconds and "
                f"timeout_seconds ({detection:g} s): a server must be reported unresponsive "
                "before it is restarted"
            )
        return self


class WarmTierSettings(Strict):
    """Models asleep in host RAM instead of unloaded (docs/warm-tier.md)."""

    enabled: bool = False
    """True: a model evicted from its GPUs, or idle past its keep-alive, is put to sleep
    when its server can sleep and sleeping pays (vLLM and SGLang in Docker: their sleep
    endpoints, and the flags those need at start; llama.cpp: the server stops and its
    GGUF stays in the page cache), else unloaded. False: always unloaded."""
    asleep_keep_alive_seconds: float = Field(default=3600.0, ge=0)
    """How long a model stays asleep without being asked for before it is unloaded."""
    call_timeout_seconds: float = Field(default=60.0, gt=0)
    """How long a sleep or wake call to a model server may take."""


class AgentSettings(Strict):
    listen: str = "127.0.0.1:50052"
    """Address the gpu-agent listens on (flag --listen, env WARMPATH_AGENT_LISTEN)."""
    host: ModelName = "local"
    """This host's name; must match a router `hosts` entry."""
    inventory: Inventory = Field(default_factory=Inventory)
    """NVML (default) or a declared, simulated inventory."""
    models: tuple[ModelName, ...] | None = None
    """Registry models this host serves. Unset: all of them."""
    process: ProcessDriverSettings = Field(default_factory=ProcessDriverSettings)
    """The llama.cpp process driver."""
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    """The Ollama driver."""
    docker: DockerSettings = Field(default_factory=DockerSettings)
    """The Docker driver."""
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    """WatchState sends a heartbeat after this long without a change."""
    server_probe: ServerProbeSettings = Field(default_factory=ServerProbeSettings)
    """How a hung model server is noticed and restarted (docs/hung-servers.md)."""
    warm_tier: WarmTierSettings = Field(default_factory=WarmTierSettings)
    """Whether evicted models sleep in host RAM rather than unload (docs/warm-tier.md)."""
    min_residency_seconds: float = Field(default=10.0, ge=0)
    """A model resident for less than this is never evicted, so bursts cannot thrash; longer
    trades cold loads for longer waits for room under memory pressure (bench/RESULTS.md)."""
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    """On SIGTERM: how long in-flight calls may take to finish."""
    metrics_listen: str | None = None
    """host:port serving Prometheus /metrics (flag --metrics-listen). Unset: off."""
    tls: TlsSettings | None = None
    """TLS for this service's server."""

    _listen = field_validator("listen")(check_address)
    _metrics = field_validator("metrics_listen")(check_optional_address)
