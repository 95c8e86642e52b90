"""Real HTTP traffic through the local data plane: matching, precedence, splits, filters."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from devcluster.netns import BackendNamespace
from tests.e2e.conftest import Cluster


async def get(
    address: str,
    path: str,
    *,
    host: str = "example.com",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    port: int = 80,
    data: str | None = None,
) -> tuple[int, CIMultiDict[str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"http://{address}:{port}{path}",
            headers={"Host": host, **(headers or {})},
            data=data,
            allow_redirects=False,
        ) as response,
    ):
        body: Any = None
        if response.content_type == "application/json":
            body = await response.json()
        return response.status, CIMultiDict(response.headers), body


async def eventually_status(address: str, path: str, want: int, **kwargs: Any) -> Any:
    async with asyncio.timeout(20):
        while True:
            status, headers, body = await get(address, path, **kwargs)
            if status == want:
                return status, headers, body
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def echo(backends: BackendNamespace) -> dict[str, str]:
    return {name: backends.start_echo(name) for name in ("one", "two", "three")}


HTTP = [{"name": "http", "port": 80, "protocol": "HTTP"}]


async def test_matching_and_precedence(cluster: Cluster, echo: dict[str, str]) -> None:
    for name, address in echo.items():
        await cluster.service(name, [address])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": "one", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "Exact", "value": "/exact"}}],
                    "backendRefs": [{"name": "two", "port": 80}],
                },
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/v2"},
                            "headers": [{"name": "x-version", "value": "three"}],
                        }
                    ],
                    "backendRefs": [{"name": "three", "port": 80}],
                },
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/q"},
                            "queryParams": [{"name": "tier", "value": "gold"}],
                            "method": "POST",
                        }
                    ],
                    "backendRefs": [{"name": "two", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "RegularExpression", "value": "/items/[0-9]+"}}],
                    "backendRefs": [{"name": "three", "port": 80}],
                },
            ],
        },
    )
    await eventually_status(address, "/exact", 200)
    cases = [
        ("/anything", {}, "GET", "one"),
        ("/exact", {}, "GET", "two"),
        ("/exact/", {}, "GET", "one"),  # Exact is exact
        ("/v2/x", {"X-Version": "three"}, "GET", "three"),
        ("/v2example", {"X-Version": "three"}, "GET", "one"),  # segment-aware prefix
        ("/v2/x", {}, "GET", "one"),
        ("/q?tier=gold", {}, "POST", "two"),
        ("/q?tier=gold", {}, "GET", "one"),
        ("/items/42", {}, "GET", "three"),
        ("/items/4x", {}, "GET", "one"),
    ]
    for path, headers, method, backend in cases:
        status, _, body = await get(address, path, headers=headers, method=method)
        assert (status, body["name"]) == (200, backend), (path, headers, method)
    status, _, _ = await get(address, "/exact", host="other.example.org")
    assert status == 404


async def test_weighted_split_and_unresolved_share(cluster: Cluster, echo: dict[str, str]) -> None:
    await cluster.service("one", [echo["one"]])
    await cluster.service("two", [echo["two"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "split",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/split"}}],
                    "backendRefs": [
                        {"name": "one", "port": 80, "weight": 70},
                        {"name": "two", "port": 80, "weight": 30},
                        {"name": "three", "port": 80, "weight": 0},
                    ],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/half"}}],
                    "backendRefs": [{"name": "one", "port": 80}, {"name": "missing", "port": 80}],
                },
            ],
        },
    )
    await eventually_status(address, "/split", 200)
    counts: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(2000):
            async with session.get(f"http://{address}/split", headers={"Host": "x"}) as response:
                counts[(await response.json())["name"]] += 1
        statuses: collections.Counter[int] = collections.Counter()
        for _ in range(1000):
            async with session.get(f"http://{address}/half", headers={"Host": "x"}) as response:
                statuses[response.status] += 1
    assert abs(counts["one"] / 2000 - 0.70) <= 0.05, counts
    assert abs(counts["two"] / 2000 - 0.30) <= 0.05, counts
    assert counts["three"] == 0
    assert set(statuses) == {200, 500}
    assert abs(statuses[500] / 1000 - 0.5) <= 0.06, statuses


async def test_filters(cluster: Cluster, echo: dict[str, str]) -> None:
    await cluster.service("one", [echo["one"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "filters",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/headers"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {
                                "set": [{"name": "X-Set", "value": "set"}],
                                "add": [{"name": "X-Add", "value": "added"}],
                                "remove": ["X-Remove"],
                            },
                        },
                        {
                            "type": "ResponseHeaderModifier",
                            "responseHeaderModifier": {
                                "set": [{"name": "X-Resp", "value": "yes"}],
                                "remove": ["X-Backend"],
                            },
                        },
                    ],
                    "backendRefs": [{"name": "one", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
                    "filters": [
                        {
                            "type": "URLRewrite",
                            "urlRewrite": {
                                "hostname": "rewritten.example.com",
                                "path": {
                                    "type": "ReplacePrefixMatch",
                                    "replacePrefixMatch": "/new",
                                },
                            },
                        }
                    ],
                    "backendRefs": [{"name": "one", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/moved"}}],
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {
                                "scheme": "https",
                                "hostname": "secure.example.com",
                                "statusCode": 301,
                                "path": {"type": "ReplaceFullPath", "replaceFullPath": "/landing"},
                            },
                        }
                    ],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/port"}}],
                    "filters": [{"type": "RequestRedirect", "requestRedirect": {"port": 8443}}],
                },
            ],
        },
    )
    await eventually_status(address, "/headers", 200)
    status, headers, body = await get(
        address, "/headers", headers={"X-Add": "orig", "X-Remove": "gone", "X-Set": "old"}
    )
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert seen["x-set"] == "set"
    assert seen["x-add"] == "orig,added"
    assert "x-remove" not in seen
    assert headers["X-Resp"] == "yes"
    assert "X-Backend" not in headers
    status, _, body = await get(address, "/old/page?q=1")
    assert (status, body["path"], body["host"]) == (200, "/new/page?q=1", "rewritten.example.com")
    status, headers, _ = await get(address, "/moved/x?keep=1")
    assert (status, headers["Location"]) == (301, "https://secure.example.com/landing?keep=1")
    status, headers, _ = await get(address, "/port", host="example.com")
    assert (status, headers["Location"]) == (302, "http://example.com:8443/port")


async def test_endpoints_change_without_reload(
    cluster: Cluster, echo: dict[str, str], backends: BackendNamespace
) -> None:
    await cluster.service("svc", [echo["one"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]},
    )
    _, _, body = await eventually_status(address, "/", 200)
    assert body["name"] == "one"
    reloads = cluster.provider.reloads
    await cluster.endpoints("svc", [echo["two"]])
    async with asyncio.timeout(20):
        while (await get(address, "/"))[2]["name"] != "two":
            await asyncio.sleep(0.05)
    assert cluster.provider.reloads == reloads
