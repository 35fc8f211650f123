"""What the Docker driver asks of an engine, and when the agent opens one, checked
with no engine: the container's arguments (GPUs, name, labels, ports) and the
composition root's refusal to start without one when a model runs in Docker."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.conftest import GEMMA
from tests.gpu_agent.test_docker_driver import IMAGE, MIB, SIM_GPU, model, settings
from warmpath_agent.__main__ import open_docker
from warmpath_agent.docker_container import (
    GPU_LABEL,
    MODEL_LABEL,
    container_name,
    create_arguments,
)
from warmpath_agent.drivers import GpuPlacement
from warmpath_agent.inventory import GpuReading
from warmpath_agent.layouts import Layout
from warmpath_common.config import ConfigError, ModelSpec


def test_a_real_gpu_is_requested_by_its_uuid_and_a_simulated_one_not_at_all() -> None:
    spec = model()
    assert spec.container is not None
    real = GpuReading(
        index=1,
        uuid="GPU-8e5d0e4c-1f6b-4c38-9d0a-3f1f2b7c9a11",
        name="NVIDIA H100",
        memory_total_bytes=80_000 * MIB,
        memory_used_bytes=0,
        memory_free_bytes=80_000 * MIB,
        simulated=False,
    )
    arguments = create_arguments(settings(), "host-a", spec, spec.container, real)
    (request,) = arguments["device_requests"]
    assert request["DeviceIDs"] == [real.uuid]
    assert request["Capabilities"] == [["gpu"]]
    assert arguments["labels"][GPU_LABEL] == real.uuid
    assert arguments["image"] == IMAGE

    simulated = create_arguments(settings(), "host-a", spec, spec.container, SIM_GPU)
    assert "device_requests" not in simulated

    second = replace(real, index=2, uuid="GPU-0b7e-second")
    gang = GpuPlacement((real, second), Layout.TENSOR_PARALLEL)
    both = create_arguments(settings(), "host-a", spec, spec.container, real, gang)
    (request,) = both["device_requests"]
    assert request["DeviceIDs"] == [real.uuid, second.uuid], "one request, every GPU"
    assert both["labels"][GPU_LABEL] == f"{real.uuid},{second.uuid}"


def test_a_model_name_never_becomes_an_image_or_reaches_the_name_unsanitised() -> None:
    spec = model("Evil/../../etc:latest")
    assert spec.container is not None
    arguments = create_arguments(settings(), "host-a", spec, spec.container, SIM_GPU)
    assert arguments["image"] == IMAGE
    assert re.fullmatch(r"warmpath-[a-z0-9-]+-[0-9a-f]{8}", arguments["name"])
    assert arguments["labels"][MODEL_LABEL] == "Evil/../../etc:latest"
    # Names that sanitise alike stay apart.
    assert container_name("h", "a.b") != container_name("h", "a/b")


def test_ports_are_published_on_the_publish_host_unless_a_network_is_set() -> None:
    spec = model(port=9000)
    assert spec.container is not None
    published = create_arguments(settings(), "h", spec, spec.container, SIM_GPU)
    assert published["ports"] == {"9000/tcp": ("127.0.0.1", None)}
    assert "network" not in published
    on_network = create_arguments(settings(network="mesh"), "h", spec, spec.container, SIM_GPU)
    assert on_network["network"] == "mesh"
    assert "ports" not in on_network


async def test_without_docker_models_the_agent_never_asks_for_an_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    process_model = ModelSpec.model_validate({**GEMMA, "aliases": []})
    async with open_docker({process_model.name: process_model}) as client:
        assert client is None


async def test_docker_models_without_an_engine_are_a_config_error_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ConfigError, match=r"agent\.docker: stub-model run in Docker"):
        async with open_docker({"stub-model": model()}):
            pass
