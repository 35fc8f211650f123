"""compose.yaml's `cpu` profile, brought up for real on a Docker engine.

Builds the images from the host's wheelhouse (scripts/docker/build-images.sh),
starts router, gpu-agent and backend-adapter with the compose tool installed
here, sends a Generate through the router's published port with the host's
`warmpath` CLI, stops the services (each must exit 0 within its
stop_grace_period) and removes everything. Prints how long each phase took.

Skips when no Docker engine answers, unless WARMPATH_REQUIRE_DOCKER=1 (set by
`make test-compose`, which starts one with scripts/docker/engine.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from warmpath_cli.mesh import free_port

REPO = Path(__file__).resolve().parents[2]
# Cold: base image, wheelhouse and three image builds before anything starts.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

PROMPT = "Q: What is the capital of France?\nA:"
JAEGER_IMAGE = "jaegertracing/all-in-one:1.62.0"
ROUTER_SERVICES = ("router",)
MESH_SERVICES = ("router", "gpu-agent", "backend-adapter")


def _run(args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, check=False, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def _docker() -> str | None:
    # Prefer the engine's own client (Debian's docker.io), as scripts/docker does.
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")


def _compose_command(docker: str) -> list[str] | None:
    if _run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    tool = shutil.which("docker-compose")
    return [tool] if tool else None


class Phases:
    """Wall-clock time per phase, printed at the end (run with -s to see it)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def timed(self, name: str, started: float) -> None:
        self.seconds[name] = time.monotonic() - started
        print(f"[compose test] {name}: {self.seconds[name]:.1f} s", flush=True)


class Compose:
    def __init__(self, command: list[str], project: str, env: dict[str, str]) -> None:
        self.command = command
        self.project = project
        self.env = env

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        full = [*self.command, "--project-name", self.project, "--profile", "cpu", *args]
        return _run(full, timeout=timeout, cwd=REPO, env=self.env)

    def container(self, service: str) -> str:
        return self("ps", "-q", service).stdout.strip()


@pytest.fixture(scope="module")
def docker() -> str:
    docker = _docker()
    problem = None
    if docker is None:
        problem = "no docker client installed"
    else:
        info = _run([docker, "info", "--format", "{{.ServerVersion}}"], timeout=30)
        if info.returncode != 0:
            problem = (
                "no Docker engine answers (run scripts/docker/engine.sh as root, "
                f"or start dockerd): {info.stderr.strip()[:200]}"
            )
    if problem is not None:
        if os.environ.get("WARMPATH_REQUIRE_DOCKER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    assert docker is not None
    return docker


@pytest.fixture(scope="module")
def phases() -> Iterator[Phases]:
    recorded = Phases()
    yield recorded
    summary = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in recorded.seconds.items())
    print(f"[compose test] timings: {summary}", flush=True)


@pytest.fixture(scope="module")
def images(docker: str, phases: Phases) -> None:
    started = time.monotonic()
    built = subprocess.run(
        ["bash", str(REPO / "scripts/docker/build-images.sh")], cwd=REPO, timeout=2000, check=False
    )
    assert built.returncode == 0, "building the images failed (see the output above)"
    phases.timed("base image + wheelhouse + image builds", started)


@pytest.fixture
def compose(docker: str, images: None) -> Iterator[tuple[Compose, int, list[str]]]:
    command = _compose_command(docker)
    if command is None:
        pytest.fail("no compose tool: install Debian's docker-compose (scripts/docker/engine.sh)")
    port = free_port()
    env = {**os.environ, "WARMPATH_ROUTER_PORT": str(port)}
    services = ["router"]
    if _run([docker, "image", "inspect", JAEGER_IMAGE]).returncode == 0:
        services.append("jaeger")
    else:
        # No image registry here: without Jaeger the services export nothing
        # (rather than retrying a name that does not resolve).
        print(f"[compose test] {JAEGER_IMAGE} not present locally: tracing export off")
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = ""
    project = f"warmpath-test-{uuid.uuid4().hex[:8]}"
    stack = Compose(command, project, env)
    try:
        yield stack, port, services
    finally:
        logs = stack("logs", "--no-color", "--tail", "60", timeout=60)
        print(logs.stdout[-8000:], file=sys.stderr)
        stack("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    warmpath = Path(sys.executable).with_name("warmpath")
    return _run([str(warmpath), *args], timeout=300)


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout:.0f} s")


def test_cpu_profile_answers_through_the_published_router_port(
    docker: str, compose: tuple[Compose, int, list[str]], phases: Phases
) -> None:
    stack, port, services = compose
    router = f"127.0.0.1:{port}"

    started = time.monotonic()
    up = stack("up", "--detach", "--no-build", *services, timeout=600)
    assert up.returncode == 0, up.stderr

    def healthy(service: str) -> bool:
        state = _run(
            [docker, "inspect", "-f", "{{.State.Health.Status}}", stack.container(service)]
        )
        return state.stdout.strip() == "healthy"

    _wait_for(lambda: all(healthy(s) for s in MESH_SERVICES), 180, "services not healthy")
    phases.timed("up (all three healthy)", started)

    # Only the router publishes, and only on loopback.
    for service in MESH_SERVICES:
        ports = _run([docker, "port", stack.container(service)]).stdout.split()
        if service in ROUTER_SERVICES:
            assert ports == ["50051/tcp", "->", router], ports
        else:
            assert ports == [], f"{service} publishes {ports}"

    # The router is healthy before its WatchState stream has the agent's
    # snapshot; Route answers once the host is known, and loads nothing.
    started = time.monotonic()
    _wait_for(lambda: _cli("route", "hi", "--router", router).returncode == 0, 60, "no route")
    answer = _cli(
        "generate", PROMPT, "--router", router,
        "--max-tokens", "24", "--temperature", "0", "--stop", "\n",
    )  # fmt: skip
    phases.timed("first answer (cold load)", started)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip(), f"empty answer; route: {answer.stderr}"
    route = answer.stderr
    # "(auto" and whatever the classifier adds: how auto resolved the model.
    assert "route: model gemma3-270m (auto" in route, route
    assert "host compose GPU 0" in route, route
    assert "backend llama_cpp" in route, route
    assert "cold load in" in route, route
    generated = re.search(r"tokens in (\d+) / out (\d+)", route)
    assert generated is not None and int(generated.group(2)) > 0, route
    print(f"[compose test] answer: {answer.stdout.strip()!r}\n[compose test] {route.strip()}")

    started = time.monotonic()
    warm = _cli("generate", "The sky is", "--router", router, "--max-tokens", "8")
    phases.timed("second answer (warm)", started)
    assert warm.returncode == 0, warm.stderr
    assert "| warm |" in warm.stderr, warm.stderr

    # SIGTERM: every service drains and exits 0 within its stop_grace_period.
    started = time.monotonic()
    containers = {service: stack.container(service) for service in MESH_SERVICES}
    stopped = stack("stop", timeout=180)
    assert stopped.returncode == 0, stopped.stderr
    phases.timed("graceful stop", started)
    for service, container in containers.items():
        code = _run([docker, "inspect", "-f", "{{.State.ExitCode}}", container]).stdout.strip()
        assert code == "0", f"{service} exited {code} on SIGTERM"
