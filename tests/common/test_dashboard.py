"""The Grafana dashboard only queries metrics the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from warmpath_adapter.metrics import AdapterMetrics
from warmpath_agent.metrics import AgentMetrics
from warmpath_common.metrics import HealthProbeCounter
from warmpath_router.metrics import RouterMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/warmpath-dashboard.json"


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    RouterMetrics(registry)
    AgentMetrics(registry)
    AdapterMetrics(registry)
    HealthProbeCounter(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_every_dashboard_query_uses_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bwarmpath_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried <= exported_names(), queried - exported_names()
