"""Ingress with real traffic through the local data plane: rules, TLS, the default
backend, two Ingresses merged on one host, refused snippets, each annotation we
convert, and the round trip (the Ingresses and their `-o gateway-api` conversion,
served side by side, answer the same requests the same way)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from kubernetes_asyncio import client

from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.render import Migration, translate_all
from agc_controller.render.documents import render_gateway_api
from agc_controller.translate import Snapshot
from agc_controller.translate.ingress import SERVED_NAMESPACE
from devcluster.netns import BackendNamespace
from tests.e2e.certs import CertificateAuthority
from tests.e2e.conftest import Cluster
from tests.e2e.test_auth import HTPASSWD, basic, secret
from tests.e2e.test_grpc import GRPC_ECHO, eventually_served
from tests.e2e.test_healthcheck import set_health
from tests.e2e.test_http_routing import get
from tests.e2e.test_https import curl
from tests.e2e.test_streams import start_tls_echo

NGINX = "nginx.ingress.kubernetes.io/"
AGIC = "appgw.ingress.kubernetes.io/"


@pytest.fixture(scope="module")
def echo(backends: BackendNamespace) -> dict[str, str]:
    return {name: backends.start_echo(f"ing-{name}") for name in ("web", "api", "next", "fallback")}


@pytest.fixture
async def ingress_class(cluster: Cluster) -> AsyncIterator[str]:
    name = cluster.class_name
    api = client.NetworkingV1Api(cluster.kube)
    await api.create_ingress_class(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": name},
            "spec": {"controller": cluster.ingress_controller},
        }
    )
    yield name
    await api.delete_ingress_class(name)


def ingress(
    name: str,
    host: str,
    paths: list[tuple[str, str, str]],
    *,
    class_name: str,
    annotations: dict[str, str] | None = None,
    tls: str | None = None,
) -> dict[str, Any]:
    """An Ingress for `host` with a path per (path, pathType, Service) in `paths`."""
    spec: dict[str, Any] = {
        "ingressClassName": class_name,
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": path,
                            "pathType": path_type,
                            "backend": {"service": {"name": svc, "port": {"number": 80}}},
                        }
                        for path, path_type, svc in paths
                    ]
                },
            }
        ],
    }
    if tls:
        spec["tls"] = [{"hosts": [host], "secretName": tls}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": spec,
    }


ORIGIN = "https://a.example.com"
# a path "/" to Service "web"
WEB = [("/", "Prefix", "web")]


def on(
    class_name: str,
    name: str,
    host: str,
    annotations: dict[str, str],
    paths: list[tuple[str, str, str]] = WEB,
) -> dict[str, Any]:
    """An Ingress of class `class_name` for `host` with `annotations` (paths: "/" to web)."""
    return ingress(name, host, paths, class_name=class_name, annotations=annotations)


def canary_pair(
    class_name: str, name: str, host: str, annotations: dict[str, str]
) -> list[dict[str, Any]]:
    """Ingress `name` for `host` ("/" to web) and its canary `<name>-canary` ("/" to
    next) with `annotations` besides canary: "true"."""
    return [
        ingress(name, host, WEB, class_name=class_name),
        ingress(
            f"{name}-canary",
            host,
            [("/", "Prefix", "next")],
            class_name=class_name,
            annotations={NGINX + "canary": "true", **annotations},
        ),
    ]


async def ingress_address(cluster: Cluster, name: str) -> str:
    api = client.NetworkingV1Api(cluster.kube)
    async with asyncio.timeout(30):
        while True:
            obj = await api.read_namespaced_ingress(name, cluster.namespace)
            lb = obj.status.load_balancer if obj.status else None
            if lb and lb.ingress:
                return str(lb.ingress[0].ip)
            await asyncio.sleep(0.05)


async def reasons(cluster: Cluster, name: str) -> set[str]:
    events = await client.EventsV1Api(cluster.kube).list_namespaced_event(cluster.namespace)
    return {
        str(e.reason)
        for e in events.items
        if e.regarding and e.regarding.kind == "Ingress" and e.regarding.name == name
    }


async def until_reason(cluster: Cluster, name: str, reason: str) -> None:
    """Until Ingress `name` has an Event with `reason` (they are posted off the
    reconcile's path, so they may come after the traffic changed)."""
    async with asyncio.timeout(20):
        while reason not in await reasons(cluster, name):
            await asyncio.sleep(0.1)


async def answer(address: str, path: str, **kwargs: Any) -> tuple[int, str | None]:
    """Status and the backend that answered (None: the gateway itself did)."""
    status, headers, body = await get(address, path, **kwargs)
    return status, (body or {}).get("name") if headers.get("X-Backend") else None


async def until_answer(
    address: str, path: str, want: tuple[int, str | None], **kwargs: Any
) -> None:
    async with asyncio.timeout(20):
        while await answer(address, path, **kwargs) != want:
            await asyncio.sleep(0.05)


async def test_rules_tls_default_backend_merge_and_refused_snippets(
    cluster: Cluster,
    backends: BackendNamespace,
    echo: dict[str, str],
    ingress_class: str,
    tmp_path: Path,
) -> None:
    for name, address in echo.items():
        await cluster.service(name, [address])
    ca = CertificateAuthority()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.pem)
    await cluster.apply(ca.issue("shop.example.com").secret("shop-tls"))
    shop = "shop.example.com"
    await cluster.apply(
        ingress(
            "storefront", shop, [("/", "Prefix", "web")], class_name=ingress_class, tls="shop-tls"
        )
    )
    address = await ingress_address(cluster, "storefront")
    await until_answer(address, "/", (200, "ing-web"), host=shop)
    # a younger Ingress adds a path to the host; its "/" stays the older one's (made in
    # the same second, "older" is decided by namespace/name, as ingress-nginx does)
    await cluster.apply(
        ingress(
            "webshop-api",
            shop,
            [("/api", "Prefix", "api"), ("/", "Prefix", "next")],
            class_name=ingress_class,
        )
    )
    await until_answer(address, "/api/orders", (200, "ing-api"), host=shop)
    assert await answer(address, "/", host=shop) == (200, "ing-web")
    assert await answer(address, "/apiary", host=shop) == (200, "ing-web")
    await until_reason(cluster, "webshop-api", "PathConflict")
    # the default backend takes what no rule matches
    await cluster.apply(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "fallback"},
            "spec": {
                "ingressClassName": ingress_class,
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
            },
        }
    )
    await until_answer(address, "/anything", (200, "ing-fallback"), host="other.example.com")
    assert await ingress_address(cluster, "fallback") == address
    # HTTPS with the Ingress's own certificate
    reply = await curl(address, shop, ca_file, path="/api/x")
    assert (reply.exit_code, reply.status, reply.subject) == (0, 200, "CN=shop.example.com")
    # a snippet: never configuration; the Ingress's paths answer 500, nothing else moves
    await cluster.apply(
        ingress(
            "sneaky",
            "sneaky.example.com",
            [("/", "Prefix", "web")],
            class_name=ingress_class,
            annotations={NGINX + "configuration-snippet": "return 200 'owned';"},
        )
    )
    await until_answer(address, "/", (500, None), host="sneaky.example.com")
    await until_reason(cluster, "sneaky", "AnnotationRefused")
    assert await answer(address, "/", host=shop) == (200, "ing-web")

    # ssl-passthrough: the backend's own certificate reaches the client; the other
    # hosts on 443 are still terminated by the gateway
    tls_backend = start_tls_echo(backends, ca, "pass.example.com", tmp_path, "ing-tls")
    await cluster.service("tls", [tls_backend], port=8443, target_port=8443)
    passthrough = ingress(
        "pass",
        "pass.example.com",
        [("/", "Prefix", "tls")],
        class_name=ingress_class,
        annotations={NGINX + "ssl-passthrough": "true"},
    )
    passthrough["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {
        "number": 8443
    }
    await cluster.apply(passthrough)

    async def passed_through() -> bool:
        reply = await curl(address, "pass.example.com", ca_file)
        return (reply.exit_code, reply.status, reply.subject) == (0, 200, "CN=pass.example.com")

    async with asyncio.timeout(20):
        while not await passed_through():
            await asyncio.sleep(0.1)
    reply = await curl(address, shop, ca_file, path="/api/x")
    assert (reply.status, reply.subject) == (200, "CN=shop.example.com")


