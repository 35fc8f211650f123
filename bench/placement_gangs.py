"""Hosts whose models span GPUs or host RAM, in the placement simulator.

The simulator's Simulation (bench/simulator/simulation.py) with gangs: a model is
placed by the agent's shared placement code (gang.plan_gang: one GPU, layer split,
tensor parallel, partial offload as the last resort, host RAM accounting; with
eviction.py's victims, hot set and waiting rules, as ResidencyManager._place calls
them). The scenarios are in placement_hosts.py.

Policies:

* warmpath: the agent's own rules (protected_models, plan_gang, its waits).
* LRU, keep_alive expiry (5 min) + LRU, and Belady-style offline (farthest next use):
  Ollama's scheduler with that order. Idle models are evicted in the policy's order
  until plan_gang finds the model a GPU-only place that evicts nothing more; a model
  that fits on no set of GPUs is offloaded only once no idle model is left to evict,
  and waits while a busy one holds GPU memory (Ollama waits for a busy runner to go
  idle before unloading it). Victims the placement turns out not to need are kept.

A request on an offloaded model keeps it busy for its service time times the
expected slowdown (gang.expected_slowdown). A model's shape is what the agent
assumes for an Ollama model (equal layers, a tenth of the model on every GPU that
holds layers, the whole file in page cache when offloaded); vLLM models are placed
whole or over exactly `tensor_parallel` GPUs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from simulator.cluster import GB, Cluster, Loaded
from simulator.policies import (
    AGENT_MIN_RESIDENCY_SECONDS,
    BELADY,
    KEEP_ALIVE_SECONDS,
    LAST_CHANCE_SECONDS,
    LRU,
    WARMPATH,
    Chooser,
    Decision,
    Load,
    Policy,
    farthest_next_use,
)
from simulator.simulation import SERVICE_SECONDS, Outcome, Simulation
from simulator.traces import Request, Workload
from warmpath_agent.eviction import Candidate, GpuRoom, NoRoom, ResidentModel, protected_models
from warmpath_agent.gang import plan_gang
from warmpath_agent.inventory import GpuReading
from warmpath_agent.layouts import (
    GangPlan,
    HostRamShort,
    Layout,
    ModelShape,
    Offload,
    expected_slowdown,
)

_ON_EVERY_GPU = 0.1


@dataclass(frozen=True)
class HostModel:
    name: str
    size_gb: float
    layers: int
    """Repeating layers (llama.cpp, Ollama); 0: vLLM, placed whole or tensor parallel."""
    load_seconds: float
    service_seconds: float = SERVICE_SECONDS
    """How long a request keeps the model busy when it is wholly on GPUs."""
    tensor_parallel: int = 1
    offload: Offload = Offload.ALLOWED

    @property
    def shape(self) -> ModelShape:
        total = int(self.size_gb * GB)
        if not self.layers:
            return ModelShape(total, tensor_parallel=self.tensor_parallel)
        on_every_gpu = int(total * _ON_EVERY_GPU)
        return ModelShape(
            total,
            self.layers,
            (total - on_every_gpu) // self.layers,
            splittable=True,
            offload=self.offload,
            page_cache_bytes=total,
        )


def ollama(name: str, size_gb: float, layers: int, service_seconds: float) -> HostModel:
    return HostModel(name, size_gb, layers, 2.0 + 0.9 * size_gb, service_seconds)


@dataclass(frozen=True)
class HostScenario(Workload):
    models: tuple[HostModel, ...] = ()
    host_ram_gb: float = 0.0
    gpu_name: str = ""
    notes: str = ""

    def host(self) -> list[GpuReading]:
        return [
            GpuReading(i, f"GPU-{i}", self.gpu_name, int(gb * GB), 0, int(gb * GB), simulated=True)
            for i, gb in enumerate(self.gpu_gb)
        ]


def host_scenario(
    name: str,
    summary: str,
    gpu_name: str,
    gpu_gb: tuple[float, ...],
    host_ram_gb: float,
    models: tuple[HostModel, ...],
    make_trace: Callable[[random.Random, float], list[Request]],
    notes: str,
    hours: float = 4.0,
) -> HostScenario:
    return HostScenario(
        name,
        tuple(m.size_gb for m in models),
        tuple(m.load_seconds for m in models),
        gpu_gb,
        hours,
        summary,
        make_trace,
        models=models,
        host_ram_gb=host_ram_gb,
        gpu_name=gpu_name,
        notes=notes,
    )


@dataclass
class GangLoaded(Loaded):
    gpu_bytes: dict[int, int] = field(default_factory=dict)
    host_bytes: int = 0
    layout: Layout = Layout.SINGLE
    slowdown: float = 1.0


@dataclass(frozen=True)
class GangLoad(Load):
    plan: GangPlan | None = None


@dataclass
class HostOutcome(Outcome):
    served: int = 0
    served_offloaded: int = 0
    offloaded_slowdown: float = 0.0
    """Summed over the requests served offloaded."""
    refused_host_ram: int = 0
    served_models: set[int] = field(default_factory=set)

    @property
    def offloaded_share(self) -> float:
        return self.served_offloaded / max(self.served, 1)

    @property
    def mean_offloaded_slowdown(self) -> float:
        """Expected time per token of a request served offloaded, against the model on GPUs."""
        return self.offloaded_slowdown / self.served_offloaded if self.served_offloaded else 1.0


@dataclass
class HostCluster(Cluster):
    refused_host_ram: int = 0

    @property
    def scenario(self) -> HostScenario:
        assert isinstance(self.workload, HostScenario)
        return self.workload

    def gangs(self, gone: Iterable[int] = ()) -> list[GangLoaded]:
        left = set(self.loaded) - set(gone)
        return [m for m in self.loaded.values() if m.model in left and isinstance(m, GangLoaded)]

    def free(self, gpu: int, gone: Iterable[int] = ()) -> int:
        used = sum(m.gpu_bytes.get(gpu, 0) for m in self.gangs(gone))
        return int(self.workload.gpu_gb[gpu] * GB) - used

    def host_free(self, gone: Iterable[int] = ()) -> int:
        used = sum(m.host_bytes for m in self.gangs(gone))
        return int(self.scenario.host_ram_gb * GB) - used

    def rooms(
        self, now: float, gone: Iterable[int] = (), *, all_busy: bool = False
    ) -> list[GpuRoom]:
        """The GPUs as the agent lists them: a gang on each of its GPUs, with its share."""
        gone = set(gone)
        return [
            GpuRoom(
                gpu,
                self.free(gpu, gone),
                tuple(
                    ResidentModel(
                        model=str(m.model),
                        size_bytes=m.gpu_bytes[gpu],
                        load_seconds=self.workload.load_seconds[m.model],
                        demand_per_minute=self.demand.per_minute(str(m.model), now),
                        last_used=m.last_used,
                        resident_since=m.ready_at,
                        in_use=all_busy or self.busy(m, now),
                        host_bytes=m.host_bytes,
                    )
                    for m in self.gangs(gone)
                    if gpu in m.gpu_bytes
                ),
            )
            for gpu in range(len(self.workload.gpu_gb))
        ]

    def shape(self, model: int) -> ModelShape:
        return self.scenario.models[model].shape

    def footprint(self, model: int) -> int:
        resident = self.loaded.get(model)
        if isinstance(resident, GangLoaded):
            return sum(resident.gpu_bytes.values())
        return self.shape(model).total_bytes

    def plan(
        self,
        model: int,
        now: float,
        rooms: Sequence[GpuRoom],
        min_residency: float,
        **kwargs: object,
    ) -> GangPlan | NoRoom | HostRamShort:
        return plan_gang(rooms, self.shape(model), now, min_residency, model=str(model), **kwargs)  # type: ignore[arg-type]


def gang_warmpath(min_residency_seconds: float) -> Chooser:
    """The agent's rules (ResidencyManager._place): the hot set, plan_gang with host RAM,
    and its waits."""

    def choose(cluster: Cluster, model: int, now: float, patience: float) -> Decision:
        assert isinstance(cluster, HostCluster)
        rooms = cluster.rooms(now)
        candidates = [
            Candidate(
                str(known),
                cluster.footprint(known),
                cluster.workload.load_seconds[known],
                cluster.demand.hot_set_per_minute(str(known), now),
            )
            for known in range(len(cluster.workload.sizes_gb))
        ]
        protected = protected_models(rooms, candidates, cluster.hot_set)
        cluster.hot_set = protected
        plan = cluster.plan(
            model,
            now,
            rooms,
            min_residency_seconds,
            protected=protected,
            host_free_bytes=cluster.host_free(),
        )
        if isinstance(plan, HostRamShort):
            cluster.refused_host_ram += 1
            return "refuse"
        if isinstance(plan, NoRoom):
            return "wait" if plan.fits_after_waiting else "refuse"
        if 0 < plan.cheaper_in_seconds <= patience:
            return "wait"
        if plan.waits_for_unprotected and patience > LAST_CHANCE_SECONDS:
            return "wait"
        return GangLoad(plan.gpu_index, tuple(int(v.model) for v in plan.victims), plan)

    return choose


Order = Callable[[Cluster, Loaded, float], float]


def in_order(order: Order) -> Chooser:
    """Ollama's scheduler with `order` (smallest key evicted first): see the module
    docstring."""

    def choose(cluster: Cluster, model: int, now: float, patience: float) -> Decision:
        assert isinstance(cluster, HostCluster)

        def plan(gone: Sequence[int]) -> GangPlan | NoRoom | HostRamShort:
            # Every resident busy: plan_gang evicts nothing itself, the order does.
            rooms = cluster.rooms(now, gone, all_busy=True)
            return cluster.plan(model, now, rooms, 0.0, host_free_bytes=cluster.host_free(gone))

        idle = sorted(
            (m for m in cluster.loaded.values() if not cluster.busy(m, now)),
            key=lambda m: order(cluster, m, now),
        )
        gone: list[int] = []
        found = plan(gone)
        while idle and not (isinstance(found, GangPlan) and found.layout is not Layout.OFFLOAD):
            gone.append(idle.pop(0).model)
            found = plan(gone)
        busy = len(cluster.loaded) > len(gone)
        if not isinstance(found, GangPlan):
            # Only busy models are left: they hold the room (GPU or host RAM) it needs.
            if busy:
                return "wait"
            cluster.refused_host_ram += isinstance(found, HostRamShort)
            return "refuse"
        if found.layout is Layout.OFFLOAD and busy and patience > LAST_CHANCE_SECONDS:
            return "wait"
        for victim in reversed(gone[:]):
            kept = [g for g in gone if g != victim]
            again = plan(kept)
            if (
                isinstance(again, GangPlan)
                and again.layout is found.layout
                and again.gpu_layers >= found.gpu_layers
            ):
                gone, found = kept, again
        return GangLoad(found.gpu_index, tuple(gone), found)

    return choose


def least_recently_used(cluster: Cluster, candidate: Loaded, now: float) -> float:
    return candidate.last_used


def host_policies(trace: Sequence[Request]) -> list[Policy]:
    residency = AGENT_MIN_RESIDENCY_SECONDS
    lru = in_order(least_recently_used)
    return [
        Policy(WARMPATH, gang_warmpath(residency), min_residency=residency),
        Policy(LRU, lru),
        Policy("Ollama-style keep_alive (5 min) + LRU", lru, KEEP_ALIVE_SECONDS),
        Policy(BELADY, in_order(farthest_next_use(trace))),
    ]


class HostSimulation(Simulation):
    """simulation.Simulation on a host whose models may span GPUs or host RAM."""

    def __init__(self, scenario: HostScenario, policy: Policy) -> None:
        super().__init__(scenario, policy)
        self.scenario = scenario
        self.cluster: HostCluster = HostCluster(scenario)
        self.outcome: HostOutcome = HostOutcome()

    def run(self, trace: Sequence[Request]) -> HostOutcome:
        super().run(trace)
        self.outcome.refused_host_ram = self.cluster.refused_host_ram
        return self.outcome

    def load(self, model: int, decision: Load, now: float) -> Loaded:
        assert isinstance(decision, GangLoad)
        assert decision.plan is not None
        plan = decision.plan
        loaded = super().load(model, decision, now)
        offloaded = plan.layout is Layout.OFFLOAD
        resident = GangLoaded(
            **vars(loaded),
            gpu_bytes=dict(zip(plan.gpu_indexes, plan.gpu_bytes, strict=True)),
            host_bytes=plan.host_bytes,
            layout=plan.layout,
            slowdown=expected_slowdown(plan.gpu_layers, plan.total_layers) if offloaded else 1.0,
        )
        self.cluster.loaded[model] = resident
        return resident

    def serve(self, resident: Loaded, arrived: float, now: float) -> None:
        super().serve(resident, arrived, now)
        assert isinstance(resident, GangLoaded)
        service = self.scenario.models[resident.model].service_seconds * resident.slowdown
        resident.busy_until = max(resident.busy_until, max(now, resident.ready_at) + service)
        self.outcome.served += 1
        if resident.layout is Layout.OFFLOAD:
            self.outcome.served_offloaded += 1
            self.outcome.offloaded_slowdown += resident.slowdown
        self.outcome.served_models.add(resident.model)
