"""Waiting for room: the signal a model that does not fit yet waits on, bumped
whenever memory may have come free, and the answer that says to wait for it."""

from __future__ import annotations

import asyncio
import contextlib

from warmpath_agent.eviction import NoRoom
from warmpath_agent.layouts import HostRamShort, ModelShape
from warmpath_common.errors import ResourceExhausted

__all__ = ["ANSWER_MARGIN_SECONDS", "NoRoomYet", "RoomSignal", "host_ram_short", "no_room"]

_MIB = 1024 * 1024
# Stop waiting for room this long before the load could no longer finish in time,
# so that the caller hears RESOURCE_EXHAUSTED (and may fall back) before its deadline.
ANSWER_MARGIN_SECONDS = 1.0


class NoRoomYet(ResourceExhausted):
    """No room now, but some will come by itself. `room_version`: the state the plan saw;
    `room_in_seconds`: the soonest it may come (warm_tier.room_in_seconds), 0 when no
    sooner is known."""

    def __init__(
        self, message: str, room_version: int, load_seconds: float, room_in_seconds: float = 0.0
    ) -> None:
        super().__init__(message)
        self.room_version = room_version
        self.load_seconds = load_seconds
        self.room_in_seconds = room_in_seconds


class RoomSignal:
    """A version bumped whenever memory may have become available, and the wait on it."""

    def __init__(self) -> None:
        self._version = 0
        self._changed = asyncio.Event()

    @property
    def version(self) -> int:
        return self._version

    def may_have_changed(self) -> None:
        """Memory was freed, a load ended, or a model aged: waiters plan again."""
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seen_version: int, timeout: float) -> None:
        """Returns when the version moved past `seen_version`, or after `timeout` seconds."""
        if self._version != seen_version:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()


def host_ram_short(model: str, plan: HostRamShort) -> ResourceExhausted:
    """What the caller hears when only an offload could hold the model and host RAM is short."""
    return ResourceExhausted(
        f"{model} fits on no set of this host's GPUs, and offloading "
        f"{plan.total_layers - plan.gpu_layers} of its {plan.total_layers} layers needs "
        f"{plan.need_bytes / _MIB:.0f} MiB of host RAM (the layers and the GGUF's page "
        f"cache) where {plan.free_bytes / _MIB:.0f} MiB is available; free host memory, "
        "or serve it from a host with more GPU memory"
    )


def no_room(
    model: str,
    plan: NoRoom,
    shape: ModelShape,
    *,
    healthy_gpus: int,
    min_residency_seconds: float,
    room_version: int,
    load_seconds: float,
    room_in_seconds: float = 0.0,
) -> ResourceExhausted:
    """No room for the model now: NoRoomYet when waiting can help (`room_version`: the
    state the plan saw; `load_seconds`: the load expected after the wait;
    `room_in_seconds`: the soonest room may come), else why not."""
    need = shape.total_bytes
    if plan.no_gpu_set:
        return ResourceExhausted(
            f"{model} needs {need / _MIB:.0f} MiB"
            + (f" over exactly {shape.tensor_parallel} GPUs" if shape.tensor_parallel > 1 else "")
            + f"; no set of this host's {healthy_gpus} healthy GPU(s) can hold it, "
            f"even with every unpinned model evicted, "
            + (
                f"and its offload is {shape.offload.value}"
                if shape.by_layer
                else "and it cannot be offloaded"
            )
        )
    message = (
        f"{model} needs {need / _MIB:.0f} MiB; GPU {plan.gpu_index} comes closest, with "
        f"{plan.free_bytes / _MIB:.0f} MiB free and {plan.freeable_bytes / _MIB:.0f} MiB "
        f"freeable (models idle, unpinned and resident for at least "
        f"{min_residency_seconds:g} s can be evicted), and "
        f"{plan.waitable_bytes / _MIB:.0f} MiB held by unpinned models that are busy, "
        "loading or too recently loaded"
    )
    if not plan.fits_after_waiting:
        return ResourceExhausted(
            f"{message}; the rest is pinned or not this agent's, so waiting cannot help"
        )
    return NoRoomYet(message, room_version, load_seconds, room_in_seconds)