def annotated(class_name: str, tls: str) -> list[dict[str, Any]]:
    """One Ingress per annotation (group) we convert."""
    return [
        ingress(
            "rewrite",
            "rewrite.example.com",
            [("/app", "Prefix", "web")],
            class_name=class_name,
            annotations={
                NGINX + "rewrite-target": "/",
                NGINX + "upstream-vhost": "internal.example.com",
            },
        ),
        ingress(
            "captured",
            "captured.example.com",
            [("/something(/|$)(.*)", "ImplementationSpecific", "web")],
            class_name=class_name,
            annotations={NGINX + "use-regex": "true", NGINX + "rewrite-target": "/$2"},
        ),
        ingress(
            "regex",
            "regex.example.com",
            [("/api/v[0-9]+", "ImplementationSpecific", "api")],
            class_name=class_name,
            annotations={NGINX + "use-regex": "true"},
        ),
        on(class_name, "approot", "approot.example.com", {NGINX + "app-root": "/app1"}),
        ingress(
            "secure",
            "secure.example.com",
            WEB,
            class_name=class_name,
            tls=tls,
            annotations={NGINX + "ssl-redirect": "true"},
        ),
        on(class_name, "forced", "forced.example.com", {NGINX + "force-ssl-redirect": "true"}),
        on(
            class_name,
            "moved",
            "moved.example.com",
            {NGINX + "permanent-redirect": "https://new.example.com/landing"},
        ),
        on(
            class_name,
            "away",
            "away.example.com",
            {NGINX + "temporal-redirect": "http://elsewhere.example.com/"},
        ),
        *canary_pair(
            class_name,
            "primary",
            "canary.example.com",
            {
                NGINX + "canary-weight": "100",
                NGINX + "canary-by-header": "X-Canary",
                NGINX + "canary-by-cookie": "canary",
            },
        ),
        on(
            class_name,
            "cors",
            "cors.example.com",
            {
                NGINX + "enable-cors": "true",
                NGINX + "cors-allow-origin": "https://a.example.com",
                NGINX + "cors-allow-methods": "GET, POST",
                NGINX + "cors-allow-headers": "X-Api-Key",
                NGINX + "cors-expose-headers": "X-Trace",
                NGINX + "cors-allow-credentials": "true",
                NGINX + "cors-max-age": "600",
            },
        ),
        on(class_name, "slow", "slow.example.com", {NGINX + "proxy-read-timeout": "1"}),
        ingress(
            "agic",
            "agic.example.com",
            [("/hello/*", "ImplementationSpecific", "api")],
            class_name=class_name,
            annotations={
                AGIC + "backend-path-prefix": "/test/",
                AGIC + "backend-hostname": "backend.example.com",
                AGIC + "request-timeout": "1",
            },
        ),
        on(class_name, "agic-tls", "agic-tls.example.com", {AGIC + "ssl-redirect": "true"}),
    ]


