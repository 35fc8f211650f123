from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from warmpath_common.config import AutoClass
from warmpath_router.classifier import (
    DEFAULT_CLASSES,
    Classification,
    FeatureClassifier,
    RequestClassifier,
    SignalClasses,
)

EVAL_SET = Path(__file__).with_name("auto_eval.yaml")
CANARY = "zxqvlorp"


@pytest.fixture(scope="module")
def classifier() -> FeatureClassifier:
    return FeatureClassifier(DEFAULT_CLASSES)


def test_is_a_request_classifier(classifier: FeatureClassifier) -> None:
    # The router depends on the protocol, so a semantic classifier can replace this one.
    as_protocol: RequestClassifier = classifier
    assert as_protocol.classify("hi").label == "fast"


def test_code_prompt_returns_class_confidence_and_deciding_features(
    classifier: FeatureClassifier,
) -> None:
    result = classifier.classify(
        "Why does this crash?\n```python\ndef load(path):\n    return open(path).read()\n```"
    )
    assert result.label == "code"
    assert result.escalated_from is None
    assert 0.9 < result.confidence <= 1.0
    names = [name for name, _ in result.features]
    assert names[0] == "code fence"
    assert "python syntax" in names
    assert "'python' keyword" in names
    weights = [weight for _, weight in result.features]
    assert weights == sorted(weights, reverse=True)
    assert result.explanation.startswith(f"code ({result.confidence:.2f}): code fence")


def test_scores_cover_every_class_and_sum_to_one(classifier: FeatureClassifier) -> None:
    result = classifier.classify("What is the capital of Australia?")
    assert [name for name, _ in result.scores] == ["fast", "code", "heavy"]
    assert math.isclose(sum(score for _, score in result.scores), 1.0)
    assert dict(result.scores)[result.label] == result.confidence
    assert result.label == "fast"


@pytest.mark.parametrize(
    ("prompt", "label"),
    [
        ("Good morning, how are you?", "fast"),
        ("ps aux | grep python", "code"),
        ("Traceback (most recent call last):\n  File \"a.py\", line 3\nKeyError: 'x'", "code"),
        ("How do I find which process is listening on port 8080 in Linux?", "code"),
        (
            "Compare monetarism and Keynesianism, analyse how each would respond to "
            "stagflation, and argue which is more appropriate today.",
            "heavy",
        ),
        (
            "Our churn doubled.\n1. What are the likely causes?\n2. What data should I pull?\n"
            "3. Propose a 90-day plan.",
            "heavy",
        ),
    ],
)
def test_typical_prompts(classifier: FeatureClassifier, prompt: str, label: str) -> None:
    assert classifier.classify(prompt).label == label


def classify_hello(min_confidence: float) -> Classification:
    """A "fast" class that matches hello and escalates to "big" below `min_confidence`."""
    fast = AutoClass(
        name="fast",
        model="small",
        keywords=("hello",),
        min_confidence=min_confidence,
        escalate_to="big",
    )
    return FeatureClassifier((fast, AutoClass(name="big", model="large"))).classify("hello there")


def test_below_threshold_escalates_and_says_so() -> None:
    result = classify_hello(min_confidence=0.99)
    assert result.label == "big"
    assert result.escalated_from == "fast"
    assert result.confidence < 0.99
    assert dict(result.scores)["fast"] == result.confidence
    assert result.explanation.startswith(
        f"big: escalated from fast ({result.confidence:.2f} below its threshold 0.99)"
    )
    assert "'hello' keyword" in result.explanation


def test_above_threshold_does_not_escalate() -> None:
    result = classify_hello(min_confidence=0.5)
    assert result.label == "fast"
    assert result.escalated_from is None
    assert "escalated" not in result.explanation


def test_escalation_takes_one_hop_along_the_chain() -> None:
    classes = (
        AutoClass(name="a", model="m-a", keywords=("hello",), min_confidence=1.0, escalate_to="b"),
        AutoClass(name="b", model="m-b", min_confidence=1.0, escalate_to="c"),
        AutoClass(name="c", model="m-c"),
    )
    result = FeatureClassifier(classes).classify("hello")
    assert (result.label, result.escalated_from) == ("b", "a")


def test_default_chain_escalates_uncertain_prompts_to_heavy(
    classifier: FeatureClassifier,
) -> None:
    # A medium-length request with nothing distinctive: fast is only a guess.
    result = classifier.classify(
        "Can you make this sentence shorter: I am writing to let you know that I will be late."
    )
    assert result.escalated_from == "fast"
    assert result.label == "heavy"


def test_unknown_escalation_target_is_named() -> None:
    with pytest.raises(ValueError, match=r"'fast' escalates to unknown class 'huge'"):
        FeatureClassifier([AutoClass(name="fast", model="m", escalate_to="huge")])


def test_escalation_cycle_is_refused_with_its_path() -> None:
    classes = [
        AutoClass(name="fast", model="m1", escalate_to="code"),
        AutoClass(name="code", model="m2", escalate_to="heavy"),
        AutoClass(name="heavy", model="m3", escalate_to="fast"),
    ]
    with pytest.raises(ValueError, match=r"escalation cycle: fast -> code -> heavy -> fast"):
        FeatureClassifier(classes)


def test_self_escalation_is_a_cycle() -> None:
    with pytest.raises(ValueError, match=r"escalation cycle: fast -> fast"):
        FeatureClassifier([AutoClass(name="fast", model="m", escalate_to="fast")])


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"class 'fast' appears more than once"):
        FeatureClassifier([AutoClass(name="fast", model="m1"), AutoClass(name="fast", model="m2")])


