from __future__ import annotations

from warmpath_agent.capacity import capacity_problems
from warmpath_agent.inventory import GpuReading
from warmpath_agent.layouts import ModelShape, Offload

GIB = 1024**3


def gpu(index: int, gib: int, *, mig: bool = False) -> GpuReading:
    return GpuReading(
        index, f"GPU-{index}", "RTX 5090", gib * GIB, 0, gib * GIB, simulated=False,
        healthy=not mig, unhealthy_reason="MIG mode is on" if mig else "",
    )  # fmt: skip


def llama(gib: int, offload: Offload = Offload.ALLOWED) -> ModelShape:
    return ModelShape(gib * GIB, 80, (gib - 1) * GIB // 80, splittable=True, offload=offload)


def test_models_that_split_or_offload_somewhere_pass() -> None:
    shapes = {"70b": ("models.0", llama(42)), "120b": ("models.1", llama(183))}
    assert list(capacity_problems(shapes, [gpu(0, 32), gpu(1, 32)], 256 * GIB)) == []


def test_a_model_that_fits_nowhere_is_named_with_the_figures() -> None:
    shapes = {"120b": ("models.1", llama(183, Offload.NEVER))}
    (problem,) = capacity_problems(shapes, [gpu(0, 32), gpu(1, 32)], 256 * GIB)
    assert problem.startswith("models.1: 120b needs 187392 MiB and fits nowhere")
    assert "largest usable GPU has 32768 MiB, all 2 together 65536 MiB" in problem
    assert "offload: never" in problem


def test_host_ram_too_small_for_the_offload_is_named() -> None:
    shapes = {"120b": ("models.0", llama(183))}
    (problem,) = capacity_problems(shapes, [gpu(0, 32)], 64 * GIB)
    assert "host RAM 65536 MiB" in problem


def test_tensor_parallel_beyond_the_usable_gpus_names_the_mig_gpu() -> None:
    shapes = {"qwen": ("models.0", ModelShape(40 * GIB, tensor_parallel=2))}
    (problem,) = capacity_problems(shapes, [gpu(0, 80), gpu(1, 80, mig=True)], None)
    assert problem.startswith("models.0.tensor_parallel: qwen needs 2 GPUs")
    assert "has 1 usable (GPU 1 is left out: MIG mode is on)" in problem


def test_a_split_that_needs_a_mig_gpu_is_named_with_the_field_and_the_mig_gpu() -> None:
    # Bad input: a layer split over a MIG device. Only the whole GPU may hold layers,
    # so a 42 GB model that may not offload fits nowhere on one usable 32 GB GPU.
    shapes = {"70b": ("models.3", llama(42, Offload.NEVER))}
    (problem,) = capacity_problems(shapes, [gpu(0, 32), gpu(1, 32, mig=True)], 256 * GIB)
    assert problem.startswith("models.3: 70b needs 43008 MiB and fits nowhere")
    assert "all 1 together 32768 MiB" in problem
    assert problem.endswith("GPU 1 is left out: MIG mode is on")