# (host, path, request headers) the round trip asks both ways
REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("rewrite.example.com", "/app/x", {}),
    ("captured.example.com", "/Something/new/x", {}),
    ("regex.example.com", "/API/V2/users", {}),
    ("regex.example.com", "/api/vx", {}),
    ("approot.example.com", "/", {}),
    ("approot.example.com", "/other", {}),
    ("secure.example.com", "/", {}),
    ("forced.example.com", "/a", {}),
    ("moved.example.com", "/x", {}),
    ("away.example.com", "/x", {}),
    ("canary.example.com", "/", {}),
    ("canary.example.com", "/", {"X-Canary": "never"}),
    ("canary.example.com", "/", {"Cookie": "a=b; canary=never"}),
    ("cors.example.com", "/", {"Origin": "https://a.example.com"}),
    ("agic.example.com", "/hello/world", {}),
    ("agic-tls.example.com", "/", {}),
]


async def answer_alike(served_at: str, migrated_at: str) -> None:
    """Every request of REQUESTS gets the same answer from both addresses. The migrated
    Gateway is Programmed before every one of its routes is: a request is asked again
    until the answers agree, for at most 20 s."""
    for host, path, headers in REQUESTS:
        served = await full_answer(served_at, host, path, headers)
        got = await full_answer(migrated_at, host, path, headers)
        deadline = asyncio.get_running_loop().time() + 20
        while got != served and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            got = await full_answer(migrated_at, host, path, headers)
        assert got == served, (host, path, headers)


