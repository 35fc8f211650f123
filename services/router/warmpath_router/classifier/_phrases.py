"""Whole-word, case-insensitive matching of a fixed vocabulary in a prompt."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["WORD_RE", "PhraseMatcher", "is_word_char"]

WORD_RE = re.compile(r"\w+")


def is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _has_phrase(text: str, phrase: str) -> bool:
    """`phrase` occurs in `text` as a whole word (not inside a longer word)."""
    start = text.find(phrase)
    while start != -1:
        end = start + len(phrase)
        if (start == 0 or not is_word_char(text[start - 1])) and (
            end == len(text) or not is_word_char(text[end])
        ):
            return True
        start = text.find(phrase, start + 1)
    return False


class PhraseMatcher:
    """Whole-word, case-insensitive matching of a fixed vocabulary."""

    def __init__(self, phrases: Sequence[str]) -> None:
        ordered = list(dict.fromkeys(p.strip().lower() for p in phrases if p.strip()))
        # Plain words are looked up in the prompt's word set; anything with a
        # space or a symbol ("c++", "trade-off", "thank you") is searched for.
        self._words = frozenset(p for p in ordered if WORD_RE.fullmatch(p))
        # A phrase can only occur if all its words do: a set lookup rules most out
        # before any search of the text.
        self._phrases = tuple(
            (p, frozenset(WORD_RE.findall(p))) for p in ordered if p not in self._words
        )
        self._rank = {p: i for i, p in enumerate(ordered)}

    def matches(self, lowered: str, words: frozenset[str]) -> list[str]:
        """The vocabulary entries present, in configuration order (so results are stable)."""
        hits = list(self._words & words)
        for phrase, parts in self._phrases:
            if parts <= words and _has_phrase(lowered, phrase):
                hits.append(phrase)
        return sorted(hits, key=self._rank.__getitem__)
