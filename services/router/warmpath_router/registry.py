"""Resolving a requested model name: exact name, alias or `auto`. Never a guess."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from warmpath_common.config import AUTO_MODEL, AutoRouting, ModelSpec
from warmpath_common.errors import InvalidRequest, ModelNotFound
from warmpath_router.classifier import FeatureClassifier, RequestClassifier

__all__ = ["ModelRegistry", "Resolution", "ResolvedModel"]

_CLOSEST_MATCHES = 3


class Resolution(StrEnum):
    EXACT = "exact"
    ALIAS = "alias"
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    spec: ModelSpec
    requested: str
    resolution: Resolution
    alias: str = ""
    auto_class: str = ""
    auto_confidence: float = 0.0
    explanation: str = ""


class ModelRegistry:
    def __init__(self, specs: Iterable[ModelSpec], auto: AutoRouting) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self._aliases = {alias: spec for spec in self._specs.values() for alias in spec.aliases}
        self._auto = auto
        self._classifier: RequestClassifier | None = (
            FeatureClassifier(auto.classes) if auto.classes else None
        )
        self._class_models = {c.name: c.model for c in auto.classes}

    @property
    def specs(self) -> list[ModelSpec]:
        return [self._specs[name] for name in sorted(self._specs)]

    def get(self, name: str) -> ModelSpec:
        return self._specs[name]

    def resolve(self, requested: str, text: Callable[[], str] = str) -> ResolvedModel:
        """The model a name means. Unknown names raise NOT_FOUND listing what exists.

        `text` gives the request's text, read only to classify `auto` requests.
        """
        name = requested.strip()
        if name in ("", AUTO_MODEL):
            return self._resolve_auto(requested, text)
        if name in self._specs:
            return ResolvedModel(
                self._specs[name], requested, Resolution.EXACT, explanation=f"exact name {name!r}"
            )
        if name in self._aliases:
            spec = self._aliases[name]
            return ResolvedModel(
                spec,
                requested,
                Resolution.ALIAS,
                alias=name,
                explanation=f"alias {name!r} -> {spec.name}",
            )
        raise ModelNotFound(self._not_found_message(name))

    def _resolve_auto(self, requested: str, text: Callable[[], str]) -> ResolvedModel:
        if self._classifier is not None:
            decided = self._classifier.classify(text())
            spec = self._specs[self._class_models[decided.label]]
            return ResolvedModel(
                spec,
                requested,
                Resolution.AUTO,
                auto_class=decided.label,
                auto_confidence=decided.confidence,
                explanation=f"auto: {decided.explanation} -> {spec.name}",
            )
        if self._auto.default_model is None:
            raise InvalidRequest(
                "model is empty or 'auto' but automatic routing is not configured "
                "(set router.auto.default_model); name a model instead: "
                + ", ".join(sorted(self._specs))
            )
        spec = self._specs[self._auto.default_model]
        return ResolvedModel(
            spec,
            requested,
            Resolution.AUTO,
            auto_class="default",
            auto_confidence=1.0,
            explanation=f"auto: router.auto.default_model is {spec.name}",
        )

    def _not_found_message(self, name: str) -> str:
        known = sorted({*self._specs, *self._aliases})
        closest = difflib.get_close_matches(name, known, n=_CLOSEST_MATCHES, cutoff=0.4)
        message = f"unknown model {name!r}; available models: {', '.join(sorted(self._specs))}"
        if closest:
            message += f"; closest matches: {', '.join(closest)}"
        return message + " (or 'auto' to let the router choose)"
