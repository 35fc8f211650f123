"""Getting a try's model ready: a warm replica only takes a lease, a cold one is loaded
by its agent within the deadline, and a load that would eat the fallbacks' share of
the deadline hands over to them (ColdLoadTooSlow)."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import trace

from warmpath_common.convert import ResidencyState
from warmpath_common.errors import DeadlineExceeded
from warmpath_router.fallback import ColdLoadTooSlow
from warmpath_router.leases import LEASE_SECONDS, Leases
from warmpath_router.ports import AgentPort, LoadResult
from warmpath_router.routing import Placement

__all__ = ["ModelLoads", "remaining_before"]

_tracer = trace.get_tracer(__name__)


def remaining_before(deadline: float, clock: Callable[[], float]) -> float:
    """Seconds left before `deadline`; DeadlineExceeded when none are."""
    remaining = deadline - clock()
    if remaining <= 0:
        raise DeadlineExceeded("the request's deadline expired before a backend could answer")
    return remaining


class ModelLoads:
    """Loads models for tries, through the agents, holding leases on those in use."""

    def __init__(self, agents: AgentPort, leases: Leases, clock: Callable[[], float]) -> None:
        self._agents = agents
        self._leases = leases
        self._clock = clock

    async def load_before(
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

    def check_cold_load_fits(self, placement: Placement, deadline: float) -> None:
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

    async def _ensure_loaded(
        self, placement: Placement, deadline: float, ask_agent: bool = False
    ) -> LoadResult:
        replica = placement.replica
        if (
            not ask_agent
            and replica is not None
            and replica.state is ResidencyState.READY
            and replica.endpoint
        ):
            self._leases.touch(placement.host, placement.model)
            return LoadResult(
                replica.endpoint,
                replica.gpu_index,
                replica.gpu_uuid,
                False,
                0.0,
                replica.placement,
            )
        self._leases.taken(placement.host, placement.model)
        # Only a call to the agent gets a span: a warm replica costs nothing to "load".
        with _tracer.start_as_current_span(f"load {placement.model}") as load_span:
            load = await self._agents.ensure_loaded(
                placement.host,
                placement.model,
                remaining_before(deadline, self._clock),
                lease_seconds=LEASE_SECONDS,
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
