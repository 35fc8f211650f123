"""Accuracy of the `auto` classifier over the labelled prompts in tests/router/auto_eval.yaml.

.venv/bin/python scripts/eval_classifier.py            # Markdown report, default classes
.venv/bin/python scripts/eval_classifier.py --misses   # also list the misclassified prompts

Scores the final label (after escalation: what the router would serve) and,
separately, the label the scorer picked before escalation.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from warmpath_router.classifier import DEFAULT_CLASSES, Classification, FeatureClassifier

EVAL_SET = Path(__file__).resolve().parent.parent / "tests" / "router" / "auto_eval.yaml"


def load_eval_set(path: Path = EVAL_SET) -> list[tuple[str, str]]:
    """(prompt, label) pairs; raises ValueError naming the entry that is malformed."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of {{prompt, label}} entries")
    pairs: list[tuple[str, str]] = []
    for index, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("prompt"), str)
            and isinstance(entry.get("label"), str)
        ):
            raise ValueError(f"{path}: entry {index} needs a string prompt and label")
        pairs.append((entry["prompt"], entry["label"]))
    return pairs


def confusion(labels: Sequence[str], pairs: Sequence[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """matrix[expected][predicted] = count."""
    matrix = {e: dict.fromkeys(labels, 0) for e in labels}
    for expected, predicted in pairs:
        matrix[expected][predicted] += 1
    return matrix


def report(labels: Sequence[str], pairs: Sequence[tuple[str, str]], title: str) -> list[str]:
    matrix = confusion(labels, pairs)
    correct = sum(matrix[c][c] for c in labels)
    lines = [f"### {title}", "", f"accuracy: {correct}/{len(pairs)} = {correct / len(pairs):.3f}"]
    lines += ["", "| expected \\ predicted | " + " | ".join(labels) + " |"]
    lines.append("|---|" + "---:|" * len(labels))
    for expected in labels:
        row = " | ".join(str(matrix[expected][p]) for p in labels)
        lines.append(f"| **{expected}** | {row} |")
    lines += ["", "| class | precision | recall | support |", "|---|---:|---:|---:|"]
    for label in labels:
        predicted = sum(matrix[e][label] for e in labels)
        support = sum(matrix[label].values())
        precision = matrix[label][label] / predicted if predicted else 0.0
        recall = matrix[label][label] / support if support else 0.0
        lines.append(f"| {label} | {precision:.3f} | {recall:.3f} | {support} |")
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--misses", action="store_true", help="list misclassified prompts")
    args = parser.parse_args(argv)

    classifier = FeatureClassifier(DEFAULT_CLASSES)
    labels = [c.name for c in DEFAULT_CLASSES]
    samples = load_eval_set()
    results: list[tuple[str, str, Classification]] = []
    started = time.perf_counter()
    for prompt, expected in samples:
        results.append((prompt, expected, classifier.classify(prompt)))
    elapsed = time.perf_counter() - started

    final = [(expected, c.label) for _, expected, c in results]
    picked = [(expected, c.escalated_from or c.label) for _, expected, c in results]
    escalations = sum(1 for _, _, c in results if c.escalated_from is not None)
    print(f"## auto classifier on {EVAL_SET.name}: {len(samples)} prompts\n")
    print("\n".join(report(labels, final, "Final label (after escalation; what is served)")))
    print("\n".join(report(labels, picked, "Scorer's pick (before escalation)")))
    print(f"escalations: {escalations}; mean classify(): {elapsed / len(samples) * 1e6:.0f} us")
    if args.misses:
        print("\n### Misclassified (final label)\n")
        for prompt, expected, c in results:
            if c.label != expected:
                shown = " ".join(prompt.split())[:90]
                print(f"- expected {expected}, got {c.explanation}\n  prompt: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
