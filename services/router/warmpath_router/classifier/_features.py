"""Features: the named signals in a prompt that count for a class, with their weights.

Feature names never quote the prompt (a configured keyword that matched is named,
nothing else): explanations end up in logs and in responses other people read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from warmpath_router.classifier._code import code_features
from warmpath_router.classifier._phrases import WORD_RE, PhraseMatcher
from warmpath_router.classifier._vocabulary import COMPLEXITY_CUES, MULTI_STEP_WORDS

__all__ = ["Feature", "FeatureExtractor", "SignalClasses", "strongest_first"]

Feature = tuple[str, float]
"""A feature's name and its weight for the class it counts for."""


@dataclass(frozen=True, slots=True)
class SignalClasses:
    """Which class each built-in feature family counts for; None switches a family off."""

    code: str | None = "code"
    """Code detection: fences, syntax, shell commands, stack traces, file names."""
    complex: str | None = "heavy"
    """Complexity: reasoning verbs, several questions, lists, multi-step wording, long prose."""
    simple: str | None = "fast"
    """Brevity: short requests."""


# Weights are in "logit" units: the softmax turns a lead of 1.0 into roughly
# 2.7:1 odds. A single strong code signal (fence, trace) should beat the
# brevity of a short prompt; a single keyword should only just beat it.
_KEYWORD_FIRST = 1.5
_KEYWORD_MORE = 0.5
_KEYWORD_CAP = 3.5

_CUE_FIRST = 1.2
_CUE_MORE = 0.6
_CUE_CAP = 3.6
_QUESTIONS_EACH = 0.7
_QUESTIONS_CAP = 2.1
_LIST_ITEMS = 1.2
_MULTI_STEP = 0.8
# (words of prose at least, weight): longer prose usually means a harder ask.
_PROSE_LENGTH = ((250, 2.4), (100, 1.6), (40, 0.8))
# (words at most, weight): short requests are usually cheap to answer.
_BREVITY = ((12, 1.2), (25, 0.6))

# Past this many characters no feature changes its outcome (length is capped
# at 250 words), so longer prompts cost no more to classify than this.
_SCAN_LIMIT = 4000
# A fenced block up to its closing fence (or the end, when the user forgot to close it).
_FENCE_BLOCK_RE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_LIST_ITEM_RE = re.compile(r"^[ \t]*(?:\d+[.)]|[-*•])[ \t]+\S", re.MULTILINE)


def _diminishing(count: int, first: float, more: float, cap: float) -> float:
    return 0.0 if count == 0 else min(cap, first + more * (count - 1))


def strongest_first(feature: Feature) -> tuple[float, str]:
    return (-feature[1], feature[0])


def _keyword_features(hits: Sequence[str]) -> list[Feature]:
    # The first keyword is strong evidence; each further one adds less, so a
    # prompt that repeats a topic's vocabulary cannot run away with it.
    features: list[Feature] = []
    budget = _KEYWORD_CAP
    for index, hit in enumerate(hits):
        if budget <= 0:
            break
        weight = min(_KEYWORD_FIRST if index == 0 else _KEYWORD_MORE, budget)
        features.append((f"{hit!r} keyword", weight))
        budget -= weight
    return features


def _brevity_features(words: int) -> list[Feature]:
    for limit, weight in _BREVITY:
        if words <= limit:
            return [(f"short request (<= {limit} words)", weight)]
    return []


class FeatureExtractor:
    """The features of one prompt, per class: configured keywords and the built-in families."""

    def __init__(self, keywords: Mapping[str, Sequence[str]], signals: SignalClasses) -> None:
        self._keywords = {name: PhraseMatcher(words) for name, words in keywords.items()}
        self._signals = signals
        self._cues = PhraseMatcher(COMPLEXITY_CUES)
        self._steps = PhraseMatcher(MULTI_STEP_WORDS)

    def extract(self, text: str) -> dict[str, list[Feature]]:
        """Each class's features (in `keywords`' order), strongest not yet first."""
        text = text[:_SCAN_LIMIT]
        lowered = text.lower()
        raw_words = set(WORD_RE.findall(text))
        words = frozenset(w.lower() for w in raw_words)
        contributions: dict[str, list[Feature]] = {name: [] for name in self._keywords}

        for name, matcher in self._keywords.items():
            contributions[name].extend(_keyword_features(matcher.matches(lowered, words)))
        if self._signals.code is not None:
            contributions[self._signals.code].extend(code_features(text, words, raw_words))
        if self._signals.complex is not None:
            if "```" in text:
                # Length and questions count the user's prose, not pasted code.
                prose = _FENCE_BLOCK_RE.sub(" ", text)
                prose_words = frozenset(WORD_RE.findall(prose.lower()))
            else:
                prose, prose_words = text, words
            contributions[self._signals.complex].extend(
                self._complexity_features(prose, prose_words)
            )
        if self._signals.simple is not None:
            contributions[self._signals.simple].extend(_brevity_features(len(text.split())))
        return contributions

    def _complexity_features(self, prose: str, words: frozenset[str]) -> list[Feature]:
        features: list[Feature] = []
        lowered = prose.lower()
        cues = self._cues.matches(lowered, words)
        if cues:
            # Name the cues: they are fixed vocabulary, not the user's words.
            weight = _diminishing(len(cues), _CUE_FIRST, _CUE_MORE, _CUE_CAP)
            features.append(("reasoning cue " + "/".join(repr(c) for c in cues[:3]), weight))
        questions = prose.count("?")
        if questions >= 2:
            weight = min(_QUESTIONS_CAP, _QUESTIONS_EACH * (questions - 1))
            features.append((f"{questions} questions", weight))
        if "\n" in prose:
            items = len(_LIST_ITEM_RE.findall(prose))
            if items >= 3:
                features.append((f"list of {items} items", _LIST_ITEMS))
        steps = self._steps.matches(lowered, words)
        if len(steps) >= 2 or (steps and prose.count(",") >= 2):
            features.append(("multi-step request", _MULTI_STEP))
        length = len(prose.split())
        for threshold, weight in _PROSE_LENGTH:
            if length >= threshold:
                features.append((f"long prose ({threshold}+ words)", weight))
                break
        return features
