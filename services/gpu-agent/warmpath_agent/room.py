"""Waiting for room: the signal a model that does not fit yet waits on, bumped
whenever memory may have come free, and the answer that says to wait for it."""

from __future__ import annotations

import asyncio
import contextlib

from warmpath_common.errors import ResourceExhausted

__all__ = ["NoRoomYet", "RoomSignal"]


class NoRoomYet(ResourceExhausted):
    """No room now, but some will come by itself. `room_version`: the state the plan saw."""

    def __init__(self, message: str, room_version: int, load_seconds: float) -> None:
        super().__init__(message)
        self.room_version = room_version
        self.load_seconds = load_seconds


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
            await asyncio.wait_for(self._changed.wait(), timeout)
