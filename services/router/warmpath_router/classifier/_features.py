"""Features: the named signals in a prompt that count for a class, with their weights.

Feature names never quote the prompt (a configured keyword that matched is named,
nothing else): explanations end up in logs and in responses other people read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from warmpath_router.classifier._vocabulary import (
    COMPLEXITY_CUES,
    FILE_EXTENSIONS,
    MULTI_STEP_WORDS,
    SHELL_COMMANDS,
)

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

_FENCE = 3.0
_STACK_TRACE = 3.0
_SHELL_COMMAND = 2.0
_SYNTAX_EACH = 1.0
_SYNTAX_CAP = 3.0
_FILE_NAME = 1.0
_UNIX_PATH = 0.8
_INLINE_CODE = 0.8

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
# "(" positions examined for call syntax; bounds the cost of a prompt full of them.
_CALL_CANDIDATES = 20

_WORD_RE = re.compile(r"\w+")
# A fenced block up to its closing fence (or the end, when the user forgot to close it).
_FENCE_BLOCK_RE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_LIST_ITEM_RE = re.compile(r"^[ \t]*(?:\d+[.)]|[-*•])[ \t]+\S", re.MULTILINE)
_FILE_EXTENSION_RE = re.compile(r"\.(?:" + "|".join(FILE_EXTENSIONS) + r")\b")
_PAREN_RE = re.compile(r"\([^()\n]*\)")


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _has_phrase(text: str, phrase: str) -> bool:
    """`phrase` occurs in `text` as a whole word (not inside a longer word)."""
    start = text.find(phrase)
    while start != -1:
        end = start + len(phrase)
        if (start == 0 or not _is_word_char(text[start - 1])) and (
            end == len(text) or not _is_word_char(text[end])
        ):
            return True
        start = text.find(phrase, start + 1)
    return False


class _PhraseMatcher:
    """Whole-word, case-insensitive matching of a fixed vocabulary."""

    def __init__(self, phrases: Sequence[str]) -> None:
        ordered = list(dict.fromkeys(p.strip().lower() for p in phrases if p.strip()))
        # Plain words are looked up in the prompt's word set; anything with a
        # space or a symbol ("c++", "trade-off", "thank you") is searched for.
        self._words = frozenset(p for p in ordered if _WORD_RE.fullmatch(p))
        # A phrase can only occur if all its words do: a set lookup rules most out
        # before any search of the text.
        self._phrases = tuple(
            (p, frozenset(_WORD_RE.findall(p))) for p in ordered if p not in self._words
        )
        self._rank = {p: i for i, p in enumerate(ordered)}

    def matches(self, lowered: str, words: frozenset[str]) -> list[str]:
        """The vocabulary entries present, in configuration order (so results are stable)."""
        hits = list(self._words & words)
        for phrase, parts in self._phrases:
            if parts <= words and _has_phrase(lowered, phrase):
                hits.append(phrase)
        return sorted(hits, key=self._rank.__getitem__)


@dataclass(frozen=True, slots=True)
class _Signal:
    """A named code signal: fires when a needle is present and the pattern (if any) matches."""

    name: str
    needles: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    words: frozenset[str] = frozenset()
    """Also gate on these lower-cased words of the prompt (for command names)."""

    def fires(self, text: str, words: frozenset[str]) -> bool:
        if not self.words.isdisjoint(words):
            return self.pattern is None or self.pattern.search(text) is not None
        for needle in self.needles:
            if needle in text:
                return self.pattern is None or self.pattern.search(text) is not None
        return False


# Features are extracted on the request path, so every code signal is gated by a
# plain substring test (C speed) before any regex runs, regexes start with a literal
# so `re` can skip ahead, and single-word keywords are a set intersection rather than
# one big alternation.
_TRACE = "stack trace or compiler error"
_SHELL = "shell command"
_STRONG_CODE_SIGNALS: tuple[tuple[_Signal, float], ...] = (
    (_Signal("code fence", ("```",)), _FENCE),
    (
        _Signal(
            _TRACE,
            ("Traceback (most recent call last)", "panicked at", "core dumped", "error[E"),
        ),
        _STACK_TRACE,
    ),
    (_Signal(_TRACE, ('File "',), re.compile(r'File "[^"\n]+", line \d+')), _STACK_TRACE),
    (
        _Signal(_TRACE, ("Error: ", "Exception: "), re.compile(r"[a-z](?:Error|Exception): ")),
        _STACK_TRACE,
    ),
    (_Signal(_TRACE, ("at ",), re.compile(r"^[ \t]+at \S+ ?\(.*:\d+", re.MULTILINE)), _STACK_TRACE),
    (
        _Signal(
            _SHELL, ("$ ", ">>> ", "PS> "), re.compile(r"^[ \t]*(?:\$|>>>|PS>) \S", re.MULTILINE)
        ),
        _SHELL_COMMAND,
    ),
    (
        _Signal(
            _SHELL,
            words=SHELL_COMMANDS,
            pattern=re.compile(
                r"(?<![\w-])(?:" + "|".join(sorted(SHELL_COMMANDS)) + r")[ \t]+"
                r"(?:-{1,2}\w|[\w./~-]+[ \t]+-{1,2}\w|[\w./~-]+[ \t]*\|)"
            ),
        ),
        _SHELL_COMMAND,
    ),
    (
        _Signal(
            _SHELL,
            ("|",),
            re.compile(r"\|[ \t]*(?:grep|awk|sed|sort|uniq|wc|head|tail|xargs|less|jq)\b"),
        ),
        _SHELL_COMMAND,
    ),
)
# One signal per kind of syntax, so a prompt full of semicolons counts once.
_SYNTAX_SIGNALS: tuple[_Signal, ...] = (
    _Signal(
        "python syntax",
        ("def ", "import ", "self."),
        re.compile(r"\bdef \w+\(|\bimport \w|\bself\.\w"),
    ),
    _Signal(
        "c-like syntax",
        (";", "{", "}", "#include"),
        re.compile(r"[;{}][ \t]*$|#include\b|\bint main\(", re.MULTILINE),
    ),
    _Signal(
        "js syntax",
        ("=>", "const ", "let ", "var ", "console.", "function"),
        re.compile(r"=>|\b(?:const|let|var) \w+ =|\bconsole\.\w+\(|\bfunction\s*\w*\("),
    ),
    _Signal(
        "rust syntax",
        ("fn ", "let mut", "::", "->"),
        re.compile(r"\bfn \w+|\blet mut\b|\w::\w|->\s*\w"),
    ),
    _Signal(
        "sql syntax",
        ("SELECT", "INSERT INTO", "CREATE TABLE"),
        re.compile(r"\bSELECT\b.+\bFROM\b|\bINSERT INTO\b|\bCREATE TABLE\b"),
    ),
    _Signal("operator syntax", ("==", "!=", "+=", "&&", "||", "[]")),
    _Signal(
        "config syntax",
        ("FROM ", "RUN ", "COPY ", "ENV ", "CMD ", "["),
        re.compile(r"^(?:FROM|RUN|COPY|ENV|CMD) \S|^\[\w+\][ \t]*$", re.MULTILINE),
    ),
)
_LIGHT_CODE_SIGNALS: tuple[tuple[_Signal, float], ...] = (
    (_Signal("file name", ("Dockerfile", "Makefile")), _FILE_NAME),
    (
        _Signal("unix path", ("/",), re.compile(r"(?:^|[\s'\"(])(?:~|\.{1,2})?/[\w.-]+")),
        _UNIX_PATH,
    ),
    (_Signal("inline code", ("`",), re.compile(r"`[^`\n]+`")), _INLINE_CODE),
)


def _has_call_syntax(text: str) -> bool:
    """`name(...)` on one line: an identifier directly followed by parentheses."""
    for count, match in enumerate(_PAREN_RE.finditer(text)):
        if count >= _CALL_CANDIDATES:
            return False
        start = match.start()
        if start > 0 and _is_word_char(text[start - 1]):
            return True
    return False


def _has_file_name(text: str) -> bool:
    # The extension's pattern starts with a literal "." so `re` skips ahead fast;
    # checking the character before it here is much cheaper than a lookbehind.
    for match in _FILE_EXTENSION_RE.finditer(text):
        start = match.start()
        if start > 0 and _is_word_char(text[start - 1]):
            return True
    return False


def _has_identifier(raw_words: set[str]) -> bool:
    """A camelCase or snake_case name: rare in prose, everywhere in code."""
    for word in raw_words:
        if len(word) >= 4 and word[0].islower() and word[1].islower() and not word.islower():
            return True
        if "_" in word.strip("_") and not word.isdigit():
            return True
    return False


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


def _code_features(text: str, words: frozenset[str], raw_words: set[str]) -> list[Feature]:
    features: list[Feature] = []
    fired: set[str] = set()
    for signal, weight in _STRONG_CODE_SIGNALS:
        if signal.name not in fired and signal.fires(text, words):
            fired.add(signal.name)
            features.append((signal.name, weight))
    most = int(_SYNTAX_CAP / _SYNTAX_EACH)
    syntax = [s.name for s in _SYNTAX_SIGNALS if s.fires(text, words)][:most]
    # The two checks that loop in Python run only while they can still count.
    if len(syntax) < most and _has_call_syntax(text):
        syntax.append("call syntax")
    if len(syntax) < most and _has_identifier(raw_words):
        syntax.append("identifier")
    features.extend((name, _SYNTAX_EACH) for name in syntax)
    if _has_file_name(text):
        features.append(("file name", _FILE_NAME))
        fired.add("file name")
    for signal, weight in _LIGHT_CODE_SIGNALS:
        if signal.name not in fired and signal.fires(text, words):
            fired.add(signal.name)
            features.append((signal.name, weight))
    return features


def _brevity_features(words: int) -> list[Feature]:
    for limit, weight in _BREVITY:
        if words <= limit:
            return [(f"short request (<= {limit} words)", weight)]
    return []


class FeatureExtractor:
    """The features of one prompt, per class: configured keywords and the built-in families."""

    def __init__(self, keywords: Mapping[str, Sequence[str]], signals: SignalClasses) -> None:
        self._keywords = {name: _PhraseMatcher(words) for name, words in keywords.items()}
        self._signals = signals
        self._cues = _PhraseMatcher(COMPLEXITY_CUES)
        self._steps = _PhraseMatcher(MULTI_STEP_WORDS)

    def extract(self, text: str) -> dict[str, list[Feature]]:
        """Each class's features (in `keywords`' order), strongest not yet first."""
        text = text[:_SCAN_LIMIT]
        lowered = text.lower()
        raw_words = set(_WORD_RE.findall(text))
        words = frozenset(w.lower() for w in raw_words)
        contributions: dict[str, list[Feature]] = {name: [] for name in self._keywords}

        for name, matcher in self._keywords.items():
            contributions[name].extend(_keyword_features(matcher.matches(lowered, words)))
        if self._signals.code is not None:
            contributions[self._signals.code].extend(_code_features(text, words, raw_words))
        if self._signals.complex is not None:
            if "```" in text:
                # Length and questions count the user's prose, not pasted code.
                prose = _FENCE_BLOCK_RE.sub(" ", text)
                prose_words = frozenset(_WORD_RE.findall(prose.lower()))
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
