"""Watching model servers for an exit nobody asked for: one task per model, waiting
on its driver; the residency manager marks the model failed when one returns.
(A server that runs but stops answering is server_watch.py's job.)"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["ExitWatchers"]


class ExitWatchers:
    """Per model: the task waiting for its server to die unasked."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def watch(self, model: str, wait: Coroutine[Any, Any, None]) -> None:
        """Runs `wait` as `model`'s watcher, replacing (cancelling) any before it."""
        self.stop(model)
        task = asyncio.create_task(wait, name=f"watch {model}")
        self._tasks[model] = task
        task.add_done_callback(lambda done: self._ended(model, done))

    def stop(self, model: str) -> None:
        """Cancels `model`'s watcher, if it has one."""
        if (task := self._tasks.pop(model, None)) is not None:
            task.cancel()

    def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    def _ended(self, model: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(model) is task:
            del self._tasks[model]
