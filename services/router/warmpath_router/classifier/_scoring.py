"""Scoring: the features' weights per class become confidences (a softmax), and the top
class is picked."""

from __future__ import annotations

import math
from collections.abc import Sequence

from warmpath_common.config import AutoClass
from warmpath_router.classifier._decision import Classification, escalate, validate_classes
from warmpath_router.classifier._features import FeatureExtractor, SignalClasses, strongest_first
from warmpath_router.classifier._vocabulary import BUILT_IN_KEYWORDS

__all__ = ["FeatureClassifier"]


class FeatureClassifier:
    """The transparent default: named features add to class scores; a softmax gives confidences."""

    def __init__(
        self, classes: Sequence[AutoClass], *, signals: SignalClasses | None = None
    ) -> None:
        self._classes = tuple(classes)
        self._by_name = validate_classes(self._classes)
        self._names = tuple(c.name for c in self._classes)
        if signals is None:
            # With custom class names the built-in families count only for the
            # classes whose conventional names exist; keywords still work for all.
            signals = SignalClasses(
                code="code" if "code" in self._by_name else None,
                complex="heavy" if "heavy" in self._by_name else None,
                simple="fast" if "fast" in self._by_name else None,
            )
        unknown = [
            f"signals.{family} names unknown class {target!r}"
            for family, target in (
                ("code", signals.code),
                ("complex", signals.complex),
                ("simple", signals.simple),
            )
            if target is not None and target not in self._by_name
        ]
        if unknown:
            raise ValueError("; ".join(unknown))
        self._features = FeatureExtractor({c.name: _keywords_of(c) for c in self._classes}, signals)

    @property
    def classes(self) -> tuple[AutoClass, ...]:
        return self._classes

    def classify(self, text: str) -> Classification:
        contributions = self._features.extract(text)
        raw = [sum(w for _, w in contributions[name]) for name in self._names]
        top = max(raw)
        exps = [math.exp(r - top) for r in raw]
        total = sum(exps)
        scores = tuple((name, e / total) for name, e in zip(self._names, exps, strict=True))
        # max() keeps the first of equal scores, so ties go to the class listed
        # first in the configuration: deterministic, and the operator decides.
        picked_index = max(range(len(raw)), key=raw.__getitem__)
        picked = self._names[picked_index]
        features = tuple(sorted(contributions[picked], key=strongest_first))
        return escalate(self._by_name, picked, scores[picked_index][1], scores, features)


def _keywords_of(cls: AutoClass) -> tuple[str, ...]:
    """The configured keywords; unset, the built-in ones for fast, code or heavy."""
    if cls.keywords is not None:
        return cls.keywords
    return BUILT_IN_KEYWORDS.get(cls.name, ())
