"""The decision: which class a prompt goes to, after the threshold rule, and the sentence
that says why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from warmpath_common.auto_classes import class_problems
from warmpath_common.config import AutoClass
from warmpath_router.classifier._features import Feature

__all__ = ["Classification", "RequestClassifier", "escalate", "validate_classes"]


@dataclass(frozen=True, slots=True)
class Classification:
    """What the classifier decided for one prompt, and why."""

    label: str
    """The class finally chosen (after any escalation)."""
    confidence: float
    """In [0, 1]: the confidence of the class the scorer picked (before escalation)."""
    features: tuple[Feature, ...]
    """The features that counted for the picked class, strongest first."""
    scores: tuple[Feature, ...]
    """Every class's normalised score, in configuration order; they sum to 1."""
    escalated_from: str | None
    """The class that was picked but fell below its threshold, when escalated."""
    explanation: str
    """One human sentence, e.g. "code (0.82): code fence, 'python' keyword"."""


class RequestClassifier(Protocol):
    """Anything that can put a prompt into one of the configured classes."""

    def classify(self, text: str) -> Classification: ...


def validate_classes(classes: Sequence[AutoClass]) -> dict[str, AutoClass]:
    """The classes by name. ValueError lists every problem (none, duplicates, unknown
    escalation targets, cycles): the same rules the config loader applies."""
    problems = [] if classes else ["no request classes configured"]
    problems.extend(class_problems(classes))
    if problems:
        raise ValueError("; ".join(problems))
    return {cls.name: cls for cls in classes}


def escalate(
    by_name: Mapping[str, AutoClass],
    picked: str,
    confidence: float,
    scores: tuple[Feature, ...],
    features: tuple[Feature, ...],
) -> Classification:
    """The final classification: one hop up the chain when `picked` is below its threshold."""
    cls = by_name[picked]
    reasons = ", ".join(name for name, _ in features[:3]) or "no distinguishing features"
    if confidence < cls.min_confidence and cls.escalate_to is not None:
        # One hop only: the target is the class the operator named as more
        # capable. Hopping again on the same confidence would always end at the
        # top of the chain, which would make the per-class thresholds pointless.
        return Classification(
            label=cls.escalate_to,
            confidence=confidence,
            features=features,
            scores=scores,
            escalated_from=picked,
            explanation=(
                f"{cls.escalate_to}: escalated from {picked} ({confidence:.2f} below its "
                f"threshold {cls.min_confidence:.2f}): {reasons}"
            ),
        )
    return Classification(
        label=picked,
        confidence=confidence,
        features=features,
        scores=scores,
        escalated_from=None,
        explanation=f"{picked} ({confidence:.2f}): {reasons}",
    )
