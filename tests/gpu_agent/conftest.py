from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.gpu_agent.process_tree import IDLE_WORKER, server_with_worker

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def server_and_worker() -> Iterator[tuple[int, int]]:
    """A real process tree: (the server's pid, the pid of the worker it started)."""
    with server_with_worker(IDLE_WORKER) as pids:
        yield pids


def load_bench_module(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/<name>.py, or a module of bench/simulator/ ("simulator.traces"), imported with
    bench/ on sys.path, as the scripts import each other."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module(name)


@pytest.fixture
def placement(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The placement simulator's command, bench/placement.py."""
    return load_bench_module("placement", monkeypatch)


@pytest.fixture
def simulator(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The placement simulator, bench/simulator/, with every module of it imported
    (simulator.traces, simulator.policies, ...)."""
    package = load_bench_module("simulator", monkeypatch)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"simulator.{module.name}")
    return package
