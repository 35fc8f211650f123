from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

# A server that holds no GPU memory itself: it starts a worker (as vLLM starts
# its engine core) and prints the worker's pid.
_SERVER = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(worker.pid, flush=True)
try:
    time.sleep(120)
finally:
    worker.kill()
"""


@pytest.fixture
def server_and_worker() -> Iterator[tuple[int, int]]:
    """A real process tree: (the server's pid, the pid of the worker it started)."""
    server = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        worker = int(server.stdout.readline())
        yield server.pid, worker
    finally:
        server.terminate()
        server.wait(10)
