"""The placement simulator still runs the agent's policy (a smoke test; no figures asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "placement.py"


def test_simulator_runs_every_policy_on_a_short_trace(monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("placement", BENCH)
    assert spec is not None and spec.loader is not None
    placement = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "placement", placement)
    spec.loader.exec_module(placement)
    monkeypatch.setattr(placement, "HOURS", 0.2)
    results = dict(placement.run(seeds=1))
    assert "LRU" in results and any(name.startswith("warmpath") for name in results)
    for outcomes in results.values():
        assert outcomes[0].cold_loads >= len(placement.SIZES_GB) // 2
    assert "| policy |" in placement.table(list(results.items()), 1, 0.0)
