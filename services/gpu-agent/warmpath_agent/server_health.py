"""Hung servers, as residency records them: server_watch.py decides when a server is
unresponsive, answers again or is to be restarted; this module changes its state.

An unresponsive model is refused to callers and never evicted. Restarted, it is
stopped and marked failed, like a crashed one: the next request loads it again.
"""

from __future__ import annotations

from dataclasses import replace

from warmpath_agent.drivers import RunningModel
from warmpath_agent.residency_core import ResidencyCore
from warmpath_agent.residents import SERVING_STATES, Residency, ResidencyState

__all__ = ["ServerHealth"]


class ServerHealth:
    """Records what server_watch.py found of each server. A report about a server that
    no longer serves its model (it was stopped or replaced meanwhile) changes nothing."""

    def __init__(self, core: ResidencyCore) -> None:
        self._core = core

    def probed_servers(self) -> tuple[Residency, ...]:
        """Ready and unresponsive models whose server can be probed."""
        return tuple(
            r
            for r in self._core.residents.values()
            if r.state in SERVING_STATES and r.running is not None and r.running.probe_url
        )

    async def unresponsive(self, model: str, running: RunningModel, reason: str) -> None:
        """Marks a ready model unresponsive, if `running` still serves it."""
        current = self._serving(model, running, ResidencyState.READY)
        if current is None:
            return
        self._core.residents[model] = replace(
            current, state=ResidencyState.UNRESPONSIVE, failure_reason=reason
        )
        self._core.metrics.unresponsive.labels(model).inc()
        await self._core.feed.publish(f"{model} unresponsive: {reason}")

    async def answers_again(self, model: str, running: RunningModel, note: str) -> None:
        """Marks an unresponsive model ready again, if `running` still serves it."""
        current = self._serving(model, running, ResidencyState.UNRESPONSIVE)
        if current is None:
            return
        self._core.residents[model] = replace(
            current, state=ResidencyState.READY, failure_reason=""
        )
        await self._core.feed.publish(f"{model} answers again ({note}): ready")

    async def restart(self, model: str, running: RunningModel, reason: str) -> None:
        """Stops an unresponsive model's server and marks it failed: the next request
        loads it again, as after a crash."""
        core = self._core
        current = self._serving(model, running, ResidencyState.UNRESPONSIVE)
        if current is None:
            return
        stopping = replace(current, state=ResidencyState.UNLOADING)
        core.residents[model] = stopping
        core.watchers.stop(model)
        try:
            await core.driver.stop(running)
        finally:
            # Failed even if the stop failed: left unloading, it would never load again.
            if core.residents.get(model) is stopping:
                core.book.release(model)
                core.residents[model] = replace(
                    current,
                    state=ResidencyState.FAILED,
                    running=None,
                    failure_reason=f"{reason}; stopped, the next request loads it again",
                )
                core.room.may_have_changed()
        core.metrics.hung_restarts.labels(model).inc()
        core.metrics.unloads.labels(model, "unresponsive").inc()
        await core.feed.publish(
            f"{model} failed: {reason}; its server was stopped, the next request loads it again"
        )

    def _serving(
        self, model: str, running: RunningModel, state: ResidencyState
    ) -> Residency | None:
        current = self._core.residents.get(model)
        if current is None or current.state is not state or current.running is not running:
            return None
        return current
