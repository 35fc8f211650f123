"""A real process tree standing in for a model server that starts workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping

# Starts the worker given as argv, waits for its first line ("ready"), prints
# the worker's pid and waits for it. It holds nothing itself, as vLLM's API
# server leaves the GPU memory to its engine core.
_SERVER = """
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", *sys.argv[1:]], stdout=subprocess.PIPE)
assert worker.stdout.readline().strip() == b"ready"
print(worker.pid, flush=True)
worker.wait()
"""
IDLE_WORKER = "import time; print('ready', flush=True); time.sleep(600)"


@contextlib.contextmanager
def server_with_worker(
    worker_source: str, *worker_args: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[int, int]]:
    """(the server's pid, its worker's pid) once the worker is ready; both are
    killed afterwards (a killed server cannot stop its worker itself)."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, worker_source, *worker_args],
        stdout=subprocess.PIPE,
        env=dict(env) if env is not None else None,
    )
    worker = 0
    try:
        assert server.stdout is not None
        worker = int(server.stdout.readline())
        yield server.pid, worker
    finally:
        server.kill()
        server.wait(30)
        if worker:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
