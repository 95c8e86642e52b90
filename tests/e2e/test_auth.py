"""AuthPolicy with real traffic: IP allow/deny (and trusted proxies), API keys from a
Secret (rotated without a reload), HTTP basic from htpasswd (bcrypt and {SHA})."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from devcluster.netns import BackendNamespace
from tests.e2e.conftest import GW, Cluster
from tests.e2e.test_http_routing import HTTP, eventually_status, get

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


def on_rule(rule: str, **spec: Any) -> dict[str, Any]:
    """An AuthPolicy's spec naming rule `rule` of route "r"."""
    return {
        "targetRefs": [{"group": GW, "kind": "HTTPRoute", "name": "r", "sectionName": rule}],
        **spec,
    }


async def auth_policy(cluster: Cluster, name: str, rule: str, **spec: Any) -> None:
    await cluster.policy("AuthPolicy", name, on_rule(rule, **spec))
    await cluster.policy_accepted("AuthPolicy", name)


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
    await cluster.policy(
        "AuthPolicy", "broken", on_rule("broken", basic={"secretRef": {"name": "missing"}})
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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(key: Any, alg: str, claims: dict[str, Any], kid: str | None = None) -> str:
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    if alg == "RS256":
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = utils.decode_dss_signature(
            key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = b""
    return f"{signing_input}.{_b64url(signature)}"


def _jwks(*keys: tuple[str, Any]) -> str:
    found = []
    for kid, key in keys:
        numbers = key.public_key().public_numbers()
        if isinstance(key, rsa.RSAPrivateKey):
            found.append(
                {
                    "kty": "RSA",
                    "kid": kid,
                    "n": _b64url(numbers.n.to_bytes(256, "big")),
                    "e": _b64url(numbers.e.to_bytes(3, "big")),
                }
            )
        else:
            found.append(
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "kid": kid,
                    "x": _b64url(numbers.x.to_bytes(32, "big")),
                    "y": _b64url(numbers.y.to_bytes(32, "big")),
                }
            )
    return json.dumps({"keys": found})


async def test_jwt_tokens(cluster: Cluster, echo: str) -> None:
    issuer = "https://issuer.test"
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    second = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {"iss": issuer, "aud": "api", "sub": "alice", "exp": now + 600}
    await cluster.service("web", [echo])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"name": "api", "backendRefs": [{"name": "web", "port": 80}]}],
        },
    )
    await eventually_status(address, "/", 200)
    reloads = cluster.provider.reloads
    await secret(cluster, "issuer", {"jwks.json": _jwks(("k1", first))}, "Opaque")
    await auth_policy(
        cluster,
        "tokens",
        "api",
        jwt={
            "providers": [
                {
                    "issuer": issuer,
                    "audiences": ["api"],
                    "jwks": {"secretRef": {"name": "issuer"}},
                    "claimsToHeaders": [{"claim": "sub", "header": "X-User"}],
                }
            ]
        },
    )
    await eventually_status(address, "/", 401)

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "X-User": "mallory"}

    status, _, body = await get(address, "/", headers=bearer(_token(first, "RS256", claims, "k1")))
    assert status == 200
    assert {k.lower(): v for k, v in body["headers"].items()}["x-user"] == "alice"
    refused = {
        "expired": _token(first, "RS256", {**claims, "exp": now - 3600}, "k1"),
        "wrong audience": _token(first, "RS256", {**claims, "aud": "other"}, "k1"),
        "wrong signature": _token(second, "ES256", claims, "k1"),
        "alg none": _token(None, "none", claims),
    }
    for what, token in refused.items():
        status, headers, _ = await get(address, "/", headers=bearer(token))
        assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer error="invalid_token"'), what
    status, headers, _ = await get(address, "/")
    assert (status, headers["WWW-Authenticate"]) == (401, "Bearer")

    # the JWKS rotates to the EC key: its tokens pass, the RSA key's no longer do
    await secret(cluster, "issuer", {"jwks.json": _jwks(("k2", second))}, "Opaque")
    rotated = bearer(_token(second, "ES256", claims, "k2"))
    async with asyncio.timeout(20):
        while (await get(address, "/", headers=rotated))[0] != 200:
            await asyncio.sleep(0.05)
    assert (await get(address, "/", headers=bearer(_token(first, "RS256", claims, "k1"))))[0] == 401

    # a rate limit keyed by the verified token's sub: each user has a budget of 2
    await cluster.policy(
        "RateLimitPolicy",
        "per-user",
        on_rule(
            "api", limit={"requests": 2, "unit": "Minute"}, key={"type": "Claim", "claim": "sub"}
        ),
    )
    await cluster.policy_accepted("RateLimitPolicy", "per-user")
    bob = bearer(_token(second, "ES256", {**claims, "sub": "bob"}, "k2"))
    async with asyncio.timeout(20):
        while "RateLimit-Limit" not in (await get(address, "/", headers=rotated))[1]:
            await asyncio.sleep(0.05)
    # alice spent one request finding the limit: one more passes, then 429
    assert [(await get(address, "/", headers=rotated))[0] for _ in range(2)] == [200, 429]
    assert [(await get(address, "/", headers=bob))[0] for _ in range(3)] == [200, 200, 429]
    # without a valid token the limit is never reached: the AuthPolicy answers first
    assert (await get(address, "/"))[0] == 401
    assert cluster.provider.reloads == reloads
