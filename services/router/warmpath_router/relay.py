"""Route and Generate: resolve, validate, place, load if needed, relay the stream.

Fallback rule: a model's configured fallbacks are tried in order, each at most
once per request, only for failures that happen before the first chunk
reached the caller (UNAVAILABLE, RESOURCE_EXHAUSTED). After the first chunk
the stream is committed: a failure ends it with an error, never a retry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from warmpath_common.config import BackendKindName, ModelSpec, RouterSettings
from warmpath_common.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ResourceExhausted,
    Unavailable,
    WarmpathError,
)
from warmpath_common.generation import Completion, GenerationRequest, TextDelta
from warmpath_router.cluster import ClusterView, Endpoint, ReplicaState
from warmpath_router.registry import ModelRegistry, Resolution, ResolvedModel
from warmpath_router.routing import Placement, place
from warmpath_router.validation import check_against_model, check_shape

logger = logging.getLogger(__name__)

# Failures before the first chunk that another model may succeed at.
_FALLBACK_ON = (Unavailable, ResourceExhausted)
# Warm requests tell the agent a model is in use at most this often, so that
# keep-alive does not expire a busy model, without an extra RPC per request.
_TOUCH_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    endpoint: Endpoint
    gpu_index: int
    gpu_uuid: str
    cold_start: bool
    load_seconds: float


class AgentPort(Protocol):
    async def ensure_loaded(self, host: str, model: str, timeout_seconds: float) -> LoadResult: ...


class AdapterPort(Protocol):
    def generate(
        self, host: str, endpoint: Endpoint, request: GenerationRequest, timeout_seconds: float
    ) -> AsyncIterator[TextDelta | Completion]: ...


@dataclass(frozen=True, slots=True)
class FallbackHop:
    from_model: str
    to_model: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What Route reports: the placement Generate would use right now."""

    resolved: ResolvedModel
    placement: Placement
    backend: BackendKindName
    gpu_uuid: str
    fallback_chain: tuple[str, ...]
    fallback_hops: tuple[FallbackHop, ...]


@dataclass(frozen=True, slots=True)
class RouteTaken:
    requested_model: str
    served_model: str
    resolution: Resolution
    alias: str
    host: str
    gpu_index: int
    gpu_uuid: str
    backend: BackendKindName
    cold_start: bool
    load_seconds: float
    fallback_hops: tuple[FallbackHop, ...]
    auto_class: str
    auto_confidence: float


@dataclass(frozen=True, slots=True)
class RoutedCompletion:
    completion: Completion
    route: RouteTaken


