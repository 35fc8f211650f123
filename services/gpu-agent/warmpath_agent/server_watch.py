"""Notices model servers that are alive but answer nothing (docs/hung-servers.md).

Every `period_seconds` each ready or unresponsive server is asked its probe URL,
by GET and never by generating, with `timeout_seconds` to answer; any HTTP answer
counts. After `failures_before_unresponsive` failed probes in a row (no answer in
time, or no connection) it is reported unresponsive, and routers send it nothing.
One answer makes it ready again. Still failing `restart_after_seconds` after its
first failed probe, it is stopped and marked failed, so that the next request
loads it again. The residency manager records each change; this module decides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from warmpath_agent.drivers import RunningModel
from warmpath_agent.residency import ResidencyManager
from warmpath_agent.residents import Residency, ResidencyState
from warmpath_common.config import ServerProbeSettings

__all__ = ["ServerProbe", "ServerWatch"]

logger = logging.getLogger(__name__)


class ServerProbe(Protocol):
    async def probe(self, running: RunningModel, timeout: float) -> str | None:
        """None when the server answered `running.probe_url` within `timeout` seconds,
        whatever the status; else why not, in a few words."""
        ...


@dataclass
class _Failing:
    running: RunningModel
    since: float
    """When the first failed probe of this run of failures ended (the watch's clock)."""
    failures: int = 0


class ServerWatch:
    """Probes every ready server periodically and reports the ones that hang."""

    def __init__(
        self,
        manager: ResidencyManager,
        probe: ServerProbe,
        settings: ServerProbeSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._manager = manager
        self._probe = probe
        self._settings = settings
        self._clock = clock
        self._failing: dict[str, _Failing] = {}
        self._restarts: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Probes every `period_seconds` until cancelled."""
        try:
            while True:
                started = self._clock()
                await self.probe_all()
                elapsed = self._clock() - started
                await asyncio.sleep(max(0.0, self._settings.period_seconds - elapsed))
        finally:
            for restart in list(self._restarts):
                restart.cancel()

    async def probe_all(self) -> None:
        """One round: every probed server at once, so a hung one delays no other."""
        servers = self._manager.probed_servers()
        watched = {residency.model for residency in servers}
        for model in [m for m in self._failing if m not in watched]:
            del self._failing[model]
        await asyncio.gather(*(self._probe_one(residency) for residency in servers))

    async def restarts_done(self) -> None:
        """Waits for the restarts in progress (for tests and shutdown)."""
        while self._restarts:
            await asyncio.gather(*self._restarts, return_exceptions=True)

    async def _probe_one(self, residency: Residency) -> None:
        running = residency.running
        if running is None:
            return
        model = residency.model
        problem = await self._probe.probe(running, self._settings.timeout_seconds)
        now = self._clock()
        failing = self._failing.get(model)
        if failing is not None and failing.running is not running:
            # Another server took its place: its failures are not this one's.
            failing = None
        if problem is None:
            self._failing.pop(model, None)
            if residency.state is ResidencyState.UNRESPONSIVE:
                silent = now - failing.since if failing is not None else 0.0
                await self._manager.server_answers_again(
                    model, running, f"after {silent:.0f} s without an answer"
                )
            return
        if failing is None:
            failing = self._failing[model] = _Failing(running, since=now)
        failing.failures += 1
        silent = now - failing.since
        grace = self._settings.restart_after_seconds
        logger.debug("%s failed probe %d: %s", model, failing.failures, problem)
        if residency.state is ResidencyState.READY:
            if failing.failures >= self._settings.failures_before_unresponsive:
                await self._manager.server_unresponsive(
                    model,
                    running,
                    f"{failing.failures} readiness probes in a row failed (last: {problem}); "
                    f"restarted if it does not answer within {max(0.0, grace - silent):.0f} s",
                )
        elif silent >= grace:
            del self._failing[model]
            self._start(
                self._manager.restart_unresponsive(
                    model,
                    running,
                    f"unresponsive: no answer to its readiness probes for {silent:.0f} s "
                    f"(last: {problem})",
                ),
                model,
            )

    def _start(self, restart: Coroutine[Any, Any, None], model: str) -> None:
        # Stopping may take the driver's stop grace: the next rounds go on meanwhile.
        task = asyncio.create_task(restart, name=f"restart {model}")
        self._restarts.add(task)
        task.add_done_callback(self._restart_ended)

    def _restart_ended(self, task: asyncio.Task[None]) -> None:
        self._restarts.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("restarting %s failed: %s", task.get_name(), error, exc_info=error)
