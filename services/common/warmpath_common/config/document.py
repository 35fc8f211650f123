"""The whole config file: one section per service, the model registry, security."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from warmpath_common.config.adapter import AdapterSettings
from warmpath_common.config.agent import AgentSettings
from warmpath_common.config.base import Strict
from warmpath_common.config.checks import registry_problems
from warmpath_common.config.models import ModelSpec
from warmpath_common.config.router import RouterSettings
from warmpath_common.config.security import SecuritySettings

__all__ = ["WarmpathConfig"]


class WarmpathConfig(Strict):
    """The whole config file."""

    models: tuple[ModelSpec, ...] = Field(min_length=1)
    """The model registry every service shares."""
    router: RouterSettings = Field(default_factory=RouterSettings)
    """The router's settings."""
    agent: AgentSettings = Field(default_factory=AgentSettings)
    """This host's gpu-agent settings."""
    adapter: AdapterSettings = Field(default_factory=AdapterSettings)
    """This host's backend-adapter settings."""
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    """TLS and caller authentication (off by default; loopback development)."""

    @model_validator(mode="after")
    def _registry_is_consistent(self) -> Self:
        problems = list(registry_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(name)
