"""The record of a running llama.cpp server child, kept so that a later agent can adopt it.

Each child is recorded in the state directory (`state_dir`, by default
`<log_dir>/state`), one JSON file per model: model, pid, the process start time from
/proc/<pid>/stat, its command line and the environment the driver set, port, base
URL, model file and GPU. A record is trusted only while that pid still runs with that
start time and that command line, so a pid reused by another process is never
signalled or adopted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from warmpath_agent.processes import process_command, process_start_time

__all__ = ["ChildRecord", "live_record", "record_path", "safe_file_name", "write_record"]

logger = logging.getLogger(__name__)

_RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """What a later agent needs to recognise and adopt a running server."""

    model: str
    pid: int
    start_time: int
    """/proc/<pid>/stat field 22: tells this process from a later one with the same pid."""
    command: tuple[str, ...]
    port: int
    base_url: str
    model_file: str
    gpu_uuid: str
    env: dict[str, str] | None = None
    """The variables the driver set for the server; None in a record from an agent
    that did not record them yet."""
    gpu_simulated: bool | None = None
    """None in such older records too."""

    def to_json(self) -> str:
        return json.dumps({"version": _RECORD_VERSION, **asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ChildRecord:
        """Raises ValueError for anything but a record this version wrote."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != _RECORD_VERSION:
            raise ValueError("not a version 1 process record")
        command = data.get("command")
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise ValueError("command is not a list of strings")
        record = cls(
            model=_typed(data, "model", str),
            pid=_typed(data, "pid", int),
            start_time=_typed(data, "start_time", int),
            command=tuple(command),
            port=_typed(data, "port", int),
            base_url=_typed(data, "base_url", str),
            model_file=_typed(data, "model_file", str),
            gpu_uuid=_typed(data, "gpu_uuid", str),
            env=_optional_env(data),
            gpu_simulated=_optional_bool(data, "gpu_simulated"),
        )
        if record.pid <= 1 or not 0 < record.port < 65536:
            raise ValueError("pid or port out of range")
        return record

    def is_running(self) -> bool:
        """True while the recorded process itself still runs (not a reused pid)."""
        return (
            process_start_time(self.pid) == self.start_time
            and process_command(self.pid) == self.command
        )


def _typed(data: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = data.get(key)
    # bool is an int in Python, but never a valid pid or port.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{key} is not a {kind.__name__}")
    return value


def _optional_env(data: Mapping[str, Any]) -> dict[str, str] | None:
    env = data.get("env")
    if env is None:
        return None
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("env is not a mapping of strings")
    return dict(env)


def _optional_bool(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{key} is not a bool")
    return value


def record_path(state_dir: Path, model: str) -> Path:
    # Sanitising alone could map two model names onto one file; the hash keeps
    # them apart.
    digest = hashlib.sha256(model.encode()).hexdigest()[:10]
    return state_dir / f"{safe_file_name(model)}-{digest}.json"


def write_record(state_dir: Path, record: ChildRecord) -> Path:
    """Writes (atomically: a crash leaves the old record or the new one) and returns
    the record's path."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = record_path(state_dir, record.model)
    partial = path.with_suffix(".tmp")
    partial.write_text(record.to_json())
    os.replace(partial, path)
    return path


def live_record(path: Path) -> ChildRecord | None:
    """The record at `path` while its process still runs; otherwise it is removed."""
    try:
        record = ChildRecord.from_json(path.read_text())
    except (OSError, ValueError) as error:
        logger.warning("removing unreadable process record %s: %s", path.name, error)
        path.unlink(missing_ok=True)
        return None
    if not record.is_running():
        logger.info(
            "removing the record of %s's server (pid %d): that process is gone",
            record.model, record.pid,
        )  # fmt: skip
        path.unlink(missing_ok=True)
        return None
    return record


def safe_file_name(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
