"""The `warmpath` command and the services' start-up, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from warmpath_cli.mesh import LocalMesh, free_port, port_free

pytestmark = pytest.mark.integration


def warmpath(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warmpath_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_generate_streams_and_prints_the_route(mesh: LocalMesh) -> None:
    result = warmpath(
        "generate", "The sky is", "--router", mesh.ports.address("router"), "--max-tokens", "4"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "route: model gemma3-270m (auto: " in result.stderr
    assert "tokens in" in result.stderr


def test_models_and_route_commands(mesh: LocalMesh) -> None:
    router = mesh.ports.address("router")
    listing = warmpath("models", "--router", router)
    assert listing.returncode == 0 and "gemma3-270m" in listing.stdout
    explained = warmpath("route", "hello", "--router", router, "-m", "gemma")
    assert explained.returncode == 0
    assert "alias 'gemma' -> gemma3-270m" in explained.stdout


def test_errors_are_one_clear_line(mesh: LocalMesh) -> None:
    result = warmpath(
        "generate", "hi", "--router", mesh.ports.address("router"), "-m", "llama3.2:3b"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error NOT_FOUND: unknown model 'llama3.2:3b'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_unreachable_router_is_one_clear_line() -> None:
    result = warmpath("models", "--router", f"127.0.0.1:{free_port()}", timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error UNAVAILABLE")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", ["warmpath_router", "warmpath_agent", "warmpath_adapter"])
def test_services_refuse_a_bad_config_naming_the_field(tmp_path: Path, module: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("models:\n  - name: m\n    backend: llama_cpp\n    source: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", module, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "models.0.source: Value error" not in result.stderr
    assert "models.0.source" in result.stderr
    assert "exactly one of path, python_package, served_id" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "field"),
    [
        ("--listen", "router.listen"),
        ("--http-listen", "router.http.listen"),
        ("--metrics-listen", "router.metrics_listen"),
    ],
)
def test_an_address_in_use_is_one_line_naming_its_field(
    tmp_path: Path, option: str, field: str
) -> None:
    config = tmp_path / "warmpath.yaml"
    config.write_text(
        "models:\n  - name: m\n    backend: ollama\n    source: {served_id: m}\n"
        "    memory: 1GiB\n"
        "router:\n  hosts: [{name: local, agent: '127.0.0.1:1', adapter: '127.0.0.1:1'}]\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        ports = {"--listen": "127.0.0.1:0", option: busy}
        result = subprocess.run(
            [sys.executable, "-m", "warmpath_router", "--config", str(config)]
            + [arg for pair in ports.items() for arg in pair],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("router: cannot "), result.stderr
    assert f"{busy} ({field})" in last
    assert "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr


def test_free_ports_come_from_below_the_ephemeral_range_and_never_repeat() -> None:
    """Outgoing connections take ephemeral ports; a test's port must not be one."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(1024 <= port < low for port in ports)


def _ports_free(*ports: int) -> bool:
    return all(port_free(port) for port in ports)


@pytest.mark.skipif(not _ports_free(50051, 50052, 50053, 50080), reason="default ports are in use")
def test_up_answers_then_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """What `make run` does: the embedded default, a sample answer, a `curl` line for the
    HTTP front door that works as pasted, Ctrl-C stops everything."""
    process = subprocess.Popen(
        [sys.executable, "-m", "warmpath_cli", "up", "--log-dir", str(tmp_path / "logs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen.append(line)
        if "serving until Ctrl-C" in line or not line:
            break
    assert any("route: model gemma3-270m" in line for line in seen), "".join(seen)
    while not seen[-1].startswith("$ curl ") and seen[-1] and time.monotonic() < deadline:
        seen.append(process.stderr.readline())
    assert seen[-1].startswith("$ curl "), "".join(seen)
    curl = subprocess.run(
        ["bash", "-c", seen[-1][2:].strip() + " --max-time 60"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    process.send_signal(signal.SIGINT)
    assert json.loads(curl.stdout)["model"] == "gemma3-270m", curl
    stdout, stderr = process.communicate(timeout=60)
    assert "Paris" in stdout
    assert "stopped: router exit 0, backend-adapter exit 0, gpu-agent exit 0" in stderr
    assert process.returncode == 0
