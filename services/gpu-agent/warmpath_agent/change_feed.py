"""The agent's change feed: numbered descriptions of state changes, which
WatchState streams to subscribers and the log records."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

__all__ = ["ChangeFeed"]

logger = logging.getLogger(__name__)


class ChangeFeed:
    """Numbered descriptions of state changes, for WatchState subscribers."""

    def __init__(self, keep: int = 256) -> None:
        self._version = 0
        self._recent: deque[tuple[int, str]] = deque(maxlen=keep)
        self._changed = asyncio.Condition()

    @property
    def version(self) -> int:
        return self._version

    async def publish(self, description: str) -> None:
        async with self._changed:
            self._version += 1
            self._recent.append((self._version, description))
            self._changed.notify_all()
        logger.info("%s", description)

    async def wait_after(self, version: int, timeout: float) -> tuple[int, list[str]]:
        """Descriptions newer than `version`; empty after `timeout` with no change."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: self._version > version)
            return self._version, [text for number, text in self._recent if number > version]
