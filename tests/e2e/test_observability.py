"""What an operator sees of the traffic: request ids and trace context passed to
the backend, one JSON access log line per request, and the request counters."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from devcluster.netns import BackendNamespace
from tests.e2e.conftest import Cluster
from tests.e2e.test_http_routing import HTTP, eventually_status, get

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def echo(backends: BackendNamespace) -> str:
    return backends.start_echo("obs")


async def _served(cluster: Cluster, echo: str) -> str:
    await cluster.service("svc", [echo])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "web",
        {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["obs.example"],
            "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}],
        },
    )
    await eventually_status(address, "/", 200, host="obs.example")
    return address


def _seen(body: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in body["headers"].items()}


async def test_request_ids_and_trace_context_reach_the_backend(cluster: Cluster, echo: str) -> None:
    address = await _served(cluster, echo)
    # the client's own, passed unchanged
    _, _, body = await get(
        address,
        "/",
        host="obs.example",
        headers={"X-Request-ID": "client-id-1", "traceparent": TRACEPARENT},
    )
    assert _seen(body)["x-request-id"] == "client-id-1"
    assert _seen(body)["traceparent"] == TRACEPARENT
    # none: a request id of NGINX's, and a trace started from it (not sampled)
    _, _, body = await get(address, "/", host="obs.example")
    request_id = _seen(body)["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert _seen(body)["traceparent"] == f"00-{request_id}-{request_id[:16]}-00"
    # an invalid traceparent is replaced, not passed on
    _, _, body = await get(address, "/", host="obs.example", headers={"traceparent": "00-zz"})
    request_id = _seen(body)["x-request-id"]
    assert _seen(body)["traceparent"] == f"00-{request_id}-{request_id[:16]}-00"


async def test_each_request_is_one_json_access_log_line_without_its_query(
    cluster: Cluster, echo: str
) -> None:
    address = await _served(cluster, echo)
    await get(
        address,
        '/logged/"quoted"?api_key=secret',
        host="obs.example",
        headers={"X-Request-ID": "log-me", "User-Agent": 'agent "x"\\'},
    )
    await get(address, "/", host="unrouted.example", headers={"X-Request-ID": "log-me-too"})
    log = cluster.provider.state_dir / f"{cluster.namespace}_gw" / "access.log"
    lines = await _logged(log, {"log-me", "log-me-too"})
    routed, unrouted = lines["log-me"], lines["log-me-too"]
    # as it came on the wire (the client percent-encoded the quotes)
    assert routed["path"] == "/logged/%22quoted%22"
    assert "secret" not in log.read_text()
    assert routed["status"] == 200
    assert routed["route"] == f"{cluster.namespace}/web"
    assert routed["host"] == "obs.example"
    assert routed["user_agent"] == 'agent "x"\\'
    assert routed["upstream_status"] == "200"
    assert routed["traceparent"].startswith("00-")
    assert unrouted["status"] == 404
    assert unrouted["route"] == ""
    assert unrouted["upstream"] == ""


async def _logged(log: Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The access log lines of these request ids (NGINX writes its buffer each second)."""
    async with asyncio.timeout(10):
        while (found := await asyncio.to_thread(_read, log, ids)).keys() != ids:
            await asyncio.sleep(0.2)
    return found


def _read(log: Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    # every line must be a JSON document, whatever the request held
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {e["request_id"]: e for e in entries if e["request_id"] in ids}


async def _exported(cluster: Cluster) -> str:
    await cluster.provider.refresh_traffic_metrics()
    registry = CollectorRegistry()
    registry.register(cluster.provider.traffic)
    return generate_latest(registry).decode()


def _series(text: str, name: str, **labels: str) -> float:
    """The sum of metric `name` over the series carrying these labels."""
    total = 0.0
    for found, value in re.findall(rf"^{name}\{{(.*)\}} (\S+)$", text, re.M):
        series = dict(re.findall(r'(\w+)="([^"]*)"', found))
        if all(series.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


async def _until_counted(cluster: Cluster, name: str, want: float, **labels: str) -> str:
    """The exported metrics once `name` over `labels` reached `want` (workers add
    their counts every second: lua/agc/metrics.lua)."""
    async with asyncio.timeout(10):
        while True:
            text = await _exported(cluster)
            if _series(text, name, **labels) >= want:
                return text
            await asyncio.sleep(0.2)


async def test_the_controller_exports_each_gateways_request_counters(
    cluster: Cluster, echo: str, backends: BackendNamespace
) -> None:
    address = await _served(cluster, echo)
    gateway = f"{cluster.namespace}/gw"
    route = f"{cluster.namespace}/web"
    served = {"gateway": gateway, "route": route, "code": "2xx"}
    await asyncio.sleep(1.5)  # _served's requests reach the counters (a flush)
    before = _series(await _exported(cluster), "agc_dataplane_requests_total", **served)
    for _ in range(3):
        await get(address, "/", host="obs.example")
    text = await _until_counted(cluster, "agc_dataplane_requests_total", before + 3, **served)
    await asyncio.sleep(1.5)  # one more flush: nothing else is counted
    text = await _exported(cluster)
    assert _series(text, "agc_dataplane_requests_total", **served) == before + 3
    assert f'agc_dataplane_connections{{gateway="{gateway}",state="active"}}' in text
    assert _series(text, "agc_dataplane_request_duration_seconds_count", route=route) >= 3

    # a backend that refuses connections: 502, counted as the backend's failure
    await cluster.service("gone", [backends.add_address()])
    await cluster.route(
        "broken",
        {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["broken.example"],
            "rules": [{"backendRefs": [{"name": "gone", "port": 80}]}],
        },
    )
    await eventually_status(address, "/", 502, host="broken.example")
    broken = {"gateway": gateway, "route": f"{cluster.namespace}/broken"}
    text = await _until_counted(cluster, "agc_dataplane_upstream_errors_total", 1, **broken)
    errors = _series(text, "agc_dataplane_upstream_errors_total", **broken)
    assert errors == _series(text, "agc_dataplane_requests_total", code="5xx", **broken)
    assert _series(text, "agc_dataplane_upstream_errors_total", route=route) == 0
