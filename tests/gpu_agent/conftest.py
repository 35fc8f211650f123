from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gpu_agent.process_tree import IDLE_WORKER, server_with_worker


@pytest.fixture
def server_and_worker() -> Iterator[tuple[int, int]]:
    """A real process tree: (the server's pid, the pid of the worker it started)."""
    with server_with_worker(IDLE_WORKER) as pids:
        yield pids
