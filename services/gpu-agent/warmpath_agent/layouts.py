"""How a model may lie over one host's GPUs and host RAM: the layouts (one GPU, layer
split, tensor parallel, partial offload), a model's shape in memory, a gang plan, and
the layer arithmetic behind them. gang.py chooses among them; docs/big-models.md
explains the choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from warmpath_agent.eviction import GpuRoom, RankedByVictims, ResidentModel, evictable

__all__ = [
    "HOST_RAM_SLOWDOWN_PER_LAYER",
    "GangNeeds",
    "GangPlan",
    "HostRamShort",
    "Layout",
    "ModelShape",
    "Offload",
    "describe",
    "expected_slowdown",
    "offload_plan",
    "proportional",
    "split_layers",
]


# Bytes each GPU of a gang needs, and the layers each holds (empty: not by layer).
GangNeeds = tuple[list[int], tuple[int, ...]]


class Offload(StrEnum):
    """Whether a model may run with some layers in host RAM."""

    NEVER = "never"
    ALLOWED = "allowed"
    """Only when no GPU-only placement exists (Ollama's default)."""
    PREFERRED = "preferred"
    """Also rather than evict: an offload on free memory beats a GPU-only eviction."""


class Layout(StrEnum):
    SINGLE = "single"
    LAYER_SPLIT = "layer_split"
    TENSOR_PARALLEL = "tensor_parallel"
    OFFLOAD = "offload"


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What placement needs to know about a model's memory."""

    total_bytes: int
    """The whole model on one GPU: weights, KV cache and scratch."""
    layers: int = 0
    """Repeating layers; 0 (unknown): no layer split and no offload."""
    layer_bytes: int = 0
    """One layer's weights and KV cache. The rest (embeddings, output, scratch) is
    needed on every GPU that holds layers."""
    tensor_parallel: int = 1
    """Exactly this many GPUs, each holding 1/N (vLLM, SGLang); 1: not tensor parallel."""
    splittable: bool = False
    """May be split by layers over several GPUs (llama.cpp, Ollama)."""
    offload: Offload = Offload.NEVER
    page_cache_bytes: int = 0
    """Host RAM an offload needs besides its offloaded layers (the mmapped GGUF)."""

    @property
    def base_bytes(self) -> int:
        return max(0, self.total_bytes - self.layers * self.layer_bytes)

    @property
    def by_layer(self) -> bool:
        return self.layers > 0 and self.layer_bytes > 0

    def gpu_bytes(self, layers: int) -> int:
        """Memory one GPU needs to hold `layers` of the layers."""
        return self.base_bytes + layers * self.layer_bytes

    def layers_fitting(self, room: int) -> int:
        if not self.by_layer or room < self.base_bytes + self.layer_bytes:
            return 0
        return min(self.layers, (room - self.base_bytes) // self.layer_bytes)

    def host_bytes(self, gpu_layers: int) -> int:
        return (self.layers - gpu_layers) * self.layer_bytes + self.page_cache_bytes


@dataclass(frozen=True, slots=True)
class GangPlan(RankedByVictims):
    """Where a model goes (GPUs, layout, bytes per GPU) and what leaves to make room."""

    layout: Layout
    gpu_indexes: tuple[int, ...]
    gpu_bytes: tuple[int, ...]
    """Memory booked on each GPU of `gpu_indexes`, in the same order."""
    victims: tuple[ResidentModel, ...]
    layers_on_gpu: tuple[int, ...] = ()
    """Layers on each GPU (layer split and offload; empty otherwise)."""
    total_layers: int = 0
    host_bytes: int = 0
    """Host RAM the placement uses (offload only)."""
    cheaper_in_seconds: float = 0.0
    """As PlacementPlan.cheaper_in_seconds."""
    waits_for_unprotected: bool = False
    """As PlacementPlan.waits_for_unprotected."""
    protected_victims: int = 0
    offload_reason: str = ""
    """Why the model is offloaded rather than placed on GPUs only."""

    @property
    def gpu_index(self) -> int:
        """The first GPU: what single-GPU callers and fields report."""
        return self.gpu_indexes[0]

    @property
    def gpu_layers(self) -> int:
        return sum(self.layers_on_gpu)

    @property
    def offloaded_layers(self) -> int:
        return self.total_layers - self.gpu_layers if self.layout is Layout.OFFLOAD else 0

    @property
    def shares(self) -> tuple[float, ...]:
        """Each GPU's share of the layers (llama.cpp's --tensor-split)."""
        total = self.gpu_layers
        if not total:
            return tuple(1.0 / len(self.gpu_indexes) for _ in self.gpu_indexes)
        return tuple(n / total for n in self.layers_on_gpu)


@dataclass(frozen=True, slots=True)
class HostRamShort:
    """The only placement left is an offload, and host RAM cannot hold its part."""

    need_bytes: int
    free_bytes: int
    gpu_layers: int
    total_layers: int


def split_layers(
    rooms: Sequence[GpuRoom], shape: ModelShape, now: float, min_residency_seconds: float
) -> GangNeeds | None:
    """Layers per GPU: in proportion to free memory when that holds them all; else free
    memory filled first and the rest spread over what eviction could free, so that as
    little as possible is evicted. Every GPU of the gang holds at least one layer."""
    free = [min(shape.layers_fitting(g.free_bytes), shape.layers) for g in rooms]
    could = [
        shape.layers_fitting(
            g.free_bytes
            + sum(r.size_bytes for r in g.residents if evictable(r, now, min_residency_seconds))
        )
        for g in rooms
    ]
    if sum(could) < shape.layers or not all(could):
        return None
    if sum(free) >= shape.layers and all(free):
        layers = proportional(shape.layers, free)
    else:
        start = [max(1, n) for n in free]
        while sum(start) > shape.layers:
            start[max(range(len(start)), key=lambda i: start[i])] -= 1
        extra = proportional(
            shape.layers - sum(start), [c - n for c, n in zip(could, start, strict=True)], least=0
        )
        layers = [n + e for n, e in zip(start, extra, strict=True)]
    return [shape.gpu_bytes(n) for n in layers], tuple(layers)


def proportional(total: int, limits: Sequence[int], least: int = 1) -> list[int]:
    """`total` split in proportion to `limits`, never above them, each part at least
    `least` (where the total allows)."""
    room = sum(limits)
    if total <= 0 or room <= 0:
        return [0] * len(limits)
    parts = [max(least, total * limit // room) for limit in limits]
    while sum(parts) > total:
        largest = max(range(len(parts)), key=lambda i: parts[i])
        parts[largest] -= 1
    while sum(parts) < total:
        spare = max(range(len(parts)), key=lambda i: limits[i] - parts[i])
        parts[spare] += 1
    return parts


def offload_plan(
    gpus: Sequence[GpuRoom],
    layers: Sequence[int],
    shape: ModelShape,
    victims: tuple[ResidentModel, ...],
) -> GangPlan:
    gpu_layers = sum(layers)
    return GangPlan(
        Layout.OFFLOAD,
        tuple(g.index for g in gpus),
        tuple(shape.gpu_bytes(n) for n in layers),
        victims,
        layers_on_gpu=tuple(layers),
        total_layers=shape.layers,
        host_bytes=shape.host_bytes(gpu_layers),
        offload_reason=(
            f"fits on no set of GPUs: {shape.layers - gpu_layers} of {shape.layers} layers "
            "in host RAM"
        ),
    )


# How much slower a layer runs from host RAM than from GPU memory: decoding reads
# every weight once per token, so it goes at memory bandwidth (an H100's ~3 TB/s or a
# 5090's ~1.8 TB/s against ~100-200 GB/s of host DRAM): about ten times, conservatively.
HOST_RAM_SLOWDOWN_PER_LAYER = 10.0


def expected_slowdown(gpu_layers: int, total_layers: int) -> float:
    """Time per token relative to the whole model on GPUs, with `total_layers -
    gpu_layers` layers read from host RAM instead (docs/big-models.md)."""
    if total_layers <= 0 or gpu_layers >= total_layers:
        return 1.0
    offloaded = (total_layers - gpu_layers) / total_layers
    return (1 - offloaded) + offloaded * HOST_RAM_SLOWDOWN_PER_LAYER


def describe(
    layout: Layout,
    gpu_indexes: Sequence[int],
    layers_on_gpu: Sequence[int] = (),
    total_layers: int = 0,
) -> str:
    """How a model is placed, in words, for routes, state and spans."""
    gpus = ", ".join(str(i) for i in gpu_indexes)
    if layout is Layout.TENSOR_PARALLEL:
        return f"tensor parallel {len(gpu_indexes)} over GPUs {gpus}"
    if layout is Layout.LAYER_SPLIT:
        total = sum(layers_on_gpu) or 1
        shares = "/".join(f"{100 * n / total:.0f}%" for n in layers_on_gpu)
        return f"layer split over GPUs {gpus} ({shares} of {sum(layers_on_gpu)} layers)"
    if layout is Layout.OFFLOAD:
        on_gpu = sum(layers_on_gpu)
        where = "GPU" if len(gpu_indexes) == 1 else "GPUs"
        return (
            f"{total_layers - on_gpu} of {total_layers} layers offloaded to host RAM, "
            f"{on_gpu} on {where} {gpus} (expected about "
            f"{expected_slowdown(on_gpu, total_layers):.1f}x slower per token)"
        )
    return f"GPU {gpus}"
