"""Adoption after an agent restart: model servers that already run (a driver found
them at start-up) are registered as they are, ready or asleep, without loading. Their
memory is booked; no load is counted. A server for a model this host does not serve,
on a GPU it does not see, or for a model already resident is left alone (and logged):
it is not this agent's to judge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from warmpath_agent.drivers import ModelLoadFailed, RunningModel
from warmpath_agent.inventory import GpuReading
from warmpath_agent.layouts import Layout
from warmpath_agent.residency_core import ResidencyCore
from warmpath_agent.residents import Residency, ResidencyState
from warmpath_agent.server_exits import ServerExits
from warmpath_agent.warm_hooks import WarmHooks
from warmpath_common.config import ModelSpec

__all__ = ["adopt"]

logger = logging.getLogger(__name__)


async def adopt(
    core: ResidencyCore,
    exits: ServerExits,
    warm: WarmHooks,
    found: Sequence[tuple[RunningModel, str]],
) -> list[str]:
    """Registers the servers `found` (each with the UUID of its GPU, or "uuid,uuid" for a
    gang) as resident and watches them; returns the models adopted."""
    gpus = {gpu.uuid: gpu for gpu in await core.inventory.read()}
    adopted = []
    for running, gpu_uuid in found:
        spec = core.specs.get(running.model)
        # A gang's server runs on several GPUs: "uuid,uuid", every one must be seen.
        gang = [gpus.get(uuid) for uuid in gpu_uuid.split(",")]
        gpu = gang[0] if all(gang) else None
        if spec is None or gpu is None or running.model in core.residents:
            why = (
                "is not served by this host" if spec is None
                else f"is on GPU {gpu_uuid!r}, which this host does not see" if gpu is None
                else "is already resident"
            )  # fmt: skip
            logger.warning("leaving running %s alone: it %s", running.model, why)
            continue
        measured = await core.measurements.measure(running)
        estimated = core.measurements.whole(spec.name)
        if not estimated:
            try:
                estimated = await asyncio.to_thread(core.estimate_bytes, spec)
            except ModelLoadFailed as error:
                logger.warning("adopting %s with no memory estimate: %s", spec.name, error)
        now = core.clock()
        members = tuple(g for g in gang if g is not None)
        ready = Residency(
            model=spec.name,
            state=ResidencyState.READY,
            gpu_index=gpu.index,
            gpu_uuid=gpu.uuid,
            estimated_bytes=estimated,
            pinned=spec.pinned,
            measured_bytes=measured,
            running=running,
            ready_since=now,
            last_used=now,
        )
        if len(members) > 1:
            ready = _adopted_gang(core, ready, members, spec)
        if core.warm is not None and await core.warm.found_asleep(spec, running):
            ready = warm.adopted_asleep(ready, spec)
        else:
            core.book.book_gang(spec.name, ready.bytes_per_gpu, loading=False)
        core.residents[spec.name] = ready
        exits.watch(ready)
        adopted.append(spec.name)
        await core.feed.publish(
            f"{spec.name} adopted on {ready.where}: already running, not reloaded"
            + (" (asleep in host RAM)" if ready.state is ResidencyState.ASLEEP else "")
        )
    return adopted


def _adopted_gang(
    core: ResidencyCore, ready: Residency, members: tuple[GpuReading, ...], spec: ModelSpec
) -> Residency:
    """An adopted server on several GPUs: its measured share on each where NVML saw
    it, else the footprint shared evenly. Layer shares are not known again."""
    indexes = tuple(g.index for g in members)
    per_gpu = core.measurements.per_gpu(spec.name)
    even = ready.footprint_bytes // len(members)
    return replace(
        ready,
        gpu_indexes=indexes,
        gpu_uuids=tuple(g.uuid for g in members),
        gpu_bytes=tuple(per_gpu.get(i, even) for i in indexes),
        layout=Layout.TENSOR_PARALLEL if spec.tensor_parallel > 1 else Layout.LAYER_SPLIT,
    )
