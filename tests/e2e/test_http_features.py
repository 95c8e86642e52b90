"""Timeouts, mirrors, CORS, WebSockets, forwarding headers, and hostile values."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from agc_controller.core.resources import POLICY_GROUP
from devcluster.netns import BackendNamespace
from tests.e2e.conftest import Cluster
from tests.e2e.test_http_routing import HTTP, eventually_status, get


@pytest.fixture(scope="module")
def echo(backends: BackendNamespace) -> dict[str, str]:
    return {
        name: backends.start_echo(f"feat-{name}")
        for name in ("main", "mirror-a", "mirror-b", "errors")
    }


async def test_timeouts(cluster: Cluster, echo: dict[str, str]) -> None:
    await cluster.service("main", [echo["main"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/short"}}],
                    "timeouts": {"request": "500ms"},
                    "backendRefs": [{"name": "main", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/backend"}}],
                    "timeouts": {"request": "10s", "backendRequest": "300ms"},
                    "backendRefs": [{"name": "main", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/off"}}],
                    "timeouts": {"request": "0s"},
                    "backendRefs": [{"name": "main", "port": 80}],
                },
            ],
        },
    )
    await eventually_status(address, "/short", 200)
    assert (await get(address, "/short?delay=1"))[0] == 504
    assert (await get(address, "/backend?delay=1"))[0] == 504
    assert (await get(address, "/backend?delay=0.05"))[0] == 200
    assert (await get(address, "/off?delay=1"))[0] == 200


async def test_mirrors(cluster: Cluster, echo: dict[str, str]) -> None:
    for name, address in echo.items():
        await cluster.service(name, [address])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {"backendRef": {"name": "mirror-a", "port": 80}},
                        },
                        {
                            "type": "RequestMirror",
                            "requestMirror": {
                                "backendRef": {"name": "mirror-b", "port": 80},
                                "percent": 0,
                            },
                        },
                    ],
                    "backendRefs": [{"name": "main", "port": 80}],
                },
            ],
        },
    )
    await eventually_status(address, "/", 200)
    _, _, body = await get(address, "/mirrored-path?x=1")
    assert body["name"] == "feat-main"

    async def seen(name: str) -> list[str]:
        async with aiohttp.ClientSession() as s, s.get(f"http://{echo[name]}:8080/__seen") as r:
            paths: list[str] = await r.json()
            return paths

    async with asyncio.timeout(10):
        while "/mirrored-path?x=1" not in await seen("mirror-a"):
            await asyncio.sleep(0.05)
    assert "/mirrored-path?x=1" not in await seen("mirror-b")


async def test_error_pages(cluster: Cluster, echo: dict[str, str]) -> None:
    """HTTPRouteFilter errorPages: the listed answers of the rule's backend are replaced
    by the error backend's answer to the same request (ingress-nginx's headers)."""
    await cluster.service("main", [echo["main"]])
    await cluster.service("errors", [echo["errors"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.apply(
        {
            "apiVersion": f"{POLICY_GROUP}/v1alpha1",
            "kind": "HTTPRouteFilter",
            "metadata": {"name": "pages"},
            "spec": {
                "errorPages": {
                    "statusCodes": [404, 503],
                    "backendRef": {"name": "errors", "port": 80},
                }
            },
        }
    )
    pages = {"group": POLICY_GROUP, "kind": "HTTPRouteFilter", "name": "pages"}
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/app"}}],
                    "filters": [{"type": "ExtensionRef", "extensionRef": pages}],
                    "backendRefs": [{"name": "main", "port": 80}],
                },
                {"backendRefs": [{"name": "main", "port": 80}]},
            ],
        },
    )
    await eventually_status(address, "/app", 200)
    status, _, body = await get(
        address, "/app/missing?status=404", headers={"Accept": "application/json"}
    )
    # the error backend answers (the echo answers the status its query asks for)
    assert (status, body["name"]) == (404, "feat-errors")
    assert body["path"] == "/?status=404"
    sent = body["headers"]
    assert sent["X-Code"] == "404"
    assert sent["X-Format"] == "application/json"
    assert sent["X-Original-URI"] == "/app/missing?status=404"
    assert (sent["X-Namespace"], sent["X-Route-Name"]) == (cluster.namespace, "r")
    assert (sent["X-Service-Name"], sent["X-Service-Port"]) == ("main", "80")
    # the same request: method and body too
    status, _, body = await get(address, "/app?status=503", method="POST", data="x" * 1000)
    assert (status, body["name"], body["method"]) == (503, "feat-errors", "POST")
    assert body["body_length"] == 1000
    # other answers pass through untouched, as do other rules' errors
    status, _, body = await get(address, "/app?status=500")
    assert (status, body["name"]) == (500, "feat-main")
    status, _, body = await get(address, "/other?status=404")
    assert (status, body["name"]) == (404, "feat-main")
    # the error backend gone: its own failure is the answer, never the original page
    await cluster.endpoints("errors", [])
    async with asyncio.timeout(10):
        while (await get(address, "/app?status=404"))[0] != 503:
            await asyncio.sleep(0.05)
    assert (await get(address, "/app"))[0] == 200


async def test_cors(cluster: Cluster, echo: dict[str, str]) -> None:
    await cluster.service("main", [echo["main"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "filters": [
                        {
                            "type": "CORS",
                            "cors": {
                                "allowOrigins": [
                                    "https://app.example.com",
                                    "https://*.shop.example.com",
                                ],
                                "allowMethods": ["GET", "PUT"],
                                "allowHeaders": ["X-Token"],
                                "exposeHeaders": ["X-Backend"],
                                "maxAge": 60,
                                "allowCredentials": True,
                            },
                        }
                    ],
                    "backendRefs": [{"name": "main", "port": 80}],
                },
            ],
        },
    )
    await eventually_status(address, "/", 200)
    status, headers, _ = await get(
        address,
        "/",
        method="OPTIONS",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"},
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert headers["Access-Control-Allow-Methods"] == "GET, PUT"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Max-Age"] == "60"
    assert headers["Access-Control-Expose-Headers"] == "X-Backend"
    status, headers, _ = await get(address, "/", headers={"Origin": "https://app.example.com"})
    assert (status, headers["Access-Control-Expose-Headers"]) == (200, "X-Backend")
    status, headers, _ = await get(address, "/", headers={"Origin": "https://evil.example.com"})
    assert status == 200
    assert "Access-Control-Allow-Origin" not in headers
    # "*" in an origin's host stands for one or more labels, nothing else
    for origin, allowed in (
        ("https://a.shop.example.com", True),
        ("https://a.b.shop.example.com", True),
        ("https://shop.example.com", False),
        ("http://a.shop.example.com", False),
        ("https://a.shop.example.com:8443", False),
    ):
        _, headers, _ = await get(address, "/", headers={"Origin": origin})
        assert (headers.get("Access-Control-Allow-Origin") == origin) is allowed, origin
    # a preflight from a foreign origin is answered here, with no CORS header,
    # and never reaches the backend
    status, headers, body = await get(
        address,
        "/",
        method="OPTIONS",
        headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "PUT"},
    )
    assert (status, body) == (204, None)
    assert not any(name.startswith("Access-Control-") for name in headers)


async def test_websocket_and_forwarding_headers(cluster: Cluster, echo: dict[str, str]) -> None:
    await cluster.service("main", [echo["main"]], app_protocol="kubernetes.io/ws")
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "main", "port": 80}]}],
        },
    )
    _, _, body = await eventually_status(address, "/fwd", 200, host="shop.example.com")
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the client's address, preserved
    assert seen["x-forwarded-proto"] == "http"
    assert body["host"] == "shop.example.com"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://{address}/ws", headers={"Host": "shop.example.com"}) as ws,
    ):
        for i in range(3):
            await ws.send_str(f"ping{i}")
            assert (await ws.receive_str()) == f"feat-main:ping{i}"


@pytest.mark.parametrize(
    "value",
    [
        "v; return 200 pwned;",
        "}} server { listen 9999; }",
        "$host$request_uri",
        "\"quoted' value",
        "#comment",
        "ngx.exit(200) ]] os.execute('id') --[[",
        "x" * 4000,
    ],
)
async def test_hostile_values_are_inert(cluster: Cluster, echo: dict[str, str], value: str) -> None:
    await cluster.service("main", [echo["main"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/h"},
                            "headers": [{"name": "X-Match", "value": value}],
                        }
                    ],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {
                                "set": [{"name": "X-Injected", "value": value}]
                            },
                        },
                        {
                            "type": "ResponseHeaderModifier",
                            "responseHeaderModifier": {"set": [{"name": "X-Echo", "value": value}]},
                        },
                    ],
                    "backendRefs": [{"name": "main", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": "main", "port": 80}],
                },
            ],
        },
    )
    await eventually_status(address, "/", 200)
    status, headers, body = await get(address, "/h", headers={"X-Match": value})
    assert status == 200
    assert {k.lower(): v for k, v in body["headers"].items()}["x-injected"] == value
    assert headers["X-Echo"] == value
    # the value matched as data only: anything else falls to the other rule
    _, headers, _ = await get(address, "/h", headers={"X-Match": "other"})
    assert "X-Echo" not in headers
