"""A model's container: its name, labels and create arguments, and what its state and logs
say.

Ownership. Every container this driver creates carries the labels
`warmpath.owner=<agent host name>`, `warmpath.model=<registry name>`,
`warmpath.gpu=<GPU UUID>`, and what adoption needs to address it again
(`warmpath.port`, `warmpath.readiness_path`, `warmpath.served_id`). The driver
only ever stops, removes or adopts containers whose `warmpath.owner` is its
own; anything else on the engine, even a container holding the name it
wanted, is left alone. Images come only from `ContainerSpec.image` in config
and must already be on the host (nothing is pulled); a model name never
becomes an image reference or a path: it reaches Docker only as a label value
and, sanitised and hashed, inside the container name `warmpath-<host>-<model>-<hash>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from typing import Any

import docker.errors
from docker.models.containers import Container
from docker.types import DeviceRequest

from warmpath_agent.drivers import GpuPlacement, ModelLoadFailed
from warmpath_agent.inventory import GpuReading
from warmpath_agent.sleep_api import sleep_mode_launch
from warmpath_common.config import ContainerSpec, DockerSettings, ModelSpec

__all__ = [
    "ALIVE",
    "GPU_LABEL",
    "MODEL_LABEL",
    "OWNER_LABEL",
    "PORT_LABEL",
    "READINESS_LABEL",
    "SERVED_ID_LABEL",
    "container_name",
    "create_arguments",
    "exit_reason",
    "exited_while_loading",
    "force_remove",
    "log_tail",
    "readiness_path",
]

OWNER_LABEL = "warmpath.owner"
MODEL_LABEL = "warmpath.model"
GPU_LABEL = "warmpath.gpu"
PORT_LABEL = "warmpath.port"
READINESS_LABEL = "warmpath.readiness_path"
SERVED_ID_LABEL = "warmpath.served_id"
_NAME_PREFIX = "warmpath-"
_LOG_LINES = 15
ALIVE = ("created", "running", "restarting")
"""Container states in which its server may still answer."""


def container_name(owner: str, model: str) -> str:
    """A DNS-safe container name for `model` on `owner`; the hash keeps names that
    sanitise alike (`a.b`, `a/b`) apart."""
    digest = hashlib.sha256(f"{owner}\0{model}".encode()).hexdigest()[:8]
    readable = re.sub(r"[^a-z0-9]+", "-", f"{owner}-{model}".lower()).strip("-")[:40]
    return f"{_NAME_PREFIX}{readable}-{digest}"


def create_arguments(
    settings: DockerSettings,
    owner: str,
    spec: ModelSpec,
    container: ContainerSpec,
    gpu: GpuReading,
    placement: GpuPlacement | None = None,
    *,
    sleep_mode: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for `client.containers.create` (kept apart so tests can read them).
    A gang's GPUs go in one device request, and in the GPU label comma separated.
    `sleep_mode`: the warm tier is on, so vLLM and SGLang get what their sleep endpoints
    need (sleep_api.sleep_mode_launch), appended to the container's command."""
    uuids = (placement or GpuPlacement.one(gpu)).uuids
    arguments: dict[str, Any] = {
        "image": container.image,
        "command": list(container.command) or None,
        "name": container_name(owner, spec.name),
        "labels": {
            OWNER_LABEL: owner,
            MODEL_LABEL: spec.name,
            GPU_LABEL: ",".join(uuids),
            PORT_LABEL: str(container.port),
            READINESS_LABEL: container.readiness_path,
            # The name requests use at the server: a vLLM image serves the
            # model under its source id; otherwise the registry name.
            SERVED_ID_LABEL: spec.source.served_id or spec.name,
        },
        "environment": dict(container.environment),
        "detach": True,
    }
    if sleep_mode:
        flags, environment = sleep_mode_launch(spec.backend)
        if flags:
            arguments["command"] = [*container.command, *flags]
        arguments["environment"].update(environment)
    if settings.network is None:
        # Host port left empty: the engine picks a free one.
        arguments["ports"] = {f"{container.port}/tcp": (settings.publish_host, None)}
    else:
        arguments["network"] = settings.network
    if not gpu.simulated:
        arguments["device_requests"] = [
            DeviceRequest(device_ids=list(uuids), capabilities=[["gpu"]])
        ]
    return arguments


def readiness_path(container: Container) -> str:
    return container.labels.get(READINESS_LABEL) or "/v1/models"


def force_remove(container: Container) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)


def exit_reason(container: Container) -> str:
    state = container.attrs.get("State") or {}
    reason = f"exited with code {state.get('ExitCode', '?')}"
    if state.get("OOMKilled"):
        reason += " (killed: out of memory)"
    if state.get("Error"):
        reason += f" ({state['Error']})"
    return reason


def exited_while_loading(container: Container) -> ModelLoadFailed:
    """The failure for a container that died before it was ready, with its last words."""
    return ModelLoadFailed(
        f"container {container.name} for {container.labels.get(MODEL_LABEL)} "
        f"{exit_reason(container)} while loading; last log lines:\n{log_tail(container)}"
    )


def log_tail(container: Container) -> str:
    try:
        raw: bytes = container.logs(tail=_LOG_LINES)
    except docker.errors.DockerException as error:
        return f"(logs unavailable: {error})"
    return raw.decode("utf-8", "replace").rstrip() or "(no output)"
