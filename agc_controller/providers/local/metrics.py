"""The local data plane's traffic metrics, in Prometheus' format.

Each Gateway's NGINX counts its HTTP requests in a shared dict (lua/agc/metrics.lua).
A scrape first asks every NGINX for its counters on the control socket
(`TrafficMetrics.refresh`), then exports them with the Gateway's name: the
agent in a data-plane pod does it for its one NGINX, the controller for the
NGINXes it runs on this host. An NGINX that does not answer (starting, or
restarted and counting from zero again) is left out of that scrape: its
counters, like any Prometheus counter, restart at a restart.

Metrics (HTTP only; TLS passthrough, TCP and UDP streams are not counted):
- agc_dataplane_requests_total{gateway, route, backend, code}: answered requests
  by status class (2xx...); route is the matched route's namespace/name and
  backend the chosen backend, both empty when there was none;
- agc_dataplane_upstream_errors_total{gateway, route, backend}: of those, the
  ones whose backend failed (a 5xx answer, or none: refused, reset, timed out);
- agc_dataplane_request_duration_seconds{gateway, route}: a histogram of the
  time from the first request byte read to the last response byte sent;
- agc_dataplane_connections{gateway, state}: client connections now (active,
  and of those reading, writing, waiting: NGINX's stub_status counts).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Mapping
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agc_controller.providers.local.nginx import NginxInstance

log = structlog.get_logger(__name__)

_CLASSES = {"1": "1xx", "2": "2xx", "3": "3xx", "4": "4xx", "5": "5xx"}


class TrafficMetrics(Collector):
    """A Prometheus collector over the last snapshot of each Gateway's NGINX."""

    def __init__(self) -> None:
        self._snapshots: dict[str, dict[str, Any]] = {}

    async def refresh(self, instances: Mapping[str, NginxInstance]) -> None:
        """Read the counters of each NGINX in `instances` (Gateway name → instance)."""
        names = list(instances)
        answers = await asyncio.gather(
            *(instances[n].traffic_snapshot() for n in names), return_exceptions=True
        )
        snapshots = {}
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                log.debug("traffic_metrics_unavailable", gateway=name, error=str(answer))
            else:
                snapshots[name] = answer
        self._snapshots = snapshots

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "agc_dataplane_requests",
            "HTTP requests answered, by matched route, chosen backend and status class.",
            labels=["gateway", "route", "backend", "code"],
        )
        errors = CounterMetricFamily(
            "agc_dataplane_upstream_errors",
            "Requests whose backend failed: a 5xx answer, or none (refused, reset, timed out).",
            labels=["gateway", "route", "backend"],
        )
        durations = HistogramMetricFamily(
            "agc_dataplane_request_duration_seconds",
            "Time from the first request byte read to the last response byte sent.",
            labels=["gateway", "route"],
        )
        connections = GaugeMetricFamily(
            "agc_dataplane_connections",
            "Client connections: active, and of those reading, writing and waiting.",
            labels=["gateway", "state"],
        )
        for gateway, snapshot in sorted(self._snapshots.items()):
            _add(gateway, snapshot, requests, errors, durations)
            for state, value in sorted((snapshot.get("connections") or {}).items()):
                connections.add_metric([gateway, state], value)
        yield requests
        yield errors
        yield durations
        yield connections


def _add(
    gateway: str,
    snapshot: dict[str, Any],
    requests: CounterMetricFamily,
    errors: CounterMetricFamily,
    durations: HistogramMetricFamily,
) -> None:
    bounds: list[float] = snapshot.get("buckets") or []
    # route → per-bucket counts (not cumulative; the last is above every bound), sum
    histograms: dict[str, tuple[list[float], list[float]]] = {}
    # an empty Lua table arrives as {}, not []
    for row in snapshot.get("rows") or []:
        kind, fields, value = row[0], row[1:-1], row[-1]
        if kind == "r" and len(fields) == 3 and fields[2] in _CLASSES:
            requests.add_metric([gateway, fields[0], fields[1], _CLASSES[fields[2]]], value)
        elif kind == "e" and len(fields) == 2:
            errors.add_metric([gateway, fields[0], fields[1]], value)
        elif kind in ("b", "s") and fields:
            counts, total = histograms.setdefault(fields[0], ([0.0] * (len(bounds) + 1), [0.0]))
            if kind == "s":
                total[0] = value
            elif len(fields) == 2 and fields[1].isdigit() and 1 <= int(fields[1]) <= len(counts):
                counts[int(fields[1]) - 1] = value
    for route, (counts, total) in sorted(histograms.items()):
        cumulative, buckets = 0.0, []
        for bound, count in zip([*bounds, math.inf], counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        durations.add_metric([gateway, route], buckets, total[0])
