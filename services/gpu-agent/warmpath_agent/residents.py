"""What the agent knows of one model on this host (Residency), of a load
(LoadOutcome) and of the whole host (HostState): the records residency.py and its
jobs write, and the servicer and server watch read."""

from __future__ import annotations

from dataclasses import dataclass

from warmpath_agent.drivers import RunningModel
from warmpath_agent.inventory import GpuReading
from warmpath_agent.layouts import Layout, describe, expected_slowdown
from warmpath_agent.warm_tier import SleepKind
from warmpath_common.convert import PlacementInfo, ResidencyState

__all__ = [
    "OFF_GPU_STATES",
    "SERVING_STATES",
    "HostState",
    "LoadOutcome",
    "Residency",
    "ResidencyState",
]


# States in which a model's server runs and is watched.
SERVING_STATES = (ResidencyState.READY, ResidencyState.UNRESPONSIVE)
# States in which a model holds no GPU memory the placement may count on.
OFF_GPU_STATES = (ResidencyState.FAILED, ResidencyState.ASLEEP)


@dataclass(frozen=True, slots=True)
class Residency:
    """One model's residency on this host, as of one moment."""

    model: str
    state: ResidencyState
    gpu_index: int
    gpu_uuid: str
    estimated_bytes: int
    pinned: bool
    measured_bytes: int = 0
    running: RunningModel | None = None
    load_seconds: float = 0.0
    ready_since: float | None = None
    last_used: float = 0.0
    failure_reason: str = ""
    gpu_indexes: tuple[int, ...] = ()
    """Every GPU holding part of the model (layouts.py); empty: `gpu_index` alone."""
    gpu_uuids: tuple[str, ...] = ()
    gpu_bytes: tuple[int, ...] = ()
    """Memory on each GPU of `gpu_indexes`: estimated, or measured once loaded."""
    layout: Layout = Layout.SINGLE
    layers_on_gpu: tuple[int, ...] = ()
    total_layers: int = 0
    host_bytes: int = 0
    """Host RAM an offloaded model uses (its offloaded layers and the GGUF's page cache)."""
    placement_reason: str = ""
    """Why the model is offloaded, when it is."""
    wake_seconds: float = 0.0
    """Seconds its last wake from sleep took here (0: never woken)."""
    woken: bool = False
    """Its last load was a wake from sleep, not a load from disk."""
    asleep_bytes: int = 0
    """Host RAM its weights hold while it is asleep."""
    asleep_gpu_bytes: int = 0
    """GPU memory its server still holds asleep (CUDA context and the like), on its GPUs."""
    sleep_kind: SleepKind | None = None
    """How it sleeps, while it is asleep."""

    @property
    def footprint_bytes(self) -> int:
        return self.measured_bytes or self.estimated_bytes

    @property
    def on_gpus(self) -> tuple[int, ...]:
        return self.gpu_indexes or (self.gpu_index,)

    def bytes_on(self, gpu_index: int) -> int:
        """Its share of `gpu_index`'s memory (0 if it is not there)."""
        if not self.gpu_bytes:
            return self.footprint_bytes if gpu_index == self.gpu_index else 0
        return dict(zip(self.gpu_indexes, self.gpu_bytes, strict=True)).get(gpu_index, 0)

    @property
    def bytes_per_gpu(self) -> dict[int, int]:
        """Its share on each of its GPUs, by GPU index (as the memory book holds it)."""
        return {i: self.bytes_on(i) for i in self.on_gpus}

    @property
    def where(self) -> str:
        gpus = self.on_gpus
        return f"GPU {gpus[0]}" if len(gpus) == 1 else "GPUs " + ", ".join(map(str, gpus))

    @property
    def description(self) -> str:
        """Where and how it is placed, in words (gang.describe)."""
        return describe(self.layout, self.on_gpus, self.layers_on_gpu, self.total_layers)

    @property
    def placement(self) -> PlacementInfo:
        """Where each part of it lives, for the wire (convert.placement_to_proto)."""
        layers = sum(self.layers_on_gpu)
        return PlacementInfo(
            layout=self.layout.value,
            gpu_indexes=self.on_gpus,
            gpu_uuids=self.gpu_uuids or (self.gpu_uuid,),
            layer_shares=tuple(n / layers for n in self.layers_on_gpu) if layers else (),
            gpu_memory_bytes=self.gpu_bytes or (self.footprint_bytes,),
            gpu_layers=layers if self.layout is Layout.OFFLOAD else self.total_layers,
            total_layers=self.total_layers,
            host_memory_bytes=self.host_bytes,
            expected_slowdown=self.expected_slowdown,
            description=self.description,
            reason=self.placement_reason,
        )

    @property
    def expected_slowdown(self) -> float:
        if self.layout is not Layout.OFFLOAD:
            return 1.0
        return expected_slowdown(sum(self.layers_on_gpu), self.total_layers)


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    residency: Residency
    cold_start: bool
    load_seconds: float
    """Seconds this call took to have the model resident: any wait for room and the
    load (its own or a concurrent one); 0 when it was ready. EnsureLoaded's `load_seconds`."""
    evicted: tuple[str, ...]
    woken: bool = False


@dataclass(frozen=True, slots=True)
class HostState:
    host: str
    simulated: bool
    gpus: tuple[GpuReading, ...]
    models: tuple[Residency, ...]
    servable_models: tuple[str, ...]
    observed_at: float
