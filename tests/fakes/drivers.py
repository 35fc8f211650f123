"""A model driver that starts nothing, with controllable load time and failures."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from warmpath_agent.drivers import GpuPlacement, ModelLoadFailed, RunningModel
from warmpath_agent.inventory import GpuReading
from warmpath_common.config import ModelSpec


@dataclass
class FakeDriver:
    load_seconds: float = 0.0
    fail_models: set[str] = field(default_factory=set)
    starts: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    release: asyncio.Event | None = None
    """When set, every start waits for this event (to hold loads open in a test)."""
    checks: list[str] = field(default_factory=list)
    pid: int | None = None
    """The host pid every started server reports (for measuring its memory)."""
    placements: dict[str, GpuPlacement] = field(default_factory=dict)
    """The placement each model's last start was given."""
    base_url: str | None = None
    """Where every started server says it listens (a stand-in server); None: nowhere."""
    _exits: dict[str, asyncio.Event] = field(default_factory=dict)
    _dead_unseen: set[str] = field(default_factory=set)

    async def start(
        self, spec: ModelSpec, gpu: GpuReading, placement: GpuPlacement | None = None
    ) -> RunningModel:
        self.starts.append(spec.name)
        self.placements[spec.name] = placement or GpuPlacement.one(gpu)
        if self.release is not None:
            await self.release.wait()
        await asyncio.sleep(self.load_seconds)
        if spec.name in self.fail_models:
            raise ModelLoadFailed(
                f"{spec.name} refused to start (injected; see /var/log/agent/{spec.name}.log)",
                for_caller=f"{spec.name} refused to start (injected)",
            )
        self._exits[spec.name] = asyncio.Event()
        self._dead_unseen.discard(spec.name)
        base_url = self.base_url or f"http://fake/{spec.name}"
        return RunningModel(
            spec.name, base_url, spec.name, pid=self.pid, probe_url=f"{base_url}/health"
        )

    async def stop(self, running: RunningModel) -> None:
        self.stops.append(running.model)
        self._exits.pop(running.model, asyncio.Event()).set()

    async def wait_exited(self, running: RunningModel) -> str:
        exited = self._exits.get(running.model)
        if exited is None:
            return "not running"
        await exited.wait()
        return "stopped"

    async def check(self, running: RunningModel) -> str | None:
        self.checks.append(running.model)
        return "died (injected)" if running.model in self._dead_unseen else None

    def crash(self, model: str) -> None:
        self._exits[model].set()

    def die_unseen(self, model: str) -> None:
        """The server dies where wait_exited has not noticed yet (between polls)."""
        self._dead_unseen.add(model)

    async def close(self) -> None:
        for event in self._exits.values():
            event.set()
