"""Starts the three services as local child processes and stops them cleanly.

Used by `warmpath up` (and so `make run`) and by the integration tests, so
the tests exercise exactly what a newcomer runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import signal
import socket

# Runs this package's own service modules, with a fixed argv and no shell.
import subprocess  # nosec B404
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["LocalMesh", "MeshError", "MeshPorts", "free_port", "port_free", "wait_serving"]

_STOP_ORDER = ("router", "backend-adapter", "gpu-agent")
_MODULES = {
    "gpu-agent": "warmpath_agent",
    "backend-adapter": "warmpath_adapter",
    "router": "warmpath_router",
}


class MeshError(Exception):
    pass


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range where it can.

    A port from bind(("127.0.0.1", 0)) comes from the ephemeral range, which
    the kernel also hands to outgoing connections: between this call and the
    service binding it, any connect() may take it (seen once in CI as "address
    already in use"). Below that range only explicit binds compete, and this
    process never hands out the same port twice.
    """
    low = _ephemeral_low()
    candidates = list(range(max(1024, low - 12000), low))
    random.shuffle(candidates)
    for port in candidates[:200]:
        if port not in _handed_out and port_free(port):
            _handed_out.add(port)
            return port
    with socket.socket() as probe:  # no room below the range: let the kernel choose
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def port_free(port: int) -> bool:
    """Whether a loopback socket can bind `port` now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class MeshPorts:
    router: int = 50051
    agent: int = 50052
    adapter: int = 50053
    metrics: dict[str, int] | None = None
    """Metrics port per service; None: as the config says."""
    host: str = "127.0.0.1"
    """Address every service listens on (metrics stay on loopback)."""
    http: int | None = None
    """The router's HTTP front door; None: as the config says (router.http.listen)."""

    @classmethod
    def free(cls) -> MeshPorts:
        metrics = {name: free_port() for name in _MODULES}
        return cls(free_port(), free_port(), free_port(), metrics, http=free_port())

    def address(self, service: str) -> str:
        port = {"router": self.router, "gpu-agent": self.agent, "backend-adapter": self.adapter}
        return f"{self.host}:{port[service]}"


@dataclass
class LocalMesh:
    """The three services on loopback, with their logs in `log_dir`."""

    config: Path | None
    log_dir: Path
    ports: MeshPorts = field(default_factory=MeshPorts)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    health_credentials: grpc.ChannelCredentials | None = None
    """Credentials for the start-up health checks when the services use TLS."""
    services: tuple[str, ...] = ("gpu-agent", "backend-adapter", "router")
    """Which services to start, in this order (a host of a larger mesh runs no router)."""
    wrap: tuple[str, ...] = ()
    """A command each service runs under, e.g. `ip netns exec NAME`."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, timeout_seconds: float = 60.0) -> None:
        """Starts agent and adapter, then the router, each once the previous is healthy."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for service in self.services:
                self._spawn(service)
                wait_serving(
                    self.ports.address(service),
                    timeout_seconds,
                    alive=functools.partial(self._check_alive, service),
                    credentials=self.health_credentials,
                )
        except BaseException:
            self.stop()
            raise

    def stop(self, grace_seconds: float = 15.0) -> dict[str, int | None]:
        """SIGTERM in reverse dependency order; returns each exit code."""
        codes: dict[str, int | None] = {}
        for service in _STOP_ORDER:
            process = self.processes.pop(service, None)
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(grace_seconds)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            codes[service] = process.returncode
        for log in self._logs:
            log.close()
        self._logs.clear()
        return codes

    def log_path(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"

    def _spawn(self, service: str) -> None:
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        env.pop("WARMPATH_CONFIG", None)
        args = [
            *self.wrap,
            sys.executable,
            "-m",
            _MODULES[service],
            "--listen",
            self.ports.address(service),
        ]
        if self.config is not None:
            args += ["--config", str(self.config)]
        if self.ports.metrics is not None:
            args += ["--metrics-listen", f"127.0.0.1:{self.ports.metrics[service]}"]
        if service == "router" and self.ports.http is not None:
            args += ["--http-listen", f"127.0.0.1:{self.ports.http}"]
        if service == "gpu-agent":
            args += ["--log-dir", str(self.log_dir / "models")]
        log = self.log_path(service).open("ab")
        self._logs.append(log)
        # A session of its own: Ctrl-C in the terminal reaches only the
        # launcher, which then stops the services in order.
        self.processes[service] = subprocess.Popen(  # nosec B603
            args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def _check_alive(self, service: str) -> None:
        process = self.processes[service]
        if process.poll() is not None:
            tail = self.log_path(service).read_text(errors="replace").strip().splitlines()[-12:]
            raise MeshError(
                f"{service} exited with code {process.returncode}:\n  " + "\n  ".join(tail)
            )


def wait_serving(
    address: str,
    timeout_seconds: float,
    alive: Callable[[], None] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Polls the gRPC health service at `address` until it says SERVING."""

    async def poll() -> None:
        deadline = time.monotonic() + timeout_seconds
        channel = (
            grpc.aio.secure_channel(address, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(address)
        )
        async with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if alive is not None:
                    alive()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.1)
        raise MeshError(f"{address} did not become healthy within {timeout_seconds:g} s")

    asyncio.run(poll())
