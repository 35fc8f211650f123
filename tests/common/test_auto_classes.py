"""The auto classes' rules, as both the config loader and the classifier apply them."""

from __future__ import annotations

from warmpath_common.auto_classes import class_problems
from warmpath_common.config import AutoClass


def classes(*edges: tuple[str, str | None]) -> list[AutoClass]:
    return [AutoClass(name=name, model="m", escalate_to=target) for name, target in edges]


def test_a_sound_chain_has_no_problems() -> None:
    assert class_problems(classes(("fast", "code"), ("code", "heavy"), ("heavy", None))) == []


def test_each_cycle_is_reported_once_from_its_first_class() -> None:
    problems = class_problems(classes(("a", "b"), ("b", "c"), ("c", "b"), ("d", "d")))
    assert problems == ["escalation cycle: b -> c -> b", "escalation cycle: d -> d"]


def test_duplicates_and_unknown_targets_name_the_class() -> None:
    problems = class_problems(classes(("fast", "huge"), ("fast", None)))
    assert problems == [
        "class 'fast' appears more than once",
        "class 'fast' escalates to unknown class 'huge' (known: fast)",
    ]
