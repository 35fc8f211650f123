"""The Docker driver against a real Docker engine (tests marked `docker`).

No image registry is reachable here, so the "model server" is a tiny image made
locally by scripts/docker/test-model-image.sh (a static busybox whose httpd
serves /www, so GET /v1/models answers 200), cached between runs. Every test
uses its own owner name and removes what it created, whatever the driver did.

The docker-marked tests skip when no engine answers, unless
WARMPATH_REQUIRE_DOCKER=1 (set by `make test-docker`, which starts one with
scripts/docker/engine.sh). The create-arguments tests need no engine.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import docker
import docker.errors
import grpc
import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.conftest import GEMMA, metric_total
from warmpath.v1 import gpu_agent_pb2, gpu_agent_pb2_grpc
from warmpath_agent.__main__ import open_docker
from warmpath_agent.docker_container import (
    GPU_LABEL,
    MODEL_LABEL,
    OWNER_LABEL,
    container_name,
    create_arguments,
)
from warmpath_agent.docker_driver import DockerDriver
from warmpath_agent.drivers import DriverSet, GpuPlacement, ModelLoadFailed
from warmpath_agent.inventory import GpuReading, MemoryBook
from warmpath_agent.layouts import Layout
from warmpath_agent.metrics import AgentMetrics
from warmpath_agent.residency import ResidencyManager
from warmpath_agent.residents import LoadOutcome, ResidencyState
from warmpath_agent.simulated_inventory import SimulatedInventory
from warmpath_cli.mesh import free_port, wait_serving
from warmpath_common.config import ConfigError, DockerSettings, ModelSpec, Runtime, SimulatedGpu

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("WARMPATH_TEST_MODEL_IMAGE", "warmpath-test/model-stub:1")
FOREIGN_LABEL = "warmpath-test.run"
"""Marks containers a test made itself, outside the driver, so cleanup finds them."""
MIB = 1024 * 1024
SIM_GPU = GpuReading(
    index=0,
    uuid="SIM-00000000-0000-0000-0000-000000000000",
    name="Simulated GPU",
    memory_total_bytes=1000 * MIB,
    memory_used_bytes=0,
    memory_free_bytes=1000 * MIB,
    simulated=True,
)
docker_test = [pytest.mark.docker, pytest.mark.timeout(120)]


def model(name: str = "stub-model", **container: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            **GEMMA,
            "name": name,
            "aliases": [],
            "memory": "100MiB",
            "container": {"image": IMAGE, **container},
        }
    )


def settings(**overrides: object) -> DockerSettings:
    return DockerSettings.model_validate(
        {"startup_timeout_seconds": 20, "stop_timeout_seconds": 2, **overrides}
    )


# -- no engine needed ---------------------------------------------------------


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


# -- a real engine --------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        problem = (
            "no Docker engine answers (run scripts/docker/engine.sh as root, or start "
            f"dockerd): {error}"
        )
        if os.environ.get("WARMPATH_REQUIRE_DOCKER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(engine: docker.DockerClient) -> str:
    made = subprocess.run(
        ["bash", str(REPO / "scripts/docker/test-model-image.sh")],
        check=False,
        timeout=300,
        env={**os.environ, "WARMPATH_TEST_MODEL_IMAGE": IMAGE},
    )
    assert made.returncode == 0, "making the test model image failed (see the output above)"
    return IMAGE


@pytest.fixture
def owner(engine: docker.DockerClient, image: str) -> Iterator[str]:
    """A fresh agent host name; everything labelled with it is removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    for label in (f"{OWNER_LABEL}={name}", f"{FOREIGN_LABEL}={name}"):
        for container in engine.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def owned(engine: docker.DockerClient, owner: str) -> list[str]:
    """Ids of this owner's containers, running or not."""
    found = engine.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})
    return sorted(c.id for c in found)


def foreign(engine: docker.DockerClient, owner: str, **extra: object) -> str:
    """A running container the driver does not own (made here, as an operator would)."""
    labels = {FOREIGN_LABEL: owner, **extra.pop("labels", {})}  # type: ignore[dict-item]
    container = engine.containers.run(IMAGE, detach=True, labels=labels, **extra)
    return str(container.id)


def status(engine: docker.DockerClient, container_id: str) -> str:
    return str(engine.containers.get(container_id).status)