class Relay:
    def __init__(
        self,
        registry: ModelRegistry,
        cluster: ClusterView,
        agents: AgentPort,
        adapters: AdapterPort,
        settings: RouterSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._cluster = cluster
        self._agents = agents
        self._adapters = adapters
        self._settings = settings
        self._clock = clock
        self._last_touch: dict[tuple[str, str], float] = {}
        self._background: set[asyncio.Task[None]] = set()

    def decide(self, request: GenerationRequest) -> Decision:
        """The decision Generate would take now. Loads nothing, sends nothing."""
        check_shape(request, self._settings)
        resolved = self._registry.resolve(request.model)
        check_against_model(request, resolved.spec)
        hops: list[FallbackHop] = []
        last_error: WarmpathError | None = None
        for spec in self._chain(resolved.spec):
            try:
                check_against_model(request, spec)
                placement = place(self._as_resolved(resolved, spec), self._cluster)
            except (InvalidRequest, *_FALLBACK_ON) as error:
                last_error = error
                hops.append(FallbackHop(spec.name, "", error.message))
                continue
            replica = placement.replica
            return Decision(
                resolved=self._as_resolved(resolved, spec),
                placement=placement,
                backend=spec.backend,
                gpu_uuid=replica.gpu_uuid if replica else "",
                fallback_chain=tuple(s.name for s in self._chain(resolved.spec))[1:],
                fallback_hops=_link(hops, spec.name),
            )
        assert last_error is not None
        raise _exhausted(last_error, hops)

    async def generate(
        self, request: GenerationRequest, timeout_seconds: float | None
    ) -> AsyncIterator[TextDelta | RoutedCompletion]:
        check_shape(request, self._settings)
        resolved = self._registry.resolve(request.model)
        check_against_model(request, resolved.spec)
        budget = (
            timeout_seconds
            if timeout_seconds is not None
            else self._settings.request_timeout_seconds
        )
        deadline = self._clock() + budget
        hops: list[FallbackHop] = []
        last_error: WarmpathError | None = None
        for spec in self._chain(resolved.spec):
            attempt_resolved = self._as_resolved(resolved, spec)
            committed = False
            try:
                check_against_model(request, spec)
                placement = place(attempt_resolved, self._cluster)
                load = await self._ensure_loaded(placement, deadline)
                outbound = dataclasses.replace(
                    request,
                    model=spec.name,
                    max_tokens=request.max_tokens or spec.default_max_tokens,
                )
                stream = self._adapters.generate(
                    placement.host, load.endpoint, outbound, self._remaining(deadline)
                )
                async for event in stream:
                    committed = True
                    if isinstance(event, TextDelta):
                        yield event
                        continue
                    yield RoutedCompletion(
                        event,
                        RouteTaken(
                            requested_model=request.model,
                            served_model=spec.name,
                            resolution=attempt_resolved.resolution,
                            alias=attempt_resolved.alias,
                            host=placement.host,
                            gpu_index=load.gpu_index,
                            gpu_uuid=load.gpu_uuid,
                            backend=spec.backend,
                            cold_start=load.cold_start,
                            load_seconds=load.load_seconds,
                            fallback_hops=_link(hops, spec.name),
                            auto_class=attempt_resolved.auto_class,
                            auto_confidence=attempt_resolved.auto_confidence,
                        ),
                    )
                    return
                raise Unavailable(f"adapter for {spec.name} ended the stream without finishing")
            except (InvalidRequest, *_FALLBACK_ON) as error:
                if committed or (isinstance(error, InvalidRequest) and spec is resolved.spec):
                    raise
                logger.info("falling back from %s: %s", spec.name, error.message)
                last_error = error
                hops.append(
                    FallbackHop(spec.name, "", f"{error.status_code.name}: {error.message}")
                )
        assert last_error is not None
        raise _exhausted(last_error, hops)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()

    async def _ensure_loaded(self, placement: Placement, deadline: float) -> LoadResult:
        replica = placement.replica
        if replica is not None and replica.state is ReplicaState.READY and replica.endpoint:
            self._touch(placement.host, placement.model, deadline)
            return LoadResult(replica.endpoint, replica.gpu_index, replica.gpu_uuid, False, 0.0)
        return await self._agents.ensure_loaded(
            placement.host, placement.model, self._remaining(deadline)
        )

    def _touch(self, host: str, model: str, deadline: float) -> None:
        now = self._clock()
        key = (host, model)
        if now - self._last_touch.get(key, -_TOUCH_INTERVAL_SECONDS) < _TOUCH_INTERVAL_SECONDS:
            return
        self._last_touch[key] = now

        async def touch() -> None:
            try:
                await self._agents.ensure_loaded(host, model, self._remaining(deadline))
            except WarmpathError as error:
                logger.debug("keep-alive touch of %s on %s failed: %s", model, host, error.message)

        task = asyncio.create_task(touch())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline expired before a backend could answer")
        return remaining

    def _chain(self, spec: ModelSpec) -> list[ModelSpec]:
        return [spec, *(self._registry.get(name) for name in spec.fallbacks)]

    @staticmethod
    def _as_resolved(original: ResolvedModel, spec: ModelSpec) -> ResolvedModel:
        if spec.name == original.spec.name:
            return original
        return dataclasses.replace(original, spec=spec, explanation=f"fallback to {spec.name}")


def _link(hops: list[FallbackHop], final_model: str) -> tuple[FallbackHop, ...]:
    """Fills in each hop's destination: the next model tried."""
    if not hops:
        return ()
    targets = [hop.from_model for hop in hops[1:]] + [final_model]
    return tuple(
        dataclasses.replace(hop, to_model=to) for hop, to in zip(hops, targets, strict=True)
    )


def _exhausted(last_error: WarmpathError, hops: list[FallbackHop]) -> WarmpathError:
    if len(hops) <= 1:
        return last_error
    tried = "; ".join(f"{hop.from_model}: {hop.reason}" for hop in hops)
    return type(last_error)(f"every model in the fallback chain failed ({tried})")
