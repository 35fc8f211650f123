"""The event loop: one trace through one policy (Simulation), and what it cost (Outcome):
arrivals, plus re-planning whenever room may appear, as the agent waits for room."""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from simulator.cluster import Cluster, Loaded
from simulator.policies import LAST_CHANCE_SECONDS, Decision, Load, Policy
from simulator.traces import Request, Workload

SERVICE_SECONDS = 2.0
# An interactive caller's deadline; the router's default (300 s) is longer.
DEADLINE_SECONDS = 120.0
# The agent stops waiting for room this long before the load could no longer finish.
ANSWER_MARGIN_SECONDS = 1.0


@dataclass
class Outcome:
    cold_loads: int = 0
    load_seconds: float = 0.0
    timed_out: int = 0
    """Waited for room until the deadline left no time to load (RESOURCE_EXHAUSTED)."""
    refused: int = 0
    """Could never fit: refused at once."""
    waits: list[float] = field(default_factory=list)

    @property
    def p99_wait(self) -> float:
        return statistics.quantiles(self.waits, n=100)[98]


@dataclass
class _Waiting:
    at: float
    give_up_at: float


class Simulation:
    """One trace through one policy: arrivals, plus re-planning whenever room may appear."""

    def __init__(self, workload: Workload, policy: Policy) -> None:
        self.workload = workload
        self.policy = policy
        self.cluster = Cluster(workload)
        self.outcome = Outcome()
        # Models waiting for room, first come first; each with its waiting requests.
        self.waiting: dict[int, list[_Waiting]] = {}
        self.timers: list[float] = []
        self.scheduled: set[float] = set()

    def run(self, trace: Sequence[Request]) -> Outcome:
        arrivals = iter(trace)
        request = next(arrivals, None)
        while request is not None or (self.waiting and self.timers):
            if self.timers and (request is None or self.timers[0] < request.at):
                now = heapq.heappop(self.timers)
                self.scheduled.discard(now)
                self.expire(now)
                self.retry_waiting(now)
            else:
                assert request is not None
                now = request.at
                if self.expire(now):
                    self.retry_waiting(now)
                self.arrive(request)
                request = next(arrivals, None)
            if self.waiting:
                self.schedule_recheck(now)
        return self.outcome

    def arrive(self, request: Request) -> None:
        now, model = request.at, request.model
        self.cluster.demand.record(str(model), now)
        resident = self.cluster.loaded.get(model)
        if resident is not None:
            self.serve(resident, request.at, now)
        elif model in self.waiting:
            self.waiting[model].append(self.waiter(request))
        else:
            patience = self.waiter(request).give_up_at - now
            decision = self.decide(model, now, patience)
            if isinstance(decision, Load):
                self.serve(self.load(model, decision, now), request.at, now)
            elif decision == "wait":
                self.waiting[model] = [self.waiter(request)]
            else:
                self.outcome.refused += 1
                self.outcome.waits.append(DEADLINE_SECONDS)

    def decide(self, model: int, now: float, patience: float) -> Decision:
        return self.policy.choose(self.cluster, model, now, patience)

    def waiter(self, request: Request) -> _Waiting:
        load = self.workload.load_seconds[request.model]
        return _Waiting(request.at, request.at + DEADLINE_SECONDS - load - ANSWER_MARGIN_SECONDS)

    def retry_waiting(self, now: float) -> None:
        for model in list(self.waiting):
            still = [w for w in self.waiting[model] if w.give_up_at > now]
            gave_up = len(self.waiting[model]) - len(still)
            self.outcome.timed_out += gave_up
            self.outcome.waits.extend([DEADLINE_SECONDS] * gave_up)
            if not still:
                del self.waiting[model]
                continue
            self.waiting[model] = still
            decision = self.decide(model, now, still[0].give_up_at - now)
            if isinstance(decision, Load):
                resident = self.load(model, decision, now)
                for waiting in self.waiting.pop(model):
                    self.serve(resident, waiting.at, now)

    def load(self, model: int, decision: Load, now: float) -> Loaded:
        for victim in decision.victims:
            del self.cluster.loaded[victim]
        took = self.workload.load_seconds[model]
        self.outcome.cold_loads += 1
        self.outcome.load_seconds += took
        return self.ready_in(model, decision.gpu, took, now)

    def ready_in(self, model: int, gpu: int, took: float, now: float) -> Loaded:
        """`model` on `gpu`, ready `took` seconds after `now`."""
        resident = Loaded(model, gpu, now + took, now, now)
        self.cluster.loaded[model] = resident
        return resident

    def serve(self, resident: Loaded, arrived: float, now: float) -> None:
        start = max(now, resident.ready_at)
        self.outcome.waits.append(start - arrived)
        resident.last_used = max(resident.last_used, now)
        resident.busy_until = max(resident.busy_until, start + SERVICE_SECONDS)

    def expire(self, now: float) -> bool:
        keep_alive = self.policy.keep_alive
        if keep_alive is None:
            return False
        idle = [
            m
            for m in self.cluster.loaded.values()
            if not self.cluster.busy(m, now) and now - m.last_used > keep_alive
        ]
        for resident in idle:
            del self.cluster.loaded[resident.model]
        return bool(idle)

    def schedule_recheck(self, now: float) -> None:
        """The next moment a model may become evictable, or a waiter gives up."""
        moments = [
            w.give_up_at - LAST_CHANCE_SECONDS / 2
            for waiting in self.waiting.values()
            for w in waiting
        ]
        moments += [w.give_up_at for waiting in self.waiting.values() for w in waiting]
        for m in self.cluster.loaded.values():
            moments += [m.busy_until, m.ready_at, m.ready_at + self.policy.min_residency]
            if self.policy.keep_alive is not None:
                moments.append(m.last_used + self.policy.keep_alive)
        later = [moment for moment in moments if moment > now]
        if later:
            soonest = min(later) + 1e-6
            if soonest not in self.scheduled:
                self.scheduled.add(soonest)
                heapq.heappush(self.timers, soonest)


def simulate(workload: Workload, trace: Sequence[Request], policy: Policy) -> Outcome:
    return Simulation(workload, policy).run(trace)