async def full_answer(address: str, host: str, path: str, headers: dict[str, str]) -> Any:
    status, got, body = await get(address, path, host=host, headers=headers)
    return (
        status,
        got.get("Location"),
        got.get("Access-Control-Allow-Origin"),
        {k: body.get(k) for k in ("name", "path", "host")} if isinstance(body, dict) else None,
    )


async def check_cors(address: str) -> None:
    """The CORS Ingress's preflight and actual answers carry its cors-* annotations."""
    status, headers, _ = await get(
        address,
        "/",
        host="cors.example.com",
        method="OPTIONS",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert status in (200, 204)
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Methods"].replace(" ", "") == "GET,POST"
    assert headers["Access-Control-Allow-Headers"].lower() == "x-api-key"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers["Access-Control-Max-Age"] == "600"
    _, headers, _ = await get(address, "/", host="cors.example.com", headers={"Origin": ORIGIN})
    assert headers["Access-Control-Expose-Headers"].lower() == "x-trace"


async def check_distinct_cookies(address: str) -> None:
    """AGIC's distinct affinity cookie names: one per path."""
    names = set()
    for path in ("/a", "/b"):
        _, headers, _ = await get(address, path, host="sticky-paths.example.com")
        name = headers["Set-Cookie"].split("=", 1)[0]
        assert name.startswith("ApplicationGatewayAffinity-")
        names.add(name)
    assert len(names) == 2


async def check_version_canaries(address: str) -> None:
    """Canaries by a header's value and by a pattern of it."""
    version = "version.example.com"
    assert await answer(address, "/", host=version, headers={"X-Version": "v2"}) == (
        200,
        "ing-next",
    )
    assert await answer(address, "/", host=version, headers={"X-Version": "v1"}) == (
        200,
        "ing-web",
    )
    pattern = "pattern.example.com"
    assert await answer(address, "/", host=pattern, headers={"X-Version": "v4"}) == (
        200,
        "ing-next",
    )
    assert await answer(address, "/", host=pattern, headers={"X-Version": "v2"}) == (
        200,
        "ing-web",
    )


async def test_annotations_and_the_round_trip(
    cluster: Cluster, echo: dict[str, str], ingress_class: str
) -> None:
    for name, address in echo.items():
        await cluster.service(name, [address])
    ca = CertificateAuthority()
    await cluster.apply(ca.issue("secure.example.com").secret("secure-tls"))
    objects = annotated(ingress_class, "secure-tls")
    for obj in objects:
        await cluster.apply(obj)
    address = await ingress_address(cluster, "agic-tls")
    await until_answer(address, "/", (301, None), host="agic-tls.example.com")

    status, _, body = await get(address, "/app/x", host="rewrite.example.com")
    assert (status, body["path"], body["host"]) == (200, "/", "internal.example.com")
    # rewrite-target with a capture group: the rest of the path, case-insensitive match
    status, _, body = await get(address, "/Something/new/x?q=1", host="captured.example.com")
    assert (status, body["path"]) == (200, "/new/x?q=1")
    assert await answer(address, "/API/V2/users", host="regex.example.com") == (200, "ing-api")
    assert (await answer(address, "/api/vx", host="regex.example.com"))[0] == 404
    status, headers, _ = await get(address, "/", host="approot.example.com")
    assert (status, headers["Location"]) == (302, "http://approot.example.com/app1")
    assert await answer(address, "/other", host="approot.example.com") == (200, "ing-web")
    status, headers, _ = await get(address, "/a?b=c", host="secure.example.com")
    assert (status, headers["Location"]) == (308, "https://secure.example.com/a?b=c")
    assert (await get(address, "/", host="forced.example.com"))[0] == 308
    status, headers, _ = await get(address, "/x", host="moved.example.com")
    assert (status, headers["Location"]) == (301, "https://new.example.com/landing")
    status, headers, _ = await get(address, "/x", host="away.example.com")
    assert (status, headers["Location"]) == (302, "http://elsewhere.example.com/")
    canary = "canary.example.com"
    assert await answer(address, "/", host=canary) == (200, "ing-next")
    assert await answer(address, "/", host=canary, headers={"X-Canary": "never"}) == (
        200,
        "ing-web",
    )
    assert await answer(address, "/", host=canary, headers={"Cookie": "canary=never"}) == (
        200,
        "ing-web",
    )
    assert await answer(
        address, "/", host=canary, headers={"X-Canary": "always", "Cookie": "canary=never"}
    ) == (200, "ing-next")
    await check_cors(address)
    assert (await get(address, "/?delay=3", host="slow.example.com"))[0] == 504
    status, _, body = await get(address, "/hello/world", host="agic.example.com")
    assert (status, body["path"], body["host"]) == (200, "/test/world", "backend.example.com")
    assert (await get(address, "/hello/world?delay=3", host="agic.example.com"))[0] == 504
    status, headers, _ = await get(address, "/", host="agic-tls.example.com")
    assert (status, headers["Location"]) == (301, "https://agic-tls.example.com/")

    # the round trip: the same Ingresses, converted, applied as Gateway API objects
    namespaced = [
        {**o, "metadata": {**o["metadata"], "namespace": cluster.namespace}} for o in objects
    ]
    ingress_class_obj = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": ingress_class},
        "spec": {"controller": cluster.ingress_controller},
    }
    translations = translate_all(
        Snapshot.from_objects([ingress_class_obj, *namespaced]),
        local_translate_settings("unused"),
        migration=Migration(namespace=cluster.namespace, gateway_class=cluster.class_name),
    )
    converted = [d for d in yaml.safe_load_all(render_gateway_api(translations)) if d]
    for obj in converted:
        await cluster.apply(obj)
    (gateway,) = [o for o in converted if o["kind"] == "Gateway"]
    await cluster.wait_observed(gateway["metadata"]["name"], 1)
    gateway_obj = await cluster.custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io",
        "v1",
        cluster.namespace,
        "gateways",
        gateway["metadata"]["name"],
    )
    migrated = str(gateway_obj["status"]["addresses"][0]["value"])
    assert migrated != address
    await answer_alike(address, migrated)


