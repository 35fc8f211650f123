"""A gpu-agent run as its own process (`python -m warmpath_agent`), as an operator runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import metric_total
from warmpath_cli.mesh import free_port


class AgentProcess:
    """The agent with the config file `config`, serving gRPC and /metrics on free ports.

    Its log goes to `log` (appended to, so an agent started again adds to it); the model
    servers' logs go to `log_dir` when it is given."""

    def __init__(self, config: Path, log: Path, log_dir: Path | None = None) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.metrics_port = free_port()
        command = [
            sys.executable,
            "-m",
            "warmpath_agent",
            "--config",
            str(config),
            "--listen",
            self.address,
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
        ]
        if log_dir is not None:
            command += ["--log-dir", str(log_dir)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("ab"))

    def loads(self) -> float:
        """Model loads it has made, by its metrics."""
        return metric_total(self.metrics_port, "warmpath_agent_loads_total")

    def stop(self) -> int:
        """SIGTERM, as a supervisor stops it; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)
