from __future__ import annotations

import pytest

from tests.conftest import GEMMA
from warmpath_common.config import AutoClass, AutoRouting, ModelSpec
from warmpath_common.errors import InvalidRequest, ModelNotFound
from warmpath_router.registry import ModelRegistry, Resolution

SPECS = [
    ModelSpec.model_validate(GEMMA),
    ModelSpec.model_validate(
        {**GEMMA, "name": "deepseek-coder:33b", "aliases": ["coder"], "chat_format": None}
    ),
]


def registry(default: str | None = "gemma3-270m") -> ModelRegistry:
    return ModelRegistry(SPECS, AutoRouting(default_model=default))


def test_exact_name_resolves_to_itself() -> None:
    resolved = registry().resolve("deepseek-coder:33b")
    assert resolved.spec.name == "deepseek-coder:33b"
    assert resolved.resolution is Resolution.EXACT


def test_alias_resolves_and_says_so() -> None:
    resolved = registry().resolve("coder")
    assert resolved.spec.name == "deepseek-coder:33b"
    assert resolved.resolution is Resolution.ALIAS
    assert resolved.alias == "coder"


def test_unknown_name_is_never_substituted() -> None:
    # The seed incident: a name missing from a dict was answered by another model.
    with pytest.raises(ModelNotFound) as caught:
        registry().resolve("deepseek-coder:34b")
    message = caught.value.message
    assert "unknown model 'deepseek-coder:34b'" in message
    assert "available models: deepseek-coder:33b, gemma3-270m" in message
    assert "closest matches: deepseek-coder:33b" in message


@pytest.mark.parametrize("name", ["", "auto", " auto "])
def test_auto_uses_the_configured_default(name: str) -> None:
    resolved = registry().resolve(name)
    assert resolved.resolution is Resolution.AUTO
    assert resolved.spec.name == "gemma3-270m"


def test_auto_without_configuration_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest, match=r"router\.auto\.default_model"):
        registry(default=None).resolve("auto")


def test_auto_classifies_the_request_and_says_why() -> None:
    auto = AutoRouting(
        classes=(
            AutoClass(name="fast", model="gemma3-270m", escalate_to="heavy"),
            AutoClass(name="code", model="deepseek-coder:33b", escalate_to="heavy"),
            AutoClass(name="heavy", model="gemma3-270m"),
        )
    )
    resolved = ModelRegistry(SPECS, auto).resolve(
        "auto", lambda: "Why does this Python function raise KeyError?\n```python\nd['x']\n```"
    )
    assert resolved.resolution is Resolution.AUTO
    assert resolved.auto_class == "code"
    assert resolved.spec.name == "deepseek-coder:33b"
    assert 0 < resolved.auto_confidence <= 1
    assert "code" in resolved.explanation


def test_exact_names_never_read_the_text() -> None:
    def unread() -> str:
        raise AssertionError("the text was read")

    assert registry().resolve("coder", unread).spec.name == "deepseek-coder:33b"
