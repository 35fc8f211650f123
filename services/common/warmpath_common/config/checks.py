"""The checks across sections: names, aliases and fallbacks against each other, and
settings that only make sense together. Each yields a message naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from warmpath_common.auto_classes import class_problems
from warmpath_common.config.base import reject_duplicates
from warmpath_common.config.models import AUTO_MODEL, BackendKindName
from warmpath_common.config.router import AutoRouting

if TYPE_CHECKING:
    from warmpath_common.config.document import WarmpathConfig

__all__ = ["big_model_problems", "registry_problems", "warm_tier_problems"]


def registry_problems(config: WarmpathConfig) -> Iterator[str]:
    """Every inconsistency between models, aliases, fallbacks and settings."""
    owner: dict[str, str] = {}
    for spec in config.models:
        for name in (spec.name, *spec.aliases):
            if name == AUTO_MODEL:
                yield f"model {spec.name}: {AUTO_MODEL!r} is reserved for automatic routing"
            elif name in owner:
                yield f"name {name!r} is used by both {owner[name]} and {spec.name}"
            else:
                owner[name] = spec.name
    names = {spec.name for spec in config.models}
    for spec in config.models:
        for target in spec.fallbacks:
            if target not in names:
                yield f"model {spec.name}: fallback {target!r} is not a registered model name"
            elif target == spec.name:
                yield f"model {spec.name}: falls back to itself"
    yield from _fallback_cycles(config)
    if config.router.heartbeat_timeout_seconds < 2 * config.agent.heartbeat_seconds:
        yield (
            f"router.heartbeat_timeout_seconds {config.router.heartbeat_timeout_seconds:g} must "
            f"be at least twice agent.heartbeat_seconds ({config.agent.heartbeat_seconds:g}): "
            "a quiet agent would be taken for a lost one"
        )
    yield from _auto_problems(config.router.auto, names)
    yield from _security_problems(config)
    yield from big_model_problems(config)
    yield from warm_tier_problems(config)
    for name in config.agent.models or ():
        if name not in names:
            yield f"agent.models: {name!r} is not a registered model name"


def _security_problems(config: WarmpathConfig) -> Iterator[str]:
    """With security on, nothing may be left unprotected by omission."""
    if not config.security.enabled:
        return
    for section, settings in (
        ("router", config.router),
        ("agent", config.agent),
        ("adapter", config.adapter),
    ):
        if settings.tls is None:
            yield f"security.enabled is true but {section}.tls is not set"
    if not config.security.tokens:
        yield "security.enabled is true but security.tokens is empty: no caller could get in"
    reject_duplicates("security.tokens", [t.name for t in config.security.tokens])


def _auto_problems(auto: AutoRouting, names: set[str]) -> Iterator[str]:
    if auto.default_model is not None and auto.default_model not in names:
        yield f"router.auto.default_model {auto.default_model!r} is not a registered model name"
    for position, auto_class in enumerate(auto.classes):
        if auto_class.model not in names:
            yield (
                f"router.auto.classes.{position} ({auto_class.name}): model "
                f"{auto_class.model!r} is not a registered model name"
            )
    yield from (f"router.auto.classes: {problem}" for problem in class_problems(auto.classes))


def _fallback_cycles(config: WarmpathConfig) -> Iterator[str]:
    graph = {spec.name: [t for t in spec.fallbacks if t != spec.name] for spec in config.models}
    reported: set[frozenset[str]] = set()

    def visit(node: str, path: list[str]) -> Iterator[str]:
        for target in graph.get(node, ()):
            if target in path:
                cycle = [*path[path.index(target) :], target]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    yield "fallback cycle: " + " -> ".join(cycle)
            else:
                yield from visit(target, [*path, target])

    for start in graph:
        yield from visit(start, [start])


def big_model_problems(config: WarmpathConfig) -> Iterator[str]:
    """Models that need more GPUs than the agent's simulated inventory declares (an NVML
    host is checked when the agent starts and reads its GPUs)."""
    inventory = config.agent.inventory
    if not inventory.simulated:
        return
    served = set(config.agent.models or (spec.name for spec in config.models))
    for position, spec in enumerate(config.models):
        if spec.name in served and spec.tensor_parallel > len(inventory.gpus):
            yield (
                f"models.{position}.tensor_parallel: {spec.name} needs {spec.tensor_parallel} "
                f"GPUs, but agent.inventory declares {len(inventory.gpus)}; lower "
                "tensor_parallel or serve it from a host with that many GPUs"
            )


def warm_tier_problems(config: WarmpathConfig) -> Iterator[str]:
    """With the warm tier on, vLLM and SGLang containers get their sleep flag appended to
    the command: one with no command would lose the image's own."""
    if not config.agent.warm_tier.enabled:
        return
    served = set(config.agent.models or (spec.name for spec in config.models))
    for position, spec in enumerate(config.models):
        container = spec.container
        sleeps = spec.backend in (BackendKindName.VLLM, BackendKindName.SGLANG)
        if spec.name in served and sleeps and container is not None and not container.command:
            yield (
                f"models.{position}.container.command: agent.warm_tier is enabled, so the agent "
                f"appends {spec.backend.value}'s sleep flag to the command of {spec.name}'s "
                "container, which would replace the image's default command; write the "
                "server's whole command there (e.g. [--model, <id>])"
            )