def test_every_problem_is_listed_at_once() -> None:
    classes = [
        AutoClass(name="fast", model="m1", escalate_to="nowhere"),
        AutoClass(name="fast", model="m2"),
        AutoClass(name="code", model="m3", escalate_to="code"),
    ]
    with pytest.raises(ValueError, match="more than once") as caught:
        FeatureClassifier(classes)
    message = str(caught.value)
    assert "unknown class 'nowhere'" in message
    assert "escalation cycle: code -> code" in message


def test_a_class_without_a_model_or_with_a_threshold_outside_0_1_cannot_be_made() -> None:
    with pytest.raises(ValidationError) as caught:
        AutoClass(name="code", model="", min_confidence=1.5)
    assert {error["loc"] for error in caught.value.errors()} == {("model",), ("min_confidence",)}


def test_no_classes_is_refused() -> None:
    with pytest.raises(ValueError, match="no request classes"):
        FeatureClassifier([])


def test_signals_naming_an_unknown_class_are_refused() -> None:
    with pytest.raises(ValueError, match=r"signals.code names unknown class 'code'"):
        FeatureClassifier([AutoClass(name="small", model="m")], signals=SignalClasses())


def test_custom_classes_work_on_keywords_alone() -> None:
    classes = (
        AutoClass(name="chat", model="m1", keywords=("hello",)),
        AutoClass(name="maths", model="m2", keywords=("integral", "c++")),
    )
    classifier = FeatureClassifier(classes)
    result = classifier.classify("Solve this integral in C++, please")
    assert result.label == "maths"
    assert [name for name, _ in result.features] == ["'integral' keyword", "'c++' keyword"]
    # No built-in family counts for classes with unconventional names.
    assert classifier.classify("```\ndef f(): pass\n```").features == ()


def test_keywords_match_whole_words_only() -> None:
    classifier = FeatureClassifier(
        [AutoClass(name="a", model="m1"), AutoClass(name="b", model="m2", keywords=("port",))]
    )
    assert classifier.classify("an important report").label == "a"
    assert classifier.classify("which PORT is it").label == "b"


def test_classification_is_deterministic(classifier: FeatureClassifier) -> None:
    prompt = "Design a cache for a news site; compare TTLs and explain why.\n$ redis-cli info"
    first = classifier.classify(prompt)
    assert all(classifier.classify(prompt) == first for _ in range(20))
    assert FeatureClassifier(DEFAULT_CLASSES).classify(prompt) == first


def test_empty_and_huge_prompts_are_classified(classifier: FeatureClassifier) -> None:
    assert classifier.classify("").label == "fast"
    huge = classifier.classify("Explain why the sky is blue. " * 20_000)
    assert huge.label == "heavy"


@pytest.mark.parametrize(
    "prompt",
    [
        f"{CANARY}",
        f"Hello! Tell me about {CANARY} please",
        f"```python\ndef {CANARY}(x):\n    return x\n```",
        f'Traceback (most recent call last):\n  File "{CANARY}.py", line 1\n{CANARY}Error: x',
        f"$ cat /etc/{CANARY}/conf | grep {CANARY}_value --color",
        f"Compare {CANARY} and python, explain why.\n1. {CANARY}?\n2. {CANARY}?\n3. more?",
        f"use `{CANARY}` in {CANARY}.py with {CANARY}Value and {CANARY}_value",
    ],
)
def test_no_prompt_text_leaks_into_explanation_or_features(
    classifier: FeatureClassifier, prompt: str
) -> None:
    # Explanations reach logs and other people's responses: matched keywords
    # only, never an excerpt of the prompt.
    result = classifier.classify(prompt)
    assert CANARY not in result.explanation.lower()
    for name, _ in (*result.features, *result.scores):
        assert CANARY not in name.lower()


def load_eval_set() -> list[tuple[str, str]]:
    entries = yaml.safe_load(EVAL_SET.read_text(encoding="utf-8"))
    return [(entry["prompt"], entry["label"]) for entry in entries]


def test_eval_set_is_large_balanced_and_labelled_with_known_classes() -> None:
    samples = load_eval_set()
    assert len(samples) >= 60
    counts = Counter(label for _, label in samples)
    assert set(counts) == {c.name for c in DEFAULT_CLASSES}
    assert max(counts.values()) - min(counts.values()) <= 5
    assert len({prompt for prompt, _ in samples}) == len(samples)


def test_accuracy_on_the_eval_set(classifier: FeatureClassifier) -> None:
    """Final labels (after escalation) against tests/router/auto_eval.yaml.

    Measured: 124/129 = 0.961 overall; recall fast 0.953, code 0.977, heavy 0.953
    (scripts/eval_classifier.py). Most of the set was tuned on; the last 24 prompts
    were written afterwards and scored 21/24 = 0.875 on first sight, which is the
    better estimate for new traffic. The floors sit a little below the measurement.
    """
    samples = load_eval_set()
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for prompt, label in samples:
        totals[label] += 1
        hits[label] += classifier.classify(prompt).label == label
    accuracy = sum(hits.values()) / len(samples)
    assert accuracy >= 0.93, f"accuracy {accuracy:.3f}"
    for label, total in totals.items():
        assert hits[label] / total >= 0.9, f"{label} recall {hits[label] / total:.3f}"
