from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.gpu_agent.process_tree import IDLE_WORKER, server_with_worker


@pytest.fixture
def server_and_worker() -> Iterator[tuple[int, int]]:
    """A real process tree: (the server's pid, the pid of the worker it started)."""
    with server_with_worker(IDLE_WORKER) as pids:
        yield pids


def load_bench_module(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/<name>.py as module `name` (the scripts import each other by that name)."""
    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def placement(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The placement simulator, bench/placement.py."""
    return load_bench_module("placement", monkeypatch)
