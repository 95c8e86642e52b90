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


async def test_the_controller_exports_each_gateways_request_counters(
    cluster: Cluster, echo: str
) -> None:
    address = await _served(cluster, echo)
    for _ in range(3):
        await get(address, "/", host="obs.example")
    await cluster.provider.refresh_traffic_metrics()
    registry = CollectorRegistry()
    registry.register(cluster.provider.traffic)
    text = generate_latest(registry).decode()
    gateway = f"{cluster.namespace}/gw"
    counted = [
        float(value)
        for labels, value in re.findall(r"^agc_dataplane_requests_total\{(.*)\} (\S+)$", text, re.M)
        if f'gateway="{gateway}"' in labels
        and f'route="{cluster.namespace}/web"' in labels
        and 'code="2xx"' in labels
    ]
    # _served's own requests and these three
    assert sum(counted) >= 4
    assert f'agc_dataplane_connections{{gateway="{gateway}",state="active"}}' in text
    assert re.search(
        rf'^agc_dataplane_request_duration_seconds_count\{{gateway="{gateway}",'
        rf'route="{cluster.namespace}/web"\}} (\S+)$',
        text,
        re.M,
    )
