"""Config for models bigger than one GPU: tensor_parallel, offload, simulated host RAM."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import GEMMA
from warmpath_common.config import ConfigError, OffloadPolicy, parse_config

VLLM = {
    "name": "qwen-32b",
    "backend": "vllm",
    "source": {"served_id": "Qwen/Qwen2.5-32B"},
    "memory": "35GiB",
    "container": {"image": "vllm/vllm-openai:v0.6.3"},
}
TWO_GPUS = {"inventory": {"simulated": True, "gpus": [{"memory": "24GiB"}, {"memory": "24GiB"}]}}


def parse(*models: dict[str, object], agent: dict[str, object] | None = None) -> str:
    document: dict[str, object] = {"models": list(models), "agent": agent or TWO_GPUS}
    try:
        parse_config(yaml.safe_dump(document), "test.yaml")
    except ConfigError as error:
        return str(error)
    return ""


def test_defaults_follow_llama_cpp_and_ollama() -> None:
    document = {"models": [GEMMA, VLLM], "agent": TWO_GPUS}
    config = parse_config(yaml.safe_dump(document), "test.yaml")
    gemma, qwen = config.models
    assert gemma.tensor_parallel == 1 and qwen.tensor_parallel == 1
    assert gemma.effective_offload is OffloadPolicy.ALLOWED and gemma.splits_by_layer
    assert qwen.effective_offload is OffloadPolicy.NEVER and not qwen.splits_by_layer


def test_tensor_parallel_two_is_accepted_for_vllm() -> None:
    assert parse({**VLLM, "tensor_parallel": 2}) == ""


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_tensor_parallel_must_be_a_positive_integer(value: object) -> None:
    assert "models.0.tensor_parallel" in parse({**VLLM, "tensor_parallel": value})


def test_tensor_parallel_on_llama_cpp_is_refused_with_the_alternative() -> None:
    message = parse({**GEMMA, "tensor_parallel": 2})
    assert "models.0" in message and "tensor_parallel 2" in message
    assert "by layers" in message


def test_offload_on_a_backend_that_cannot_offload_is_refused() -> None:
    message = parse({**VLLM, "offload": "allowed"})
    assert "models.0" in message and "cannot keep layers in host RAM" in message
    assert parse({**VLLM, "offload": "never"}) == ""


def test_offload_takes_only_the_three_policies() -> None:
    assert "models.0.offload" in parse({**GEMMA, "offload": "sometimes"})


def test_tensor_parallel_larger_than_the_hosts_gpu_count_is_refused() -> None:
    message = parse({**VLLM, "tensor_parallel": 4})
    assert "models.0.tensor_parallel" in message
    assert "needs 4 GPUs" in message and "declares 2" in message


def test_simulated_host_memory_is_declared_only_with_a_simulated_inventory() -> None:
    agent = {"inventory": {"host_memory": "64GiB"}}
    assert "only declared for a simulated inventory" in parse(GEMMA, agent=agent)
    simulated = {"inventory": {**TWO_GPUS["inventory"], "host_memory": "64GiB"}}
    assert parse(GEMMA, agent=simulated) == ""
