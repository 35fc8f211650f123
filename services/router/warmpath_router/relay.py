"""Route and Generate: resolve, validate, place, load if needed, relay the stream.

Failure rule, before the first chunk reached the caller only. A retryable
failure (UNAVAILABLE, RESOURCE_EXHAUSTED) that provably never reached a model
server is first retried on another replica of the same model, within a retry
budget, jittered, inside the deadline. Provably: the request had not yet been
handed to an adapter (placement or load failed), or the error is marked not-sent
(see warmpath_common.errors: the adapter's admission refused it, no connection
to the model server or to the adapter itself was made, the model server answered
429/503). Any other such failure, e.g. a stream the backend accepted and cut
before its first token, may have started generation there: retrying the same
model elsewhere could run it twice, so it is not retried. A model server found
down (no connection to it at all, warmpath_common.errors: backend_down) behind a
replica the cluster view showed ready, with no other replica to try, is asked of
its agent once, which restarts a server that died, and the request tries again:
the view lags the agent by a moment after a crash, and without this every
request in that moment fails. Then the model's fallback graph is walked to its end:
its fallbacks, then theirs, nearest first, those already warm somewhere first
within each step, each model at most once per request (also for a cold load
that would outlast the deadline). A model's load, including any wait
for room at its agent, must end early enough to leave the quickest remaining
fallback its share of the deadline (`_fallback_reserve`); past that, the
fallback runs. A fallback follows either kind of failure: it is another model,
which the operator chose to try when this one fails, so it may do work the
failed server also began (at most once per model in the chain, and the caller
still sees only one answer). A try that sends no first chunk within the model's first-token timeout
(warmpath_router.first_token), or whose adapter connection dies before one
(errors.PeerLost: keepalive found the host gone), is abandoned: cancelled down
to the model server, its replica's circuit opened, the abandoned seconds
counted, and another replica tried within the retry budget. Nothing reached the
caller, so it still gets one answer; the work repeated is bounded by the budget.
After the first chunk the stream is committed: a
failure ends it with an error, never a retry or a fallback. Deterministic errors
(INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED) are never retried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from warmpath_common.config import BackendKindName, ModelSpec, RouterSettings
from warmpath_common.convert import PlacementInfo
from warmpath_common.errors import (
    DeadlineExceeded,
    InvalidRequest,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    WarmpathError,
    status_of,
)
from warmpath_common.generation import AdapterEvent, Completion, GenerationRequest, TextDelta
from warmpath_common.security import Caller
from warmpath_common.telemetry import (
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    current_trace_id,
    request_attributes,
)
from warmpath_router.breaker import CircuitBreakers
from warmpath_router.cluster import ClusterView, Endpoint, ReplicaState
from warmpath_router.first_token import FirstTokenTimes, SilentTry, first_token_within
from warmpath_router.metrics import RouterMetrics
from warmpath_router.outcome import ReplicaFailed, TryProgress, judge_failure
from warmpath_router.registry import ModelRegistry, Resolution, ResolvedModel
from warmpath_router.retry import RetryBudget
from warmpath_router.routing import Placement, RouteReason, place
from warmpath_router.validation import check_against_model, check_shape

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


class ColdLoadTooSlow(DeadlineExceeded):
    """The model would need a load that takes longer than the request may wait."""


_RETRY_JITTER_SECONDS = 0.05
_RETRY_MIN_REMAINING_SECONDS = 1.0


# Without security every caller may use every model; it is named by its address.
ANONYMOUS = Caller("anonymous")

# Failures before the first chunk that another model may succeed at.
_FALLBACK_ON = (Unavailable, ResourceExhausted, ColdLoadTooSlow)
# Warm requests tell the agent a model is in use at most this often, so that
# keep-alive does not expire a busy model, without an extra RPC per request.
# While a router has requests in flight on a model it holds a lease on it at the
# agent, so the model is not evicted under them; a router that dies lets it lapse.
# Kept back from a model's load for a fallback to answer: a warm fallback's first
# tokens, or a cold one's load on top (a default when it was never loaded).
_WARM_FALLBACK_RESERVE_SECONDS = 5.0
_UNKNOWN_LOAD_SECONDS = 10.0
_LEASE_SECONDS = 15.0
_LEASE_RENEW_SECONDS = 5.0
_LEASE_CALL_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    endpoint: Endpoint
    gpu_index: int
    gpu_uuid: str
    cold_start: bool
    load_seconds: float
    placement: PlacementInfo | None = None
    woken: bool = False
    """The agent woke the model from sleep (host RAM) rather than loading it from disk."""


class AgentPort(Protocol):
    async def ensure_loaded(
        self,
        host: str,
        model: str,
        timeout_seconds: float,
        warm_requests: int = 0,
        lease_seconds: float = 0.0,
        verify: bool = False,
    ) -> LoadResult: ...


class AdapterPort(Protocol):
    def generate(
        self, host: str, endpoint: Endpoint, request: GenerationRequest, timeout_seconds: float
    ) -> AsyncGenerator[AdapterEvent, None]: ...


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
    trace_id: str


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
    trace_id: str
    placement: PlacementInfo | None = None
    """Every GPU (and host RAM) the answering model occupies, when the agent said."""
    woken: bool = False
    """Its load was a wake from sleep (host RAM), not a load from disk."""

    @property
    def load_description(self) -> str:
        if not self.cold_start:
            return ""
        how = "woken from sleep" if self.woken else "cold load"
        return f"{how} in {self.load_seconds:.1f} s"


@dataclass(frozen=True, slots=True)
class RoutedCompletion:
    completion: Completion
    route: RouteTaken


RouteListener = Callable[[RouteTaken], None]
"""Told the route once the first chunk arrives (no retry or fallback can follow then),
before that chunk is yielded: the HTTP front door sends it as headers ahead of the body."""


class Relay:
    def __init__(
        self,
        registry: ModelRegistry,
        cluster: ClusterView,
        agents: AgentPort,
        adapters: AdapterPort,
        settings: RouterSettings,
        metrics: RouterMetrics,
        clock: Callable[[], float] = time.monotonic,
        breakers: CircuitBreakers | None = None,
        retry_budget: RetryBudget | None = None,
    ) -> None:
        self._metrics = metrics
        self._registry = registry
        self._cluster = cluster
        self._agents = agents
        self._adapters = adapters
        self._settings = settings
        self._clock = clock
        self._lease_until: dict[tuple[str, str], float] = {}
        self._warm_requests: dict[tuple[str, str], int] = {}
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._callers: Counter[str] = Counter()
        self._retry_budget = retry_budget or RetryBudget()
        self._breakers = breakers or CircuitBreakers()
        self._first_token = FirstTokenTimes()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    def reconfigure(self, registry: ModelRegistry, settings: RouterSettings) -> None:
        """Applies a reloaded config. Requests in flight finish under the one they began with."""
        self._registry = registry
        self._settings = settings

    def decide(self, request: GenerationRequest, caller: Caller = ANONYMOUS) -> Decision:
        """The decision Generate would take now. Loads nothing, sends nothing."""
        check_shape(request, self._settings)
        resolved = self._registry.resolve(request.model, request.text)
        _check_permission(caller, resolved)
        check_against_model(request, resolved.spec)
        hops: list[FallbackHop] = []
        last_error: WarmpathError | None = None
        # Route answers with the whole decision, so it opens no span of its own; in a
        # caller's trace, its server span carries the outcome.
        span = trace.get_current_span()
        for spec in self._chain(resolved.spec, caller):
            attempt = self._as_resolved(resolved, spec)
            try:
                check_against_model(request, spec)
                placement = place(attempt, self._cluster)
            except (InvalidRequest, *_FALLBACK_ON) as error:
                last_error = error
                hops.append(FallbackHop(spec.name, "", error.message))
                continue
            if span.is_recording():
                span.set_attributes(_placement_attributes(attempt, placement))
            replica = placement.replica
            return Decision(
                resolved=attempt,
                placement=placement,
                backend=spec.backend,
                gpu_uuid=replica.gpu_uuid if replica else "",
                fallback_chain=tuple(s.name for s in self._chain(resolved.spec))[1:],
                fallback_hops=_link(hops, spec.name),
                trace_id=current_trace_id(),
            )
        raise _exhausted(last_error, hops)

    async def generate(
        self,
        request: GenerationRequest,
        timeout_seconds: float | None,
        caller: Caller = ANONYMOUS,
        on_route: RouteListener | None = None,
    ) -> AsyncIterator[TextDelta | RoutedCompletion]:
        """Streams the answer; see the module docstring for the fallback rules."""
        limit = self._settings.max_in_flight_per_caller
        if self._callers[caller.name] >= limit:
            self._metrics.requests.labels("none", "RESOURCE_EXHAUSTED").inc()
            raise ResourceExhausted(
                f"caller {caller.name} already has {limit} requests in flight "
                "(router.max_in_flight_per_caller); wait for some to finish"
            )
        self._callers[caller.name] += 1
        try:
            async for event in self._measured(request, timeout_seconds, caller, on_route):
                yield event
        finally:
            self._callers[caller.name] -= 1
            if not self._callers[caller.name]:
                del self._callers[caller.name]

    async def _measured(
        self,
        request: GenerationRequest,
        timeout_seconds: float | None,
        caller: Caller,
        on_route: RouteListener | None,
    ) -> AsyncIterator[TextDelta | RoutedCompletion]:
        self._retry_budget.record_request()
        metrics = self._metrics
        started = self._clock()
        first_token_after: float | None = None
        served = "none"
        outcome = "OK"
        metrics.in_flight.inc()
        try:
            async for event in self._generate(request, timeout_seconds, caller, on_route):
                if isinstance(event, TextDelta):
                    if first_token_after is None:
                        first_token_after = self._clock() - started
                else:
                    served = event.route.served_model
                    metrics.output_tokens.labels(served).inc(event.completion.usage.output_tokens)
                    for hop in event.route.fallback_hops:
                        metrics.fallbacks.labels(hop.from_model, hop.to_model).inc()
                yield event
        except BaseException as error:
            outcome = status_of(error).name
            raise
        finally:
            metrics.in_flight.dec()
            metrics.requests.labels(served, outcome).inc()
            if served != "none":
                metrics.duration.labels(served).observe(self._clock() - started)
                if first_token_after is not None:
                    metrics.time_to_first_token.labels(served).observe(first_token_after)

    async def _generate(
        self,
        request: GenerationRequest,
        timeout_seconds: float | None,
        caller: Caller,
        on_route: RouteListener | None = None,
    ) -> AsyncIterator[TextDelta | RoutedCompletion]:
        server_span = trace.get_current_span()
        server_span.set_attributes(request_attributes(request, request.model))
        check_shape(request, self._settings)
        resolved = self._registry.resolve(request.model, request.text)
        _check_permission(caller, resolved)
        check_against_model(request, resolved.spec)
        budget = (
            timeout_seconds
            if timeout_seconds is not None
            else self._settings.request_timeout_seconds
        )
        deadline = self._clock() + budget
        hops: list[FallbackHop] = []
        last_error: WarmpathError | None = None
        chain = self._chain(resolved.spec, caller)
        for position, spec in enumerate(chain):
            tried_hosts: set[str] = set()
            replica_failures: list[WarmpathError] = []
            ask_agent = False
            load_deadline = deadline - self._fallback_reserve(chain[position + 1 :])
            while True:
                committed = False
                try:
                    async for event in self._attempt(
                        request,
                        resolved,
                        spec,
                        hops,
                        deadline,
                        frozenset(tried_hosts),
                        load_deadline,
                        ask_agent=ask_agent,
                        on_route=on_route,
                    ):
                        committed = True
                        if isinstance(event, RoutedCompletion):
                            server_span.set_attributes(
                                _response_attributes(event.completion, event.route)
                            )
                        yield event
                    return
                except ReplicaFailed as failed:
                    # Nothing reached the caller: another replica of the same
                    # model may serve it, if the budget and the deadline allow.
                    error = failed.error
                    tried_hosts.add(failed.host)
                    replica_failures.append(error)
                    if await self._may_retry_elsewhere(spec, tried_hosts, deadline):
                        server_span.add_event(
                            "warmpath.retry",
                            {"warmpath.host": failed.host, "warmpath.reason": error.message},
                        )
                        continue
                    if error.backend_down and not failed.asked_agent:
                        # Once per model: its agent knows whether the server died, and
                        # starts a new one rather than leave the request to fail.
                        ask_agent = True
                        tried_hosts.discard(failed.host)
                        server_span.add_event(
                            "warmpath.ask_agent",
                            {"warmpath.host": failed.host, "warmpath.reason": error.message},
                        )
                        continue
                except (InvalidRequest, *_FALLBACK_ON) as caught:
                    error = caught
                    replica_failures.append(error)
                if len(replica_failures) > 1 and not committed:
                    # Say what happened on each replica tried, not only the last.
                    each = "; ".join(dict.fromkeys(f.message for f in replica_failures))
                    error = type(error)(f"every replica of {spec.name} tried failed ({each})")
                if committed or (isinstance(error, InvalidRequest) and spec is resolved.spec):
                    raise error
                logger.info("falling back from %s: %s", spec.name, error.message)
                last_error = error
                reason = f"{error.status_code.name}: {error.message}"
                hops.append(FallbackHop(spec.name, "", reason))
                server_span.add_event(
                    "warmpath.fallback",
                    {"warmpath.from_model": spec.name, "warmpath.reason": reason},
                )
                break
        raise _exhausted(last_error, hops)

    async def _attempt(
        self,
        request: GenerationRequest,
        resolved: ResolvedModel,
        spec: ModelSpec,
        hops: list[FallbackHop],
        deadline: float,
        exclude: frozenset[str] = frozenset(),
        load_deadline: float | None = None,
        *,
        ask_agent: bool = False,
        on_route: RouteListener | None = None,
    ) -> AsyncIterator[TextDelta | RoutedCompletion]:
        """One try at one model on one host: place it, load it if needed, stream from it.
        `ask_agent`: its server could not be reached; ask the agent for the model, and to
        check that server, even when the view shows it ready.

        The load (and any wait for room at the agent) must end by `load_deadline`,
        which leaves the fallbacks still to try their share of the deadline.

        A retryable failure before the first chunk that provably reached no model
        server is raised as ReplicaFailed, naming the host, so the caller can try
        another replica; one that may have reached it is raised as it is.
        """
        attempt_resolved = self._as_resolved(resolved, spec)
        with _tracer.start_as_current_span(f"route {spec.name}") as route_span:
            check_against_model(request, spec)
            placement = place(
                attempt_resolved,
                self._cluster,
                in_flight=self._in_flight,
                circuit_open=lambda key: self._breakers.open_for(key, self._clock()),
                exclude=exclude,
            )
            if route_span.is_recording():
                route_span.set_attributes(_placement_attributes(attempt_resolved, placement))
            self._check_cold_load_fits(placement, deadline)
        key = (placement.host, spec.name)
        self._in_flight[key] += 1
        sent_anything = False
        handed_to_adapter = False
        handed_at = 0.0
        first_token_limit = 0.0
        try:
            load = await self._load_before(placement, load_deadline, deadline, ask_agent)
            outbound = dataclasses.replace(
                request, model=spec.name, max_tokens=request.max_tokens or spec.default_max_tokens
            )
            prompt_chars = len(request.text())
            first_token_limit = self._first_token.timeout_for(
                spec, self._settings.first_token_timeout, prompt_chars
            )
            stream = first_token_within(
                self._adapters.generate(
                    placement.host, load.endpoint, outbound, self._remaining(deadline)
                ),
                first_token_limit,
                self._clock,
                lambda seconds: self._first_token.observe(spec.name, seconds, prompt_chars),
            )
            handed_to_adapter = True
            handed_at = self._clock()
            route = RouteTaken(
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
                placement=load.placement,
                woken=load.woken,
                fallback_hops=_link(hops, spec.name),
                auto_class=attempt_resolved.auto_class,
                auto_confidence=attempt_resolved.auto_confidence,
                trace_id=current_trace_id(),
            )
            async for event in stream:
                if not sent_anything and on_route is not None:
                    on_route(route)
                sent_anything = True
                if isinstance(event, TextDelta):
                    yield event
                    continue
                self._breakers.record_success(key)
                yield RoutedCompletion(event, route)
                return
            raise Unavailable(f"adapter for {spec.name} ended the stream without finishing")
        except (SilentTry, DeadlineExceeded, Unavailable, ResourceExhausted) as error:
            instead = judge_failure(
                error,
                key,
                self._clock() < deadline,
                self._breakers,
                self._metrics,
                self._clock(),
                TryProgress(
                    handed_at if handed_to_adapter else None,
                    sent_anything,
                    first_token_limit,
                    ask_agent or placement.load_required,
                ),
            )
            if instead is None:
                raise
            raise instead from error
        finally:
            self._in_flight[key] -= 1

    async def _may_retry_elsewhere(
        self, spec: ModelSpec, tried_hosts: set[str], deadline: float
    ) -> bool:
        """True (after a short jittered pause) when another host could serve `spec`,
        the retry budget allows one more try, and the deadline leaves room for it."""
        others = [
            view.name
            for view in self._cluster.hosts.values()
            if view.reachable and spec.name in view.servable and view.name not in tried_hosts
        ]
        if not others or deadline - self._clock() < _RETRY_MIN_REMAINING_SECONDS:
            return False
        if not self._retry_budget.try_spend():
            logger.info("retry budget spent: not retrying %s elsewhere", spec.name)
            return False
        # Jitter, not cryptography: a pseudo-random pause is what it needs.
        await asyncio.sleep(random.uniform(0, _RETRY_JITTER_SECONDS))  # noqa: S311  # nosec B311
        return True

    async def _load_before(
        self,
        placement: Placement,
        load_deadline: float | None,
        deadline: float,
        ask_agent: bool = False,
    ) -> LoadResult:
        """Loads by `load_deadline`; running past it (but not past the request's own
        deadline) hands over to the fallbacks, whose time it would otherwise eat."""
        if load_deadline is None or load_deadline >= deadline:
            return await self._ensure_loaded(placement, deadline, ask_agent)
        try:
            return await self._ensure_loaded(placement, load_deadline, ask_agent)
        except DeadlineExceeded as error:
            raise ColdLoadTooSlow(
                f"{placement.model} was not ready on {placement.host} in time to leave its "
                f"fallbacks {deadline - load_deadline:.1f} s of the deadline"
            ) from error

    def _fallback_reserve(self, fallbacks: list[ModelSpec]) -> float:
        """Seconds to keep back from a model's load for its fallbacks: what the quickest
        of them needs to answer (a warm one little, a cold one its last load time).

        Without it an agent waiting for room could spend the whole deadline on the
        first model, and a configured fallback would never get its turn.
        """
        if not fallbacks:
            return 0.0
        needs = []
        for spec in fallbacks:
            replicas = self._cluster.replicas_of(spec.name)
            if any(r.state is ReplicaState.READY for r in replicas):
                needs.append(_WARM_FALLBACK_RESERVE_SECONDS)
            else:
                loaded = max((r.load_seconds for r in replicas), default=0.0)
                needs.append(_WARM_FALLBACK_RESERVE_SECONDS + max(loaded, _UNKNOWN_LOAD_SECONDS))
        return min(needs)

    def _check_cold_load_fits(self, placement: Placement, deadline: float) -> None:
        """A request only goes into a cold load its deadline can survive."""
        if not placement.load_required or placement.expected_load_seconds <= 0:
            return
        remaining = deadline - self._clock()
        if placement.expected_load_seconds > remaining:
            raise ColdLoadTooSlow(
                f"{placement.model} needs a cold load on {placement.host} (last took "
                f"{placement.expected_load_seconds:.1f} s) but only {max(remaining, 0):.1f} s "
                "remain before the deadline; raise the deadline or configure a fallback"
            )

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()

    async def _ensure_loaded(
        self, placement: Placement, deadline: float, ask_agent: bool = False
    ) -> LoadResult:
        replica = placement.replica
        if (
            not ask_agent
            and replica is not None
            and replica.state is ReplicaState.READY
            and replica.endpoint
        ):
            self._touch(placement.host, placement.model)
            return LoadResult(
                replica.endpoint,
                replica.gpu_index,
                replica.gpu_uuid,
                False,
                0.0,
                replica.placement,
            )
        self._lease_until[(placement.host, placement.model)] = self._clock() + _LEASE_SECONDS
        # Only a call to the agent gets a span: a warm replica costs nothing to "load".
        with _tracer.start_as_current_span(f"load {placement.model}") as load_span:
            load = await self._agents.ensure_loaded(
                placement.host,
                placement.model,
                self._remaining(deadline),
                lease_seconds=_LEASE_SECONDS,
                # Asked because its server could not be reached: the agent checks it.
                verify=ask_agent,
            )
            load_span.set_attributes(
                {
                    "warmpath.cold_start": load.cold_start,
                    "warmpath.woken": load.woken,
                    "warmpath.load_seconds": load.load_seconds,
                }
            )
        return load

    def _touch(self, host: str, model: str) -> None:
        """Counts a warm request; takes a lease at once if the model has none from us."""
        key = (host, model)
        self._warm_requests[key] = self._warm_requests.get(key, 0) + 1
        if self._lease_until.get(key, 0.0) <= self._clock():
            self._renew(key)

    async def keep_leases(self, every_seconds: float = _LEASE_RENEW_SECONDS) -> None:
        """Renews, every few seconds, the lease on each model with requests in flight,
        and tells the agents how many warm requests each model served meanwhile."""
        while True:
            await asyncio.sleep(every_seconds)
            for key in {k for k, n in self._in_flight.items() if n > 0} | set(self._warm_requests):
                self._renew(key)

    def _renew(self, key: tuple[str, str]) -> None:
        host, model = key
        self._lease_until[key] = self._clock() + _LEASE_SECONDS
        served = self._warm_requests.pop(key, 0)

        async def renew() -> None:
            try:
                await self._agents.ensure_loaded(
                    host,
                    model,
                    _LEASE_CALL_TIMEOUT_SECONDS,
                    warm_requests=served,
                    lease_seconds=_LEASE_SECONDS,
                )
            except WarmpathError as error:
                self._lease_until.pop(key, None)
                logger.debug("lease on %s at %s not renewed: %s", model, host, error.message)

        task = asyncio.create_task(renew())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline expired before a backend could answer")
        return remaining

    def _chain(self, spec: ModelSpec, caller: Caller = ANONYMOUS) -> list[ModelSpec]:
        """The model, then the whole fallback graph below it, nearest first: its own
        fallbacks, then theirs, and so on; within each step those already warm
        somewhere first (a cold fallback adds a load to a failure), then in configured
        order; each model once; less those the caller may not use (the walk still goes
        through them: the operator's graph says what to try next)."""
        seen = {spec.name}
        walk: list[ModelSpec] = []
        step = [spec]
        while step:
            names = [name for s in step for name in s.fallbacks]
            following = []
            for name in names:
                if name not in seen:
                    seen.add(name)
                    following.append(self._registry.get(name))
            following.sort(key=lambda f: not self._is_warm(f.name))
            walk.extend(following)
            step = following
        return [spec, *(f for f in walk if caller.may_use(f.name))]

    def _is_warm(self, model: str) -> bool:
        return any(r.state is ReplicaState.READY for r in self._cluster.replicas_of(model))

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


def _exhausted(last_error: WarmpathError | None, hops: list[FallbackHop]) -> WarmpathError:
    if last_error is None:
        return Unavailable("no model in the chain could be tried")
    if len(hops) <= 1:
        return last_error
    tried = "; ".join(f"{hop.from_model}: {hop.reason}" for hop in hops)
    return type(last_error)(f"every model in the fallback chain failed ({tried})")


def _placement_attributes(
    resolved: ResolvedModel, placement: Placement
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "warmpath.model": placement.model,
        "warmpath.resolution": resolved.resolution.value,
        "warmpath.host": placement.host,
        "warmpath.route.reason": placement.reason.value,
        "warmpath.route.explanation": placement.explanation,
        "warmpath.load_required": placement.load_required,
    }
    if placement.reason is not RouteReason.RESIDENT:
        # Worth its cost only when the choice was not simply "already resident".
        attributes["warmpath.route.candidates"] = [
            f"{c.host} score={c.score:g}"
            + (f" ({c.rejected_because})" if c.rejected_because else "")
            for c in placement.candidates
        ]
    if resolved.alias:
        attributes["warmpath.alias"] = resolved.alias
    if resolved.auto_class:
        attributes["warmpath.auto.class"] = resolved.auto_class
        attributes["warmpath.auto.confidence"] = resolved.auto_confidence
    if placement.replica is not None:
        attributes["warmpath.gpu.index"] = placement.replica.gpu_index
        attributes["warmpath.gpu.uuid"] = placement.replica.gpu_uuid
    return attributes


def _response_attributes(completion: Completion, route: RouteTaken) -> dict[str, AttributeValue]:
    return {
        GEN_AI_RESPONSE_MODEL: route.served_model,
        GEN_AI_RESPONSE_FINISH_REASONS: [completion.finish_reason.value],
        GEN_AI_USAGE_INPUT_TOKENS: completion.usage.input_tokens,
        GEN_AI_USAGE_OUTPUT_TOKENS: completion.usage.output_tokens,
        "warmpath.host": route.host,
        "warmpath.gpu.uuid": route.gpu_uuid,
        "warmpath.cold_start": route.cold_start,
        "warmpath.woken": route.woken,
        "warmpath.fallback_hops": len(route.fallback_hops),
    }


def _check_permission(caller: Caller, resolved: ResolvedModel) -> None:
    if not caller.may_use(resolved.spec.name):
        how = (
            f" (which {resolved.requested!r} resolved to)"
            if resolved.requested != resolved.spec.name
            else ""
        )
        raise PermissionDenied(
            f"caller {caller.name} may not use {resolved.spec.name}{how}; "
            f"allowed: {', '.join(sorted(caller.models))}"
        )