async def test_access_rate_limit_and_affinity_annotations(
    cluster: Cluster, echo: dict[str, str], ingress_class: str
) -> None:
    for name, address in echo.items():
        await cluster.service(name, [address])
    await secret(cluster, "users", {"auth": HTPASSWD}, "Opaque")
    for obj in [
        on(
            ingress_class,
            "allowed",
            "allowed.example.com",
            {NGINX + "whitelist-source-range": "127.0.0.0/8, 10.0.0.0/8"},
        ),
        on(
            ingress_class,
            "denied",
            "denied.example.com",
            {NGINX + "denylist-source-range": "127.0.0.0/8"},
        ),
        on(
            ingress_class,
            "basic",
            "basic.example.com",
            {
                NGINX + "auth-type": "basic",
                NGINX + "auth-secret": "users",
                NGINX + "auth-realm": "Staff",
            },
        ),
        ingress(
            "checked",
            "checked.example.com",
            WEB,
            class_name=ingress_class,
            annotations={
                NGINX + "auth-url": f"http://api.{cluster.namespace}.svc.cluster.local/check",
                NGINX + "auth-response-headers": "X-Backend",
            },
        ),
        on(
            ingress_class,
            "refusing",
            "refusing.example.com",
            {NGINX + "auth-url": "http://api/check?status=403"},
        ),
        on(
            ingress_class,
            "external",
            "external.example.com",
            {NGINX + "auth-url": "https://login.example.org/check"},
        ),
        on(
            ingress_class,
            "limited",
            "limited.example.com",
            {NGINX + "limit-rpm": "2", NGINX + "limit-burst-multiplier": "1"},
        ),
        on(
            ingress_class,
            "sticky",
            "sticky.example.com",
            {
                NGINX + "affinity": "cookie",
                NGINX + "session-cookie-name": "route",
                NGINX + "session-cookie-max-age": "3600",
            },
        ),
    ]:
        await cluster.apply(obj)
    address = await ingress_address(cluster, "sticky")
    await until_answer(address, "/", (200, "ing-web"), host="allowed.example.com")

    # address lists: the test client is 127.0.0.1
    assert (await get(address, "/", host="denied.example.com"))[0] == 403
    # basic: the htpasswd file under ingress-nginx's key "auth"
    status, headers, _ = await get(address, "/", host="basic.example.com")
    assert (status, headers["WWW-Authenticate"]) == (401, 'Basic realm="Staff", charset="UTF-8"')
    assert await answer(
        address, "/", host="basic.example.com", headers=basic("alice", "s3cret")
    ) == (200, "ing-web")
    # auth-url: the check (the api echo) answers 200, then its answer is the client's
    assert await answer(address, "/", host="checked.example.com") == (200, "ing-web")
    assert (await get(address, "/", host="refusing.example.com"))[0] == 403
    # an auth-url outside the cluster cannot be honoured: not served, never unguarded
    assert (await get(address, "/", host="external.example.com"))[0] == 500
    await until_reason(cluster, "external", "InvalidAnnotation")
    # limit-rpm 2, burst 2: the third request in a row is refused
    codes = [(await get(address, "/", host="limited.example.com"))[0] for _ in range(3)]
    assert codes == [200, 200, 429]
    # affinity: a permanent cookie of the given name
    _, headers, _ = await get(address, "/", host="sticky.example.com")
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("route=")
    assert "Max-Age=3600" in cookie


