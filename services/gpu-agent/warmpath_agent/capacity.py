"""The start-up check that every model this host serves fits somewhere on it.

Run once the GPUs are read: a model no set of the host's GPUs can hold, even
empty and with every split and offload its spec allows, or one asking for more
GPUs (tensor_parallel) than the host has usable, is a configuration error, named
with its figures, rather than a RESOURCE_EXHAUSTED at its first request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from warmpath_agent.eviction import GpuRoom
from warmpath_agent.gang import plan_gang
from warmpath_agent.inventory import GpuReading
from warmpath_agent.layouts import GangPlan, ModelShape, Offload
from warmpath_common.config import ModelSpec

__all__ = ["capacity_problems", "shape_for"]

_MIB = 1024 * 1024


def shape_for(spec: ModelSpec, need: int, layers: ModelShape | None) -> ModelShape:
    """What placement plans with: `need` bytes whole, the layers an estimate found (None:
    unknown, so no split and no offload), and what the spec allows."""
    layers = layers or ModelShape(need)
    return ModelShape(
        total_bytes=need,
        layers=layers.layers,
        layer_bytes=layers.layer_bytes,
        tensor_parallel=spec.tensor_parallel,
        splittable=spec.splits_by_layer,
        offload=Offload(spec.effective_offload.value),
        page_cache_bytes=layers.page_cache_bytes,
    )


def capacity_problems(
    shapes: Mapping[str, tuple[str, ModelShape]],
    gpus: Sequence[GpuReading],
    host_bytes: int | None,
) -> Iterator[str]:
    """`shapes`: by model, its config field path (e.g. `models.2`) and its shape."""
    usable = [gpu for gpu in gpus if gpu.healthy]
    left_out = "; ".join(
        f"GPU {gpu.index} is left out: {gpu.unhealthy_reason}" for gpu in gpus if not gpu.healthy
    )
    empty = [GpuRoom(gpu.index, gpu.memory_total_bytes, ()) for gpu in usable]
    for model, (path, shape) in shapes.items():
        if shape.tensor_parallel > len(usable):
            yield (
                f"{path}.tensor_parallel: {model} needs {shape.tensor_parallel} GPUs, and "
                f"this host has {len(usable)} usable" + (f" ({left_out})" if left_out else "")
            )
            continue
        plan = plan_gang(empty, shape, 0.0, 0.0, model=model, host_free_bytes=host_bytes)
        if isinstance(plan, GangPlan):
            continue
        largest = max((gpu.memory_total_bytes for gpu in usable), default=0)
        together = sum(gpu.memory_total_bytes for gpu in usable)
        yield (
            f"{path}: {model} needs {shape.total_bytes / _MIB:.0f} MiB and fits nowhere on "
            f"this host: its largest usable GPU has {largest / _MIB:.0f} MiB, all "
            f"{len(usable)} together {together / _MIB:.0f} MiB"
            + (
                f", host RAM {host_bytes / _MIB:.0f} MiB"
                if host_bytes is not None and shape.by_layer
                else ""
            )
            + f" (offload: {shape.offload.value}"
            + ("" if shape.by_layer else ", and its layers are unknown")
            + ")"
            + (f"; {left_out}" if left_out else "")
        )
