"""How a model's server leaves this host: stopped when asked (an unload, an eviction, a
keep-alive), or found gone unasked (its exit watcher, or a caller's `verify`), when
the model is marked failed, never silently reloaded: the caller's next request loads
it again. (A server alive but not answering is server_health.py's.)"""

from __future__ import annotations

from dataclasses import replace

from opentelemetry import trace

from warmpath_agent.drivers import RunningModel
from warmpath_agent.residency_core import ResidencyCore
from warmpath_agent.residents import SERVING_STATES, Residency, ResidencyState

__all__ = ["ServerExits"]


class ServerExits:
    """Stops servers, and marks failed those that exit by themselves."""

    def __init__(self, core: ResidencyCore) -> None:
        self._core = core

    async def stop(self, residency: Residency, *, reason: str, kind: str) -> None:
        """Unloads the model (or lets a sleeper go) and frees what it held. `kind`: why,
        as the unloads metric counts it (evicted, keep_alive, request, host_ram, crashed)."""
        core = self._core
        core.residents[residency.model] = replace(residency, state=ResidencyState.UNLOADING)
        if residency.state is ResidencyState.ASLEEP and core.warm is not None:
            await core.warm.let_go(core.specs[residency.model], residency.running, core.driver)
        elif residency.running is not None:
            await core.driver.stop(residency.running)
        core.book.release(residency.model)
        core.residents.pop(residency.model, None)
        core.metrics.unloads.labels(residency.model, kind).inc()
        core.room.may_have_changed()
        await core.feed.publish(f"{residency.model} unloaded from {residency.where}: {reason}")

    def watch(self, ready: Residency) -> None:
        """Watches a ready model's server for an exit nobody asked for."""
        running = ready.running
        if running is None:
            return
        model = ready.model

        async def watch() -> None:
            await self.server_down(model, running, await self._core.driver.wait_exited(running))

        self._core.watchers.watch(model, watch())

    async def verify(self, model: str, span: trace.Span) -> None:
        """Asks the driver whether a ready model's server is still up, rather than wait
        for its watcher's next poll, and marks one found down failed."""
        current = self._core.residents.get(model)
        if current is None or current.state not in SERVING_STATES:
            return
        running = current.running
        if running is None:
            return
        reason = await self._core.driver.check(running)
        span.set_attribute("warmpath.server_found_down", reason is not None)
        if reason is not None:
            await self.server_down(model, running, reason, stop_watching=True)

    async def server_down(
        self, model: str, running: RunningModel, reason: str, *, stop_watching: bool = False
    ) -> None:
        """Marks `model` failed if `running` still serves it (its watcher and a caller's
        check may both find the same death; only the first counts). `stop_watching`:
        found by a check, so its watcher, still waiting, is cancelled."""
        core = self._core
        current = core.residents.get(model)
        if current is None or current.state not in SERVING_STATES:
            return
        if current.running is not running:
            return
        if stop_watching:
            core.watchers.stop(model)
        core.book.release(model)
        core.residents[model] = replace(
            current, state=ResidencyState.FAILED, running=None, failure_reason=reason
        )
        core.metrics.unloads.labels(model, "crashed").inc()
        core.room.may_have_changed()
        await core.feed.publish(f"{model} failed: {reason}")
