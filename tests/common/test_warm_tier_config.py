from __future__ import annotations

from tests.common.test_big_model_config import VLLM, parse

WARM = {"warm_tier": {"enabled": True}}


def test_a_vllm_container_without_a_command_is_refused_when_the_warm_tier_is_on() -> None:
    problem = parse(VLLM, agent=WARM)
    assert "models.0.container.command: agent.warm_tier is enabled" in problem
    assert "write the server's whole command there" in problem


def test_it_is_accepted_with_its_whole_command_or_with_the_tier_off() -> None:
    assert parse(VLLM) == ""
    container = {"image": "vllm/vllm-openai:v0.6.3", "command": ["--model", "Qwen/Qwen2.5-32B"]}
    assert parse({**VLLM, "container": container}, agent=WARM) == ""