def docker_manager(
    owner: str,
    served: ModelSpec,
    driver: DockerDriver,
    registry: CollectorRegistry | None = None,
) -> ResidencyManager:
    """An agent's residency manager serving `served` through `driver` on a simulated GPU."""
    book = MemoryBook()
    return ResidencyManager(
        owner,
        {served.name: served},
        SimulatedInventory((SimulatedGpu(memory=1000 * MIB),), book),
        DriverSet({Runtime.DOCKER: driver}),
        book=book,
        estimate_bytes=lambda s: int(s.memory or 0),
        metrics=AgentMetrics(registry or CollectorRegistry()),
    )


async def assert_replaced(
    outcome: LoadOutcome,
    down: str,
    engine: docker.DockerClient,
    owner: str,
    http: httpx.AsyncClient,
) -> None:
    """`outcome` loaded the model again: the container `down` is gone and a new one serves."""
    assert outcome.cold_start and outcome.residency.state is ResidencyState.READY
    (replacement,) = owned(engine, owner)
    assert replacement != down, "the container found down is removed, a new one serves"
    assert status(engine, replacement) == "running"
    assert outcome.residency.running is not None
    response = await http.get(f"{outcome.residency.running.base_url}/v1/models", timeout=5)
    assert response.status_code == 200


def signal_server(engine: docker.DockerClient, container_id: str, option: str = "") -> None:
    """`kill <option>` to the server inside a SUPERVISED container (by its pid file)."""
    command = f"kill {option} $(cat /tmp/server.pid)"
    done = engine.containers.get(container_id).exec_run(["sh", "-c", command])
    assert done.exit_code == 0, done.output


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_start_runs_a_labelled_container_that_answers_and_stop_removes_it(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    driver = DockerDriver(settings(), engine, owner, http)
    started = time.monotonic()
    running = await driver.start(model(), SIM_GPU)
    print(f"[docker test] start to ready: {time.monotonic() - started:.2f} s")

    assert running.runtime is Runtime.DOCKER and running.pid
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", running.base_url), running.base_url
    response = await http.get(f"{running.base_url}/v1/models", timeout=5)
    assert response.status_code == 200
    (container_id,) = owned(engine, owner)
    container = engine.containers.get(container_id)
    assert container.name == container_name(owner, "stub-model")
    assert container.labels[OWNER_LABEL] == owner
    assert container.labels[MODEL_LABEL] == "stub-model"
    assert container.labels[GPU_LABEL] == SIM_GPU.uuid
    (binding,) = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
    assert binding["HostIp"] == "127.0.0.1"
    assert running.base_url.endswith(f":{binding['HostPort']}")
    assert not container.attrs["HostConfig"].get("DeviceRequests")  # simulated GPU

    await driver.stop(running)
    assert owned(engine, owner) == []
    await driver.stop(running)  # idempotent
    assert await driver.wait_exited(running) == "stopped by Warmpath"


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_a_restarted_agent_adopts_the_running_container_without_a_new_one(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    first = DockerDriver(settings(), engine, owner, http)
    running = await first.start(model(), SIM_GPU)
    before = owned(engine, owner)
    await first.close()  # the agent shuts down: the model keeps running
    assert [status(engine, c) for c in before] == ["running"]

    restarted = DockerDriver(settings(), engine, owner, http)
    adopted = await restarted.adopt()

    assert adopted == [(running, SIM_GPU.uuid)]
    assert owned(engine, owner) == before  # same container, none started
    await restarted.stop(running)
    assert owned(engine, owner) == []


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_a_container_killed_behind_the_drivers_back_is_reported(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    driver = DockerDriver(settings(), engine, owner, http, poll_seconds=0.1)
    running = await driver.start(model(), SIM_GPU)
    exited = asyncio.create_task(driver.wait_exited(running))
    await asyncio.sleep(0.3)
    assert not exited.done()

    (container_id,) = owned(engine, owner)
    engine.containers.get(container_id).kill()

    reason = await asyncio.wait_for(exited, 10)
    assert reason == "exited with code 137"
    await driver.stop(running)
    assert owned(engine, owner) == []


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_a_server_that_exits_while_loading_fails_with_its_last_log_lines(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    driver = DockerDriver(settings(), engine, owner, http)
    crashing = model(command=["sh", "-c", "echo cannot open the weights >&2; exit 3"])
    with pytest.raises(ModelLoadFailed, match=r"exited with code 3") as failure:
        await driver.start(crashing, SIM_GPU)
    assert "cannot open the weights" in str(failure.value)
    assert owned(engine, owner) == []


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_an_image_not_on_the_host_is_refused_and_never_pulled(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    driver = DockerDriver(settings(), engine, owner, http)
    with pytest.raises(ModelLoadFailed, match="is not on this host"):
        await driver.start(model(image="warmpath-test/not-built-here:0"), SIM_GPU)
    assert owned(engine, owner) == []


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_containers_it_does_not_own_are_never_touched(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    # One squats on the name the driver would use; one claims another agent.
    squatter = foreign(engine, owner, name=container_name(owner, "stub-model"))
    neighbour = foreign(
        engine, owner, labels={OWNER_LABEL: f"{owner}-other", MODEL_LABEL: "stub-model"}
    )
    driver = DockerDriver(settings(), engine, owner, http)

    with pytest.raises(ModelLoadFailed, match="does not own"):
        await driver.start(model(), SIM_GPU)
    assert await driver.adopt() == []
    other = await driver.start(model("other-model"), SIM_GPU)
    await driver.stop(other)
    await driver.close()

    assert status(engine, squatter) == "running"
    assert status(engine, neighbour) == "running"
    assert owned(engine, owner) == []


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_on_a_network_the_model_is_addressed_by_container_name(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    network = engine.networks.create(f"warmpath-{owner}", labels={FOREIGN_LABEL: owner})
    try:
        driver = DockerDriver(settings(network=network.name), engine, owner, http)
        running = await driver.start(model(), SIM_GPU)
        name = container_name(owner, "stub-model")
        assert running.base_url == f"http://{name}:8080"
        container = engine.containers.get(name)
        assert network.name in container.attrs["NetworkSettings"]["Networks"]
        assert not any(container.attrs["NetworkSettings"]["Ports"].values())  # nothing published
        await driver.stop(running)
    finally:
        for leftover in engine.containers.list(
            all=True, filters={"label": f"{OWNER_LABEL}={owner}"}
        ):
            leftover.remove(force=True)
        network.remove()


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_the_manager_adopts_running_containers_as_ready_without_loading(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    served, unserved = model("stub-model"), model("not-served-here")
    previous = DockerDriver(settings(), engine, owner, http)
    await previous.start(served, SIM_GPU)
    await previous.start(unserved, SIM_GPU)
    await previous.close()
    containers = owned(engine, owner)

    registry = CollectorRegistry()
    driver = DockerDriver(settings(), engine, owner, http, poll_seconds=0.1)
    manager = docker_manager(owner, served, driver, registry)
    try:
        assert await manager.adopt(await driver.adopt()) == ["stub-model"]

        state = await manager.state()
        (residency,) = state.models
        assert residency.model == "stub-model"
        assert residency.state is ResidencyState.READY
        assert state.gpus[0].memory_used_bytes == 100 * MIB  # booked
        outcome = await manager.ensure_loaded("stub-model")
        assert not outcome.cold_start
        assert registry.get_sample_value(
            "warmpath_agent_loads_total", {"model": "stub-model", "outcome": "ok"}
        ) in (None, 0.0)
        # The unserved model's container is left running, as is ours.
        assert owned(engine, owner) == containers
        assert all(status(engine, c) == "running" for c in containers)

        # A crash of an adopted container is noticed like any other.
        engine.containers.get(container_name(owner, "stub-model")).kill()
        deadline = time.monotonic() + 10
        while (await manager.state()).models[0].state is not ResidencyState.FAILED:
            assert time.monotonic() < deadline, "the crash was not noticed"
            await asyncio.sleep(0.05)
    finally:
        await manager.close()


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_a_container_killed_between_polls_is_found_down_by_verify_and_started_again(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    # The watcher polls once an hour here, so only the caller's verify can notice.
    driver = DockerDriver(settings(), engine, owner, http, poll_seconds=3600)
    manager = docker_manager(owner, model(), driver)
    try:
        await manager.ensure_loaded("stub-model")
        (killed,) = owned(engine, owner)
        engine.containers.get(killed).kill()

        stale = await manager.ensure_loaded("stub-model")
        assert not stale.cold_start, "without verify the agent's state is taken as it is"
        checked = await manager.ensure_loaded("stub-model", verify=True)

        await assert_replaced(checked, killed, engine, owner, http)
        again = await manager.ensure_loaded("stub-model", verify=True)
        assert not again.cold_start, "a live container is left alone"
    finally:
        await manager.close()


SUPERVISED = [
    "sh",
    "-c",
    # The server is not the container's main process: its shell outlives it.
    "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & echo $! >/tmp/server.pid; sleep 86400 & wait",
]


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_a_running_container_whose_server_died_is_found_down_by_verify_and_replaced(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    driver = DockerDriver(settings(), engine, owner, http, poll_seconds=0.1)
    manager = docker_manager(owner, model(command=SUPERVISED), driver)
    try:
        await manager.ensure_loaded("stub-model")
        (hollow,) = owned(engine, owner)
        signal_server(engine, hollow)
        await asyncio.sleep(0.5)
        assert status(engine, hollow) == "running", "the watcher sees a live container"
        assert not (await manager.ensure_loaded("stub-model")).cold_start

        checked = await manager.ensure_loaded("stub-model", verify=True)

        await assert_replaced(checked, hollow, engine, owner, http)
    finally:
        await manager.close()


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_the_watcher_finds_a_running_container_whose_server_died_and_removes_it(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    driver = DockerDriver(settings(), engine, owner, http, poll_seconds=0.1, liveness_seconds=0.5)
    running = await driver.start(model(command=SUPERVISED), SIM_GPU)
    exited = asyncio.create_task(driver.wait_exited(running))
    await asyncio.sleep(1.5)
    assert not exited.done(), "a live server passes the watcher's liveness check"

    (hollow,) = owned(engine, owner)
    signal_server(engine, hollow)

    reason = await asyncio.wait_for(exited, 10)
    assert reason.startswith("container running, but nothing serves http://127.0.0.1:")
    assert owned(engine, owner) == [], "the hollow container is removed, freeing its memory"


@pytest.mark.docker
@pytest.mark.timeout(120)
async def test_a_server_too_busy_to_answer_in_time_is_not_taken_for_dead(
    engine: docker.DockerClient, owner: str, http: httpx.AsyncClient
) -> None:
    driver = DockerDriver(settings(), engine, owner, http)
    running = await driver.start(model(command=SUPERVISED), SIM_GPU)
    (container_id,) = owned(engine, owner)
    # Stopped, the server still holds its socket: connections are accepted, never answered.
    signal_server(engine, container_id, "-STOP")

    assert await driver.check(running) is None
    assert owned(engine, owner) == [container_id]

    signal_server(engine, container_id, "-CONT")
    await driver.stop(running)
    assert owned(engine, owner) == []


# -- the composition root -------------------------------------------------------


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


@pytest.mark.docker
@pytest.mark.integration
@pytest.mark.timeout(180)
def test_a_restarted_agent_process_adopts_its_running_model_without_reloading(
    engine: docker.DockerClient, owner: str, tmp_path: Path
) -> None:
    """The whole agent, as a process: SIGTERM leaves the model's container running, and
    the next agent reports it ready at once, loading nothing."""
    config = tmp_path / "warmpath.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        **GEMMA,
                        "name": "stub-model",
                        "aliases": [],
                        "memory": "100MiB",
                        "container": {"image": IMAGE},
                    }
                ],
                "agent": {
                    "host": owner,
                    "inventory": {"simulated": True, "gpus": [{"memory": "1GiB"}]},
                    "docker": {"startup_timeout_seconds": 20, "stop_timeout_seconds": 2},
                },
            }
        )
    )

    def start_agent() -> tuple[subprocess.Popen[bytes], str, int]:
        address, metrics = f"127.0.0.1:{free_port()}", free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "warmpath_agent",
                "--config",
                str(config),
                "--listen",
                address,
                "--metrics-listen",
                f"127.0.0.1:{metrics}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "agent.log").open("ab"),
        )
        wait_serving(address, 60)
        return process, address, metrics

    first, address, _ = start_agent()
    with grpc.insecure_channel(address) as channel:
        loaded = gpu_agent_pb2_grpc.GpuAgentStub(channel).EnsureLoaded(
            gpu_agent_pb2.EnsureLoadedRequest(model="stub-model"), timeout=60
        )
    assert loaded.cold_start
    containers = owned(engine, owner)
    assert len(containers) == 1
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert status(engine, containers[0]) == "running", "the model outlives the agent"

    second, address, metrics = start_agent()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = gpu_agent_pb2_grpc.GpuAgentStub(channel)
            (model,) = stub.GetState(gpu_agent_pb2.GetStateRequest()).models
            assert model.state == gpu_agent_pb2.RESIDENCY_STATE_READY
            again = stub.EnsureLoaded(
                gpu_agent_pb2.EnsureLoadedRequest(model="stub-model"), timeout=60
            )
        assert not again.cold_start
        assert metric_total(metrics, "warmpath_agent_loads_total") == 0, "adopted, not reloaded"
        assert owned(engine, owner) == containers, "the same container, no new one"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
