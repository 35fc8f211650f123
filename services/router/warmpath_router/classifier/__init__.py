"""Classifying `auto` requests into the configured classes (fast / code / heavy by default).

The default `FeatureClassifier` is transparent on purpose: every point of a class's
score comes from a named feature (a code fence, a keyword, the length, a multi-part
question), so `Route` can say *why* a prompt went to a model. A semantic classifier
can replace it by implementing `RequestClassifier`.

- `_vocabulary`: the built-in keywords and cue words;
- `_phrases`: whole-word matching of a vocabulary;
- `_code`: code detection (fences, traces, shell commands, syntax, file names);
- `_features`: every feature of a prompt, per class, with its weight;
- `_scoring`: weights to confidences, and the pick;
- `_decision`: the class rules, the threshold (escalation) rule and the explanation.
"""

from __future__ import annotations

from warmpath_common.config import AutoClass
from warmpath_router.classifier._decision import Classification, RequestClassifier
from warmpath_router.classifier._features import Feature, SignalClasses
from warmpath_router.classifier._scoring import FeatureClassifier
from warmpath_router.classifier._vocabulary import BUILT_IN_KEYWORDS

__all__ = [
    "BUILT_IN_KEYWORDS",
    "DEFAULT_CLASSES",
    "Classification",
    "Feature",
    "FeatureClassifier",
    "RequestClassifier",
    "SignalClasses",
]

DEFAULT_CLASSES: tuple[AutoClass, ...] = (
    AutoClass(name="fast", model="fast-model", min_confidence=0.5, escalate_to="heavy"),
    AutoClass(name="code", model="code-model", min_confidence=0.45, escalate_to="heavy"),
    AutoClass(name="heavy", model="heavy-model", min_confidence=0.0),
)
"""The built-in classes (keywords from BUILT_IN_KEYWORDS), e.g. for scripts/eval_classifier.py."""
