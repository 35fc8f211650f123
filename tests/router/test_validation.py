from __future__ import annotations

import pytest

from tests.conftest import GEMMA
from warmpath_common.config import AutoRouting, ModelSpec, RouterSettings
from warmpath_common.errors import InvalidRequest, PermissionDenied
from warmpath_common.generation import ChatTurn, GenerationRequest
from warmpath_common.security import Caller
from warmpath_router.registry import ModelRegistry
from warmpath_router.validation import check_against_model, check_request, check_shape

SETTINGS = RouterSettings(max_prompt_chars=100, max_messages=3)
SPEC = ModelSpec.model_validate(GEMMA)


@pytest.mark.parametrize(
    ("request_", "fix_hint"),
    [
        (GenerationRequest(model="m"), "prompt is empty"),
        (GenerationRequest(model="m", prompt="   "), "prompt is empty"),
        (GenerationRequest(model="m", prompt="a", messages=(ChatTurn("user", "b"),)), "not both"),
        (GenerationRequest(model="m", messages=(ChatTurn("robot", "x"),)), "messages[0].role"),
        (GenerationRequest(model="m", messages=(ChatTurn("user", ""),)), "every message is empty"),
        (GenerationRequest(model="m", messages=(ChatTurn("user", "x"),) * 4), "too many messages"),
        (GenerationRequest(model="m", prompt="x" * 101), "router.max_prompt_chars"),
        (GenerationRequest(model="m", prompt="x", temperature=-0.1), "temperature"),
        (GenerationRequest(model="m", prompt="x", temperature=float("nan")), "temperature"),
        (GenerationRequest(model="m", prompt="x", top_p=0.0), "top_p"),
        (GenerationRequest(model="m", prompt="x", stop=("",)), "stop sequences"),
    ],
)
def test_bad_shapes_say_what_to_fix(request_: GenerationRequest, fix_hint: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_shape(request_, SETTINGS)
    assert fix_hint in caught.value.message


@pytest.mark.parametrize("max_tokens", [0, -5, 2049])
def test_max_tokens_must_fit_the_model(max_tokens: int) -> None:
    with pytest.raises(InvalidRequest, match="max_tokens"):
        check_against_model(GenerationRequest(model="m", prompt="x", max_tokens=max_tokens), SPEC)


def test_good_request_passes() -> None:
    request = GenerationRequest(model="m", prompt="x", max_tokens=2048, temperature=0, top_p=1)
    check_shape(request, SETTINGS)
    check_against_model(request, SPEC)


def test_a_request_is_checked_once_on_its_way_in_and_carries_what_passed() -> None:
    registry = ModelRegistry([SPEC], AutoRouting(default_model=SPEC.name))
    request = GenerationRequest(model="auto", prompt="x", max_tokens=8)
    checked = check_request(request, SETTINGS, registry, Caller("anyone"))
    assert checked.request is request
    assert checked.resolved.spec is SPEC, "auto resolved once, and the result travels on"
    with pytest.raises(PermissionDenied, match=f"may not use {SPEC.name}"):
        check_request(request, SETTINGS, registry, Caller("team-b", frozenset({"other"})))
    with pytest.raises(InvalidRequest, match="max_tokens"):
        check_request(
            GenerationRequest(model=SPEC.name, prompt="x", max_tokens=2049),
            SETTINGS,
            registry,
            Caller("anyone"),
        )
