"""Route and Generate: check the request once, place it, load the model if needed, relay
the stream.

Before the first chunk reaches the caller, a failure may be retried on another replica
(only one that provably reached no model server, or a try abandoned as silent by its
first-token timeout: warmpath_router.outcome, first_token), the model's agent may be
asked once to restart a server found down, and then the fallback graph is walked
(warmpath_router.fallback). After the first chunk the stream is committed: a failure
ends it. INVALID_ARGUMENT, NOT_FOUND and PERMISSION_DENIED are never retried.
The whole rule and its reasons: docs/architecture.md ("Failures before the first
chunk") and docs/failures.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Set

from opentelemetry import trace

from warmpath_common.config import ModelSpec, RouterSettings
from warmpath_common.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ResourceExhausted,
    Unavailable,
    WarmpathError,
)
from warmpath_common.generation import GenerationRequest, TextDelta
from warmpath_common.security import Caller
from warmpath_common.stream_metrics import measured_stream
from warmpath_common.telemetry import current_trace_id, request_attributes
from warmpath_router.breaker import CircuitBreakers
from warmpath_router.cluster import ClusterView
from warmpath_router.decision import (
    Decision,
    FallbackHop,
    RoutedCompletion,
    RouteListener,
    RouteTaken,
)
from warmpath_router.fallback import (
    FALLBACK_ON,
    exhausted,
    fallback_chain,
    fallback_reserve,
    link_hops,
)
from warmpath_router.first_token import FirstTokenTimes, SilentTry, first_token_within
from warmpath_router.leases import RENEW_EVERY_SECONDS, Leases
from warmpath_router.loads import ModelLoads, remaining_before
from warmpath_router.metrics import GenerateMeter, RouterMetrics
from warmpath_router.outcome import ReplicaFailed, TryProgress, judge_failure
from warmpath_router.ports import AdapterPort, AgentPort
from warmpath_router.registry import ModelRegistry, ResolvedModel
from warmpath_router.retry import RetryBudget
from warmpath_router.routing import place
from warmpath_router.span_attributes import placement_attributes, response_attributes
from warmpath_router.validation import CheckedRequest, check_against_model, check_request

__all__ = ["ANONYMOUS", "Relay"]

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


_RETRY_JITTER_SECONDS = 0.05
_RETRY_MIN_REMAINING_SECONDS = 1.0

# Without security every caller may use every model; it is named by its address.
ANONYMOUS = Caller("anonymous")


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
        self._adapters = adapters
        self._settings = settings
        self._clock = clock
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._leases = Leases(agents, self._in_flight, clock)
        self._loads = ModelLoads(agents, self._leases, clock)
        self._callers: Counter[str] = Counter()
        self._retry_budget = retry_budget or RetryBudget()
        self._breakers = breakers or CircuitBreakers()
        self._first_token = FirstTokenTimes()

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    def reconfigure(self, registry: ModelRegistry, settings: RouterSettings) -> None:
        """Applies a reloaded config. Requests in flight finish under the one they began with."""
        self._registry = registry
        self._settings = settings

    def decide(self, request: GenerationRequest, caller: Caller = ANONYMOUS) -> Decision:
        """The decision Generate would take now. Loads nothing, sends nothing."""
        resolved = check_request(request, self._settings, self._registry, caller).resolved
        hops: list[FallbackHop] = []
        last_error: WarmpathError | None = None
        # Route answers with the whole decision, so it opens no span of its own; in a
        # caller's trace, its server span carries the outcome.
        span = trace.get_current_span()
        chain = fallback_chain(resolved.spec, self._registry, self._cluster, caller)
        for position, spec in enumerate(chain):
            attempt = self._as_resolved(resolved, spec)
            try:
                if position:
                    # A fallback's own limits: the requested model's were checked on the way in.
                    check_against_model(request, spec)
                placement = place(attempt, self._cluster)
            except (InvalidRequest, *FALLBACK_ON) as error:
                last_error = error
                hops.append(FallbackHop(spec.name, "", error.message))
                continue
            if span.is_recording():
                span.set_attributes(placement_attributes(attempt, placement))
            replica = placement.replica
            return Decision(
                resolved=attempt,
                placement=placement,
                backend=spec.backend,
                gpu_uuid=replica.gpu_uuid if replica else "",
                fallback_chain=tuple(
                    s.name
                    for s in fallback_chain(resolved.spec, self._registry, self._cluster, ANONYMOUS)
                )[1:],
                fallback_hops=link_hops(hops, spec.name),
                trace_id=current_trace_id(),
            )
        raise exhausted(last_error, hops)

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
        self._retry_budget.record_request()
        try:
            async for event in measured_stream(
                self._generate(request, timeout_seconds, caller, on_route),
                GenerateMeter(self._metrics),
                self._metrics.in_flight,
                self._clock,
            ):
                yield event
        finally:
            self._callers[caller.name] -= 1
            if not self._callers[caller.name]:
                del self._callers[caller.name]

    async def _generate(
        self,
        request: GenerationRequest,
        timeout_seconds: float | None,
        caller: Caller,
        on_route: RouteListener | None = None,
    ) -> AsyncGenerator[TextDelta | RoutedCompletion, None]:
        server_span = trace.get_current_span()
        server_span.set_attributes(request_attributes(request, request.model))
        checked = check_request(request, self._settings, self._registry, caller)
        resolved = checked.resolved
        budget = (
            timeout_seconds
            if timeout_seconds is not None
            else self._settings.request_timeout_seconds
        )
        deadline = self._clock() + budget
        hops: list[FallbackHop] = []
        last_error: WarmpathError | None = None
        chain = fallback_chain(resolved.spec, self._registry, self._cluster, caller)
        for position, spec in enumerate(chain):
            tried_hosts: set[str] = set()
            replica_failures: list[WarmpathError] = []
            ask_agent = False
            load_deadline = deadline - fallback_reserve(chain[position + 1 :], self._cluster)
            while True:
                committed = False
                try:
                    if position and not replica_failures:
                        # A fallback's own limits, once: the requested model's were
                        # checked on the way in.
                        check_against_model(request, spec)
                    async for event in self._attempt(
                        checked,
                        spec,
                        hops,
                        deadline,
                        frozenset(tried_hosts),
                        load_deadline,
                        ask_agent=ask_agent,
                        on_route=on_route,
                        fallbacks_left=position + 1 < len(chain),
                    ):
                        committed = True
                        if isinstance(event, RoutedCompletion):
                            server_span.set_attributes(
                                response_attributes(event.completion, event.route)
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
                except (InvalidRequest, *FALLBACK_ON) as caught:
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
        raise exhausted(last_error, hops)

    async def _attempt(
        self,
        checked: CheckedRequest,
        spec: ModelSpec,
        hops: list[FallbackHop],
        deadline: float,
        exclude: frozenset[str] = frozenset(),
        load_deadline: float | None = None,
        *,
        ask_agent: bool = False,
        on_route: RouteListener | None = None,
        fallbacks_left: bool = False,
    ) -> AsyncIterator[TextDelta | RoutedCompletion]:
        """One try at one model on one host: place it, load it if needed, stream from it.
        `spec` is the checked request's model, or a fallback already checked against it.
        `ask_agent`: its server could not be reached; ask the agent for the model, and to
        check that server, even when the view shows it ready.

        The load (and any wait for room at the agent) must end by `load_deadline`,
        which leaves the fallbacks still to try their share of the deadline.
        `fallbacks_left`: a later model in the chain may still be tried; with none,
        and no other host for this one, the try is the last resort and is not cut
        short for a slow first token (only the ceiling and the deadline apply).

        A retryable failure before the first chunk that provably reached no model
        server is raised as ReplicaFailed, naming the host, so the caller can try
        another replica; one that may have reached it is raised as it is.
        """
        request = checked.request
        attempt_resolved = self._as_resolved(checked.resolved, spec)
        with _tracer.start_as_current_span(f"route {spec.name}") as route_span:
            placement = place(
                attempt_resolved,
                self._cluster,
                in_flight=self._in_flight,
                circuit_open=lambda key: self._breakers.open_for(key, self._clock()),
                exclude=exclude,
            )
            if route_span.is_recording():
                route_span.set_attributes(placement_attributes(attempt_resolved, placement))
            self._loads.check_cold_load_fits(placement, deadline)
        key = (placement.host, spec.name)
        self._in_flight[key] += 1
        sent_anything = False
        handed_to_adapter = False
        handed_at = 0.0
        first_token_limit = 0.0
        try:
            load = await self._loads.load_before(placement, load_deadline, deadline, ask_agent)
            outbound = dataclasses.replace(
                request, model=spec.name, max_tokens=request.max_tokens or spec.default_max_tokens
            )
            prompt_chars = len(request.text())
            elsewhere = self._other_hosts(spec, exclude | {placement.host})
            first_token_limit = self._first_token.timeout_for(
                spec,
                self._settings.first_token_timeout,
                prompt_chars,
                last_resort=not fallbacks_left and not elsewhere,
            )
            stream = first_token_within(
                self._adapters.generate(
                    placement.host, load.endpoint, outbound, remaining_before(deadline, self._clock)
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
                fallback_hops=link_hops(hops, spec.name),
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
        if (
            not self._other_hosts(spec, tried_hosts)
            or deadline - self._clock() < _RETRY_MIN_REMAINING_SECONDS
        ):
            return False
        if not self._retry_budget.try_spend():
            logger.info("retry budget spent: not retrying %s elsewhere", spec.name)
            return False
        # Jitter, not cryptography: a pseudo-random pause is what it needs.
        await asyncio.sleep(random.uniform(0, _RETRY_JITTER_SECONDS))  # noqa: S311  # nosec B311
        return True

    def _other_hosts(self, spec: ModelSpec, tried_hosts: Set[str]) -> list[str]:
        """Reachable hosts, not yet tried, that serve `spec`."""
        return [
            view.name
            for view in self._cluster.hosts.values()
            if view.reachable and spec.name in view.servable and view.name not in tried_hosts
        ]

    async def close(self) -> None:
        self._leases.close()

    async def keep_leases(self, every_seconds: float = RENEW_EVERY_SECONDS) -> None:
        """Renews the leases on the models in use until cancelled (see leases.py)."""
        await self._leases.keep(every_seconds)

    @staticmethod
    def _as_resolved(original: ResolvedModel, spec: ModelSpec) -> ResolvedModel:
        if spec.name == original.spec.name:
            return original
        return dataclasses.replace(original, spec=spec, explanation=f"fallback to {spec.name}")
