"""A server probe whose answers the test decides: each model answers until told not to."""

from __future__ import annotations

from dataclasses import dataclass, field

from warmpath_agent.drivers import RunningModel


@dataclass
class FakeProbe:
    silent: dict[str, str] = field(default_factory=dict)
    """Model -> the reason its probes fail; absent models answer."""
    asked: list[str] = field(default_factory=list)

    async def probe(self, running: RunningModel, timeout: float) -> str | None:
        self.asked.append(running.model)
        return self.silent.get(running.model)

    def hang(self, model: str) -> None:
        self.silent[model] = f"no answer to GET {model}/health (injected)"

    def recover(self, model: str) -> None:
        self.silent.pop(model, None)
