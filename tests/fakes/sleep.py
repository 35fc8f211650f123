"""The warm tier's ports, faked: sleep and wake calls recorded, failures injected."""

from __future__ import annotations

from dataclasses import dataclass, field

from warmpath_agent.drivers import RunningModel
from warmpath_agent.warm_tier import SleepFailed
from warmpath_common.config import BackendKindName, ModelSpec


@dataclass
class FakeServerSleep:
    sleeps: list[str] = field(default_factory=list)
    wakes: list[str] = field(default_factory=list)
    fail_wakes: set[str] = field(default_factory=set)
    asleep: set[str] = field(default_factory=set)
    """Servers that say they sleep when asked (found so at the agent's start)."""

    async def sleep(self, backend: BackendKindName, running: RunningModel) -> None:
        self.sleeps.append(running.model)

    async def wake(self, backend: BackendKindName, running: RunningModel) -> None:
        self.wakes.append(running.model)
        if running.model in self.fail_wakes:
            raise SleepFailed(f"{running.model}'s server would not wake (injected)")

    async def is_sleeping(self, backend: BackendKindName, running: RunningModel) -> bool:
        return running.model in self.asleep


@dataclass
class FakePageCache:
    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    async def keep(self, spec: ModelSpec) -> int:
        self.kept.append(spec.name)
        return int(spec.memory or 0)

    async def drop(self, spec: ModelSpec) -> None:
        self.dropped.append(spec.name)
