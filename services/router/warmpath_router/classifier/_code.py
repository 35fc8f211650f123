"""Code detection: fences, stack traces, shell commands, syntax and file names in a prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass

from warmpath_router.classifier._phrases import is_word_char
from warmpath_router.classifier._vocabulary import FILE_EXTENSIONS, SHELL_COMMANDS

__all__ = ["code_features"]

# Weights in "logit" units (see _features): one strong signal (fence, trace) beats
# the brevity of a short prompt.
_FENCE = 3.0
_STACK_TRACE = 3.0
_SHELL_COMMAND = 2.0
_SYNTAX_EACH = 1.0
_SYNTAX_CAP = 3.0
_FILE_NAME = 1.0
_UNIX_PATH = 0.8
_INLINE_CODE = 0.8
# "(" positions examined for call syntax; bounds the cost of a prompt full of them.
_CALL_CANDIDATES = 20

_FILE_EXTENSION_RE = re.compile(r"\.(?:" + "|".join(FILE_EXTENSIONS) + r")\b")
_PAREN_RE = re.compile(r"\([^()\n]*\)")


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
        if start > 0 and is_word_char(text[start - 1]):
            return True
    return False


def _has_file_name(text: str) -> bool:
    # The extension's pattern starts with a literal "." so `re` skips ahead fast;
    # checking the character before it here is much cheaper than a lookbehind.
    for match in _FILE_EXTENSION_RE.finditer(text):
        start = match.start()
        if start > 0 and is_word_char(text[start - 1]):
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


def code_features(text: str, words: frozenset[str], raw_words: set[str]) -> list[tuple[str, float]]:
    features: list[tuple[str, float]] = []
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