def more_annotated(ingress_class: str) -> list[dict[str, Any]]:
    """The Ingresses of test_more_annotations_with_traffic."""
    secure = ingress(
        "secure-backend",
        "secure-backend.example.com",
        [("/", "Prefix", "secure")],
        class_name=ingress_class,
        annotations={
            NGINX + "backend-protocol": "HTTPS",
            NGINX + "proxy-ssl-verify": "on",
            NGINX + "proxy-ssl-secret": "backend-ca",
            NGINX + "proxy-ssl-name": "secure.internal",
        },
    )
    grpc_ingress = ingress(
        "grpc",
        "grpc-ingress.example.com",
        [("/", "Prefix", "grpc")],
        class_name=ingress_class,
        annotations={NGINX + "backend-protocol": "GRPC"},
    )
    secure["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"number": 8443}
    return [
        on(
            ingress_class,
            "per-second",
            "rps.example.com",
            {NGINX + "limit-rps": "1", NGINX + "limit-burst-multiplier": "1"},
        ),
        *canary_pair(
            ingress_class,
            "versioned",
            "version.example.com",
            {
                NGINX + "canary-by-header": "X-Version",
                NGINX + "canary-by-header-value": "v2",
            },
        ),
        *canary_pair(
            ingress_class,
            "pattern",
            "pattern.example.com",
            {
                NGINX + "canary-by-header": "X-Version",
                NGINX + "canary-by-header-pattern": "^v[3-9]$",
            },
        ),
        on(
            ingress_class,
            "moved-308",
            "moved308.example.com",
            {
                NGINX + "permanent-redirect": "https://new.example.com/",
                NGINX + "permanent-redirect-code": "308",
            },
        ),
        on(
            ingress_class,
            "agic-sticky",
            "agic-sticky.example.com",
            {AGIC + "cookie-based-affinity": "true"},
        ),
        on(ingress_class, "slow-send", "send.example.com", {NGINX + "proxy-send-timeout": "1"}),
        on(ingress_class, "uploads", "uploads.example.com", {NGINX + "proxy-body-size": "1k"}),
        secure,
        grpc_ingress,
        ingress(
            "sticky-paths",
            "sticky-paths.example.com",
            [("/a", "Prefix", "web"), ("/b", "Prefix", "web")],
            class_name=ingress_class,
            annotations={
                AGIC + "cookie-based-affinity": "true",
                AGIC + "cookie-based-affinity-distinct-name": "true",
            },
        ),
        on(
            ingress_class,
            "admin",
            "admin.example.com",
            {AGIC + "override-frontend-port": "8080"},
        ),
        on(
            ingress_class,
            "inspected",
            "inspected.example.com",
            {NGINX + "enable-modsecurity": "true"},
        ),
        ingress(
            "probed",
            "probed.example.com",
            [("/", "Prefix", "probed")],
            class_name=ingress_class,
            annotations={
                AGIC + "health-probe-path": "/__health",
                AGIC + "health-probe-interval": "1",
                AGIC + "health-probe-unhealthy-threshold": "1",
            },
        ),
    ]


async def test_more_annotations_with_traffic(
    cluster: Cluster,
    backends: BackendNamespace,
    echo: dict[str, str],
    ingress_class: str,
    tmp_path: Path,
) -> None:
    """Rate per second, canary by header value, a redirect's code, AGIC's affinity, the
    send timeout, HTTPS backends verified, ModSecurity in Detection, AGIC's probes."""
    for name, address in echo.items():
        await cluster.service(name, [address])
    ca = CertificateAuthority()
    tls_backend = start_tls_echo(backends, ca, "secure.internal", tmp_path, "ing-secure")
    await cluster.service("secure", [tls_backend], port=8443, target_port=8443)
    await secret(cluster, "backend-ca", {"ca.crt": ca.pem}, "Opaque")
    healthy, failing = backends.start_echo("ing-h1"), backends.start_echo("ing-h2")
    await cluster.service("probed", [healthy, failing])
    await cluster.service("grpc", [backends.start_echo("ing-grpc", module=GRPC_ECHO)])
    for obj in more_annotated(ingress_class):
        await cluster.apply(obj)
    address = await ingress_address(cluster, "probed")
    await until_answer(address, "/", (200, "ing-web"), host="inspected.example.com")

    codes = [(await get(address, "/", host="rps.example.com"))[0] for _ in range(2)]
    assert codes == [200, 429]
    await check_version_canaries(address)
    await check_distinct_cookies(address)
    status, headers, _ = await get(address, "/", host="moved308.example.com")
    assert (status, headers["Location"]) == (308, "https://new.example.com/")
    _, headers, _ = await get(address, "/", host="agic-sticky.example.com")
    assert headers["Set-Cookie"].startswith("ApplicationGatewayAffinity=")
    assert (await get(address, "/?delay=3", host="send.example.com"))[0] == 504
    # proxy-body-size 1k: by Content-Length, and a chunked body by its length
    uploads = "uploads.example.com"
    assert (await get(address, "/", host=uploads, method="POST", data="x" * 500))[0] == 200
    assert (await get(address, "/", host=uploads, method="POST", data="x" * 2000))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 500

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://{address}/", headers={"Host": uploads}, data=chunks()) as response,
    ):
        assert response.status == 413
    # the backend's certificate verified against the Secret's CA for proxy-ssl-name
    await until_answer(address, "/", (200, "ing-secure"), host="secure-backend.example.com")
    # Detection: the attack is let through, and logged with the policy's name
    attack = "/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    assert (await get(address, attack, host="inspected.example.com"))[0] == 200
    log = cluster.provider.state_dir / f"{SERVED_NAMESPACE}_{ingress_class}" / "waf.log"
    async with asyncio.timeout(20):
        while not (log.exists() and "inspected-inspected.example.com" in log.read_text()):
            await asyncio.sleep(0.1)
    # AGIC's frontend port: the host is served there, not on 80; the others stay on 80
    admin = "admin.example.com"
    await until_answer(address, "/", (200, "ing-web"), host=admin, port=8080)
    assert (await get(address, "/", host=admin))[0] == 404
    assert await answer(address, "/", host="inspected.example.com") == (200, "ing-web")
    # backend-protocol GRPC: h2c to the backend (the plain port takes gRPC as well)
    options = [("grpc.default_authority", "grpc-ingress.example.com")]
    async with grpc.aio.insecure_channel(f"{address}:80", options=options) as channel:
        reply = await eventually_served(channel, "/agc.test.Echo/Call")
    assert reply["name"] == "ing-grpc"
    # AGIC's probe: the endpoint failing it leaves the rotation
    await set_health(failing, 503)

    async def only_healthy() -> bool:
        seen = {(await answer(address, "/", host="probed.example.com"))[1] for _ in range(8)}
        return seen == {"ing-h1"}

    async with asyncio.timeout(20):
        while not await only_healthy():
            await asyncio.sleep(0.2)


