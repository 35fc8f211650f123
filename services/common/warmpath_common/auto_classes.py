"""The rules every set of `auto` classes must keep: unique names, known escalation
targets, no escalation cycles.

The config loader and the router's classifier both check them, through this one
function.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

__all__ = ["EscalatingClass", "class_problems"]


class EscalatingClass(Protocol):
    """What the rules read of a class (config.AutoClass has it)."""

    @property
    def name(self) -> str: ...

    @property
    def escalate_to(self) -> str | None: ...


def class_problems(classes: Iterable[EscalatingClass]) -> list[str]:
    """Every broken rule, in a stable order: duplicates, unknown targets, then cycles."""
    problems: list[str] = []
    targets: dict[str, str | None] = {}
    for cls in classes:
        if cls.name in targets:
            problems.append(f"class {cls.name!r} appears more than once")
        targets.setdefault(cls.name, cls.escalate_to)
    for name, target in targets.items():
        if target is not None and target not in targets:
            problems.append(
                f"class {name!r} escalates to unknown class {target!r} "
                f"(known: {', '.join(sorted(targets))})"
            )
    problems.extend(_cycles(targets))
    return problems


def _cycles(targets: dict[str, str | None]) -> list[str]:
    # Each class has at most one escalation target, so following the chain from
    # every class finds every cycle; report each one once, by its path.
    cycles: list[str] = []
    reported: set[frozenset[str]] = set()
    for start, first in targets.items():
        path = [start]
        current = first
        while current is not None and current in targets and current not in path:
            path.append(current)
            current = targets[current]
        if current is not None and current in path:
            loop = path[path.index(current) :]
            if frozenset(loop) not in reported:
                reported.add(frozenset(loop))
                cycles.append("escalation cycle: " + " -> ".join([*loop, current]))
    return cycles
