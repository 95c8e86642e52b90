"""AuthPolicy with real traffic: IP allow/deny (and trusted proxies), API keys from a
Secret (rotated without a reload), HTTP basic from htpasswd (bcrypt and {SHA})."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest

from agc_controller.core.resources import POLICY_GROUP
from devcluster.netns import BackendNamespace
from tests.e2e.conftest import GW, Cluster
from tests.e2e.test_http_routing import HTTP, eventually_status, get
from tests.e2e.test_ratelimit import POLICY_VERSION, accepted

# htpasswd entries for the password "s3cret": bcrypt (cost 5) and {SHA}
HTPASSWD = (
    "alice:$2b$05$bRD449e8iX8VgrG/O1NhwOMiWa8r8qD5yxnGGh04vUUGXWd2EaZJe\n"
    "bob:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=\n"
)


@pytest.fixture(scope="module")
def echo(backends: BackendNamespace) -> str:
    return backends.start_echo("auth")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64(f"{user}:{password}")}


async def secret(cluster: Cluster, name: str, data: dict[str, str], kind: str) -> None:
    await cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": kind,
            "data": {k: b64(v) for k, v in data.items()},
        }
    )


async def auth_policy(cluster: Cluster, name: str, rule: str, **spec: Any) -> None:
    await cluster.apply(
        {
            "apiVersion": f"{POLICY_GROUP}/{POLICY_VERSION}",
            "kind": "AuthPolicy",
            "metadata": {"name": name},
            "spec": {
                "targetRefs": [
                    {"group": GW, "kind": "HTTPRoute", "name": "r", "sectionName": rule}
                ],
                **spec,
            },
        }
    )
    await accepted(cluster, name, plural="authpolicies")


async def test_addresses_keys_and_passwords(cluster: Cluster, echo: str) -> None:
    await cluster.service("web", [echo])
    address = await cluster.gateway("gw", HTTP)
    rules = [
        {
            "name": name,
            "matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
            "backendRefs": [{"name": "web", "port": 80}],
        }
        for name in ("denied", "proxied", "keys", "staff", "broken")
    ]
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [*rules, {"backendRefs": [{"name": "web", "port": 80}]}],
        },
    )
    await eventually_status(address, "/", 200)
    reloads = cluster.provider.reloads
    await secret(cluster, "keys", {"mobile": "key-one"}, "agc-controller.io/api-key")
    await secret(cluster, "users", {".htpasswd": HTPASSWD}, "Opaque")
    await auth_policy(cluster, "denied", "denied", ipAccess={"deny": ["0.0.0.0/0", "::/0"]})
    await auth_policy(
        cluster,
        "proxied",
        "proxied",
        ipAccess={"allow": ["198.51.100.0/24"], "trustedProxies": ["127.0.0.0/8"]},
    )
    await auth_policy(
        cluster,
        "keys",
        "keys",
        apiKey={"secretRefs": [{"name": "keys"}], "clientHeader": "X-Client"},
    )
    await auth_policy(
        cluster, "staff", "staff", basic={"secretRef": {"name": "users"}, "realm": "Staff"}
    )
    await eventually_status(address, "/denied", 403)

    # addresses: denied everywhere; allowed only through a trusted proxy's header
    assert (await get(address, "/denied"))[0] == 403
    assert (await get(address, "/proxied"))[0] == 403
    forwarded = {"X-Forwarded-For": "203.0.113.1, 198.51.100.7"}
    assert (await get(address, "/proxied", headers=forwarded))[0] == 200
    assert (await get(address, "/", headers={}))[0] == 200, "unguarded rules stay open"

    # API keys: the key stays at the gateway, the client's name goes on
    status, _, body = await get(address, "/keys", headers={"X-Api-Key": "key-one"})
    assert status == 200
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert seen.get("x-client") == "mobile"
    assert "x-api-key" not in seen
    assert (await get(address, "/keys", headers={"X-Api-Key": "key-two"}))[0] == 401
    assert (await get(address, "/keys"))[0] == 401

    # basic: bcrypt and {SHA} entries; a wrong password asks again
    assert (await get(address, "/staff", headers=basic("alice", "s3cret")))[0] == 200
    assert (await get(address, "/staff", headers=basic("bob", "s3cret")))[0] == 200
    status, headers, _ = await get(address, "/staff", headers=basic("alice", "wrong"))
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="Staff", charset="UTF-8"'
    assert (await get(address, "/staff"))[0] == 401

    # a policy that cannot be honoured (its Secret is missing) fails closed
    await cluster.apply(
        {
            "apiVersion": f"{POLICY_GROUP}/{POLICY_VERSION}",
            "kind": "AuthPolicy",
            "metadata": {"name": "broken"},
            "spec": {
                "targetRefs": [
                    {"group": GW, "kind": "HTTPRoute", "name": "r", "sectionName": "broken"}
                ],
                "basic": {"secretRef": {"name": "missing"}},
            },
        }
    )
    await eventually_status(address, "/broken", 500)

    # the key Secret rotates: the old key stops, the new one works, no reload
    await secret(cluster, "keys", {"mobile": "key-two"}, "agc-controller.io/api-key")
    async with asyncio.timeout(20):
        while (await get(address, "/keys", headers={"X-Api-Key": "key-two"}))[0] != 200:
            await asyncio.sleep(0.05)
    assert (await get(address, "/keys", headers={"X-Api-Key": "key-one"}))[0] == 401
    assert cluster.provider.reloads == reloads


async def test_external_authorization(cluster: Cluster, echo: str) -> None:
    """The echo backend plays the authorization Service: it answers a check with
    the status the check path asks for, and its own name in X-Backend."""
    await cluster.service("web", [echo])
    await cluster.service("authz", [echo], port=9000)
    address = await cluster.gateway("gw", HTTP)
    checks = {"allowed": "/allow", "refused": "/deny?status=403", "down": "/down"}
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "name": name,
                    "matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
                    "backendRefs": [{"name": "web", "port": 80}],
                }
                for name in checks
            ],
        },
    )
    await eventually_status(address, "/allowed", 200)
    # "down" asks a Service without endpoints
    await cluster.service("nobody", [], port=9000)
    for name, path in checks.items():
        await auth_policy(
            cluster,
            name,
            name,
            externalAuth={
                "backendRef": {"name": "nobody" if name == "down" else "authz", "port": 9000},
                "path": path,
                "headersToBackend": ["X-Backend"],
                "timeout": "1s",
            },
        )
    await eventually_status(address, "/refused", 403)
    # allowed: the check's X-Backend header reaches the backend with the request
    status, _, body = await get(address, "/allowed/x", headers={"Authorization": "Bearer t"})
    assert status == 200
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert seen["x-backend"] == "auth"
    assert "x-original-uri" not in seen, "the check's own headers stay with the check"
    # refused: the Service's answer is the client's; down: 503, never a pass
    assert (await get(address, "/refused"))[0] == 403
    status, headers, _ = await get(address, "/down")
    assert (status, headers.get("X-AGC-Auth")) == (503, "unavailable")
    # the check saw the original request's headers and path
    async with aiohttp.ClientSession() as s, s.get(f"http://{echo}:8080/__seen") as r:
        assert "/allow" in await r.json()
