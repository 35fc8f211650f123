"""Several hosts behind one router, as real processes: each host a gpu-agent (simulated
GPU, real llama.cpp server with the Gemma weights) and a backend-adapter; optionally
each host in a network namespace of its own, reached over a veth pair, so a test can
cut its link silently (`tc netem loss 100%`) and restore it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import yaml

from tests.conftest import GEMMA, metric_total
from tests.integration.conftest import mesh_config
from warmpath.v1 import generate_pb2, gpu_agent_pb2, gpu_agent_pb2_grpc, router_pb2, router_pb2_grpc
from warmpath_cli.mesh import LocalMesh, MeshPorts

MODEL = str(GEMMA["name"])
HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TIMEOUT_SECONDS = 3.0
FIRST_TOKEN = {"floor_seconds": 3.0, "ceiling_seconds": 10.0, "min_samples": 3}
"""Short enough for a test; the floor keeps a busy 2-core machine from tripping it."""


@dataclass
class Host:
    name: str
    mesh: LocalMesh
    stopped: list[int] = field(default_factory=list)

    def model_server_pids(self) -> list[int]:
        agent = psutil.Process(self.mesh.processes["gpu-agent"].pid)
        return [
            child.pid
            for child in agent.children(recursive=True)
            if "llama_cpp.server" in " ".join(child.cmdline())
        ]

    def freeze(self, *, adapter: bool, model_server: bool) -> None:
        """SIGSTOP: the processes live and keep their connections, but answer nothing."""
        pids = self.model_server_pids() if model_server else []
        if adapter:
            pids.append(self.mesh.processes["backend-adapter"].pid)
        assert pids, f"nothing to stop on {self.name}"
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            self.stopped.append(pid)

    def thaw(self) -> None:
        while self.stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.stopped.pop(), signal.SIGCONT)


@dataclass
class Hosts:
    """The router (on loopback) and its hosts; `stop()` thaws and stops everything."""

    router: LocalMesh
    hosts: dict[str, Host]

    @property
    def address(self) -> str:
        return self.router.ports.address("router")

    def metric(self, name: str) -> float:
        assert self.router.ports.metrics is not None
        return metric_total(self.router.ports.metrics["router"], name)

    def stop(self) -> None:
        for host in self.hosts.values():
            host.thaw()
        self.router.stop()
        for host in self.hosts.values():
            host.mesh.stop()


def router_settings(hosts: dict[str, MeshPorts]) -> dict[str, object]:
    return {
        "hosts": [
            {
                "name": name,
                "agent": ports.address("gpu-agent"),
                "adapter": ports.address("backend-adapter"),
            }
            for name, ports in hosts.items()
        ],
        "heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_SECONDS,
        "keepalive": {"time_seconds": 5, "timeout_seconds": 2},
        "first_token_timeout": FIRST_TOKEN,
    }


def start_hosts(
    root: Path, addresses: dict[str, str], wraps: dict[str, tuple[str, ...]] | None = None
) -> Hosts:
    """Starts a host per entry of `addresses` (name -> listen address), each under its
    wrap command if any, then the router; the model is made ready on every host."""
    ports = {name: MeshPorts.free() for name in addresses}
    for name, address in addresses.items():
        ports[name].host = address
    started: dict[str, Host] = {}
    router_ports = MeshPorts.free()
    router = LocalMesh(None, root / "router", router_ports, services=("router",))
    try:
        for name in addresses:
            document = mesh_config(ports[name])
            document["models"] = [GEMMA]
            document["router"] = router_settings(ports)
            document["agent"] = {
                **document["agent"],  # type: ignore[dict-item]
                "host": name,
                "models": [GEMMA["name"]],
                "heartbeat_seconds": HEARTBEAT_SECONDS,
            }
            config = root / f"{name}.yaml"
            config.write_text(yaml.safe_dump(document))
            mesh = LocalMesh(
                config,
                root / name,
                ports[name],
                services=("gpu-agent", "backend-adapter"),
                wrap=(wraps or {}).get(name, ()),
            )
            started[name] = Host(name, mesh)
            mesh.start(timeout_seconds=120)
        router.config = root / f"{next(iter(addresses))}.yaml"
        router.start(timeout_seconds=60)
        asyncio.run(_load_everywhere(ports))
    except BaseException:
        Hosts(router, started).stop()
        raise
    return Hosts(router, started)


async def _load_everywhere(ports: dict[str, MeshPorts]) -> None:
    for host in ports.values():
        async with grpc.aio.insecure_channel(host.address("gpu-agent")) as channel:
            await gpu_agent_pb2_grpc.GpuAgentStub(channel).EnsureLoaded(
                gpu_agent_pb2.EnsureLoadedRequest(model=MODEL), timeout=180
            )


@dataclass(frozen=True)
class Answer:
    host: str
    seconds: float


async def ask(stub: router_pb2_grpc.RouterStub, deadline_seconds: float = 120.0) -> Answer:
    """One Generate; the host that answered and how long it took (raises AioRpcError)."""
    started = time.monotonic()
    host = ""
    async for chunk in stub.Generate(
        generate_pb2.GenerateRequest(model=MODEL, prompt="The sky is", max_tokens=4),
        timeout=deadline_seconds,
    ):
        if chunk.HasField("route"):
            host = chunk.route.host
    return Answer(host, time.monotonic() - started)


async def unreachable_in_route(stub: router_pb2_grpc.RouterStub, host: str) -> str:
    """What Route says about `host` if it calls it unreachable, else ""."""
    decision = await stub.Route(
        router_pb2.RouteRequest(request=generate_pb2.GenerateRequest(model=MODEL, prompt="hi")),
        timeout=10,
    )
    return next(
        (
            c.rejected_because
            for c in decision.candidates
            if c.host == host and "unreachable" in c.rejected_because
        ),
        "",
    )


# -- network namespaces ------------------------------------------------------------

NAMESPACE_PREFIX = "wp19"
"""Namespaces and links this module makes are named after it, and only those are touched."""


def namespaces_unavailable() -> str:
    """Why this machine cannot make network namespaces, or "" when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found: install iproute2"
    probe = f"{NAMESPACE_PREFIX}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.decode().strip()}"
    return ""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class NamespacedHost:
    namespace: str
    outside_link: str
    inside_link: str
    address: str
    """The host's address inside its namespace (its side of a /30 of 10.231.0.0/16)."""

    @property
    def wrap(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.namespace)

    def cut(self) -> None:
        """Every packet on the link dropped, both ways: nothing fails, nothing answers.

        netem's 100% loss where the kernel has it; else a FIFO that holds no packet
        (`pfifo limit 0`), which drops every one just as silently."""
        for command in self._qdisc("add"):
            netem = subprocess.run(
                [*command, "netem", "loss", "100%"], check=False, capture_output=True
            )
            if netem.returncode != 0:
                subprocess.run([*command, "pfifo", "limit", "0"], check=True, capture_output=True)

    def restore(self) -> None:
        for command in self._qdisc("del"):
            subprocess.run(command, check=False, capture_output=True)

    def _qdisc(self, action: str) -> list[list[str]]:
        return [
            ["tc", "qdisc", action, "dev", self.outside_link, "root"],
            [*self.wrap, "tc", "qdisc", action, "dev", self.inside_link, "root"],
        ]


@contextlib.contextmanager
def namespaced_hosts(names: list[str]) -> Iterator[dict[str, NamespacedHost]]:
    """A namespace per host, each joined to this one by a veth pair on its own /30;
    always deleted afterwards (deleting a namespace deletes its end of the pair)."""
    made: dict[str, NamespacedHost] = {}
    try:
        for index, name in enumerate(names):
            namespace = f"{NAMESPACE_PREFIX}-{name}"
            outside, inside = f"{NAMESPACE_PREFIX}{name}o", f"{NAMESPACE_PREFIX}{name}i"
            subnet = f"10.231.{19 + index}"
            host = NamespacedHost(namespace, outside, inside, f"{subnet}.2")
            # Left over from a run that was killed: made anew.
            subprocess.run(["ip", "netns", "delete", namespace], check=False, capture_output=True)
            subprocess.run(["ip", "link", "delete", outside], check=False, capture_output=True)
            _ip("netns", "add", namespace)
            made[name] = host
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("addr", "add", f"{subnet}.1/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", namespace, "addr", "add", f"{subnet}.2/30", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made.values():
            host.restore()
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("link", "delete", host.outside_link)
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "delete", host.namespace)
