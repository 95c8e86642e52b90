"""The chart's Grafana dashboard asks only for series this project exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from agc_controller.dataplane.agent import AgentMetrics
from agc_controller.providers.local.metrics import TrafficMetrics
from agc_controller.runtime.metrics import ControllerMetrics

DASHBOARD = (
    Path(__file__).resolve().parents[2]
    / "deploy/chart/agc-controller/dashboards/agc-controller.json"
)
# what a family of each type exposes, by sample name suffix
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
}


def exported() -> set[str]:
    registries = [ControllerMetrics(provider="local").registry, AgentMetrics().registry]
    traffic = CollectorRegistry()
    traffic.register(TrafficMetrics())
    return {
        family.name + suffix
        for registry in [*registries, traffic]
        for family in registry.collect()
        for suffix in _SUFFIXES[family.type]
    }


def queried() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    names = set()
    for expr in exprs:
        # without Grafana's variables, label selectors and `by (...)` groupings, a
        # series name is an identifier followed by a range, a close or the end
        bare = re.sub(r"label_values\((\w+),[^)]*\)", r"\1", expr)
        bare = re.sub(r"\$\w+|\{[^}]*\}|\bby \([^)]*\)", "", bare)
        names |= set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?=\[|\)|,|$)", bare))
    return names - {"le"}


def test_every_series_the_dashboard_queries_is_exported() -> None:
    asked = queried()
    assert asked, "the dashboard queries nothing: the expression parser is broken"
    assert asked - exported() == set()


def test_the_dashboards_panels_have_unique_ids_and_targets() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["targets"] for p in panels)
