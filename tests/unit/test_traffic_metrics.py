"""The local data plane's request counters in Prometheus' text format (metrics.py)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from agc_controller.providers.local.metrics import TrafficMetrics

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


def exposition(snapshots: dict[str, dict[str, Any]]) -> set[str]:
    metrics = TrafficMetrics()
    metrics._snapshots = snapshots
    registry = CollectorRegistry()
    registry.register(metrics)
    return {
        line
        for line in generate_latest(registry).decode().splitlines()
        if line and not line.startswith("#")
    }


def test_counters_get_the_gateways_name_and_the_status_class() -> None:
    lines = exposition(
        {
            "ns/gw": {
                "buckets": BOUNDS,
                "rows": [
                    ["r", "ns/web", "ns/svc:80", "2", 7],
                    ["r", "", "", "4", 1],
                    ["e", "ns/web", "ns/svc:80", 2],
                ],
                "connections": {"active": 3, "reading": 0, "writing": 1, "waiting": 2},
            }
        }
    )
    assert (
        'agc_dataplane_requests_total{backend="ns/svc:80",code="2xx",gateway="ns/gw",'
        'route="ns/web"} 7.0' in lines
    )
    assert (
        'agc_dataplane_requests_total{backend="",code="4xx",gateway="ns/gw",route=""} 1.0' in lines
    )
    errors = (
        'agc_dataplane_upstream_errors_total{backend="ns/svc:80",gateway="ns/gw",route="ns/web"}'
    )
    assert f"{errors} 2.0" in lines
    assert 'agc_dataplane_connections{gateway="ns/gw",state="active"} 3.0' in lines


def test_the_histogram_is_made_cumulative_with_its_sum_and_count() -> None:
    lines = exposition(
        {
            "ns/gw": {
                "buckets": BOUNDS,
                # one request in bucket 1 (<= 5 ms), two in bucket 3 (<= 25 ms), one above 10 s
                "rows": [
                    ["b", "ns/web", "1", 1],
                    ["b", "ns/web", "3", 2],
                    ["b", "ns/web", "12", 1],
                    ["s", "ns/web", 30.05],
                ],
                "connections": {},
            }
        }
    )
    prefix = 'agc_dataplane_request_duration_seconds_bucket{gateway="ns/gw",'
    assert f'{prefix}le="0.005",route="ns/web"}} 1.0' in lines
    assert f'{prefix}le="0.01",route="ns/web"}} 1.0' in lines
    assert f'{prefix}le="0.025",route="ns/web"}} 3.0' in lines
    assert f'{prefix}le="10.0",route="ns/web"}} 3.0' in lines
    assert f'{prefix}le="+Inf",route="ns/web"}} 4.0' in lines
    assert (
        'agc_dataplane_request_duration_seconds_count{gateway="ns/gw",route="ns/web"} 4.0' in lines
    )
    assert (
        'agc_dataplane_request_duration_seconds_sum{gateway="ns/gw",route="ns/web"} 30.05' in lines
    )


def test_an_empty_snapshot_and_malformed_rows_export_nothing() -> None:
    lines = exposition(
        {
            # an empty Lua table arrives as {}; unknown kinds and classes are skipped
            "ns/a": {"buckets": BOUNDS, "rows": {}, "connections": {}},
            "ns/b": {"buckets": BOUNDS, "rows": [["r", "x", "y", "9", 1], ["z", 1]]},
        }
    )
    assert lines == set()