async def test_error_pages_connection_limit_and_draining_annotations(
    cluster: Cluster, backends: BackendNamespace, echo: dict[str, str], ingress_class: str
) -> None:
    """custom-http-errors with default-backend, limit-connections, and AGIC's
    connection-draining, each with real traffic."""
    for name, address in echo.items():
        await cluster.service(name, [address])
    leaving, staying = backends.start_echo("ing-d1"), backends.start_echo("ing-d2")
    await cluster.service("drain", [leaving, staying])
    for obj in (
        on(
            ingress_class,
            "errors",
            "errors.example.com",
            {NGINX + "custom-http-errors": "404,503", NGINX + "default-backend": "fallback"},
        ),
        on(ingress_class, "limited", "limited.example.com", {NGINX + "limit-connections": "1"}),
        ingress(
            "drained",
            "drained.example.com",
            [("/", "Prefix", "drain")],
            class_name=ingress_class,
            annotations={
                AGIC + "connection-draining": "true",
                AGIC + "connection-draining-timeout": "5",
            },
        ),
    ):
        await cluster.apply(obj)
    address = await ingress_address(cluster, "errors")
    await until_answer(address, "/", (200, "ing-web"), host="errors.example.com")
    # the listed answers come from default-backend, told the original status
    _, _, body = await get(address, "/gone?status=404", host="errors.example.com")
    assert body["name"] == "ing-fallback"
    assert (body["headers"]["X-Code"], body["headers"]["X-Original-URI"]) == (
        "404",
        "/gone?status=404",
    )
    assert await answer(address, "/?status=500", host="errors.example.com") == (500, "ing-web")
    # one request in flight per client address: a second at the same time gets 429
    await until_answer(address, "/", (200, "ing-web"), host="limited.example.com")
    both = await asyncio.gather(
        answer(address, "/?delay=1", host="limited.example.com"),
        answer(address, "/?delay=1", host="limited.example.com"),
    )
    assert sorted(status for status, _ in both) == [200, 429]
    assert await answer(address, "/", host="limited.example.com") == (200, "ing-web")
    # draining: requests in flight to an endpoint that leaves finish there; later
    # ones go to the endpoint that stays
    await until_answer(address, "/", (200, "ing-d1"), host="drained.example.com")
    slow = [
        asyncio.create_task(answer(address, "/?delay=2", host="drained.example.com"))
        for _ in range(4)
    ]
    await asyncio.sleep(0.5)
    await cluster.endpoints("drain", [staying])

    async def only_staying() -> bool:
        seen = {(await answer(address, "/", host="drained.example.com"))[1] for _ in range(6)}
        return seen == {"ing-d2"}

    async with asyncio.timeout(10):
        while not await only_staying():
            await asyncio.sleep(0.1)
    finished = await asyncio.gather(*slow)
    assert {status for status, _ in finished} == {200}
    assert "ing-d1" in {name for _, name in finished}
    assert "UnsupportedAnnotation" not in await reasons(cluster, "drained")
