"""TLS passthrough, TCP and UDP listeners with real traffic through the local data plane."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from devcluster.netns import BackendNamespace
from tests.e2e.certs import CertificateAuthority
from tests.e2e.conftest import GW, Cluster
from tests.e2e.test_https import curl, until


@pytest.fixture(scope="module")
def echo(backends: BackendNamespace) -> dict[str, str]:
    return {name: backends.start_echo(f"stream-{name}") for name in ("a", "b")}


async def _echo(*curl: str) -> dict[str, Any] | None:
    """The echo's JSON answer to `curl -s <curl...>`, or None on any failure."""
    process = await asyncio.create_subprocess_exec(
        "curl", "-s", "--max-time", "5", *curl, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    try:
        reply: dict[str, Any] = json.loads(out)
    except ValueError:
        return None
    return reply


def _http(address: str, port: int) -> Coroutine[None, None, dict[str, Any] | None]:
    """GET / over plain TCP to `address:port`."""
    return _echo(f"http://{address}:{port}/")


async def _route_parents(cluster: Cluster, plural: str, name: str) -> list[dict[str, Any]]:
    route = await cluster.custom.get_namespaced_custom_object(
        GW, "v1", cluster.namespace, plural, name
    )
    parents: list[dict[str, Any]] = (route.get("status") or {}).get("parents") or []
    return parents


async def test_tcp_route_weights_and_endpoint_changes_without_reload(
    cluster: Cluster, echo: dict[str, str]
) -> None:
    for name, address in echo.items():
        await cluster.service(name, [address])
    address = await cluster.gateway("gw", [{"name": "tcp", "port": 9000, "protocol": "TCP"}])
    await cluster.route(
        "tcp",
        {
            "parentRefs": [{"name": "gw", "sectionName": "tcp"}],
            "rules": [
                {"backendRefs": [{"name": "a", "port": 80}, {"name": "b", "port": 80, "weight": 1}]}
            ],
        },
        kind="TCPRoute",
    )

    async def served() -> bool:
        return await _http(address, 9000) is not None

    await until(served)
    seen = Counter([(await _http(address, 9000) or {}).get("name") for _ in range(40)])
    assert set(seen) == {"stream-a", "stream-b"}, seen
    parents = await _route_parents(cluster, "tcproutes", "tcp")
    accepted = {c["type"]: c["status"] for c in parents[0]["conditions"]}
    assert accepted == {"Accepted": "True", "ResolvedRefs": "True"}

    # Service a's endpoint moves to b's backend: the next connections follow, no reload
    reloads = cluster.provider.reloads
    await cluster.endpoints("a", [echo["b"]])

    async def moved() -> bool:
        names = {(await _http(address, 9000) or {}).get("name") for _ in range(10)}
        return names == {"stream-b"}

    await until(moved)
    assert cluster.provider.reloads == reloads


async def test_udp_route_echo(cluster: Cluster, echo: dict[str, str]) -> None:
    await cluster.service("a", [echo["a"]])
    address = await cluster.gateway("gw", [{"name": "dns", "port": 5300, "protocol": "UDP"}])
    await cluster.route(
        "udp",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "a", "port": 80}]}],
        },
        kind="UDPRoute",
    )

    def exchange(payload: bytes) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1)
            sock.sendto(payload, (address, 5300))
            try:
                return sock.recv(2048)
            except TimeoutError:
                return None

    async def answered() -> bool:
        return await asyncio.to_thread(exchange, b"ping") is not None

    await until(answered)
    assert await asyncio.to_thread(exchange, b"hello") == b"stream-a:hello"


def start_tls_echo(
    backends: BackendNamespace, ca: CertificateAuthority, host: str, directory: Path, name: str
) -> str:
    """An echo backend `name` serving TLS on port 8443 with its own certificate for
    `host` (from `ca`, files kept in `directory`); its address."""
    pair = ca.issue(host)
    (directory / "backend.crt").write_text(pair.cert_pem)
    (directory / "backend.key").write_text(pair.key_pem)
    return backends.start_echo(
        name,
        port=8443,
        args=(
            "--tls-cert",
            str(directory / "backend.crt"),
            "--tls-key",
            str(directory / "backend.key"),
        ),
    )


async def test_tls_passthrough_terminate_and_https(
    cluster: Cluster, backends: BackendNamespace, echo: dict[str, str], tmp_path: Path
) -> None:
    """SNI decides on port 443: passthrough names reach the backend still encrypted
    (the client sees the backend's own certificate), any other name the HTTPS
    listener. A listener in mode Terminate ends TLS and forwards plain TCP."""
    ca = CertificateAuthority()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca.pem)
    tls_backend = start_tls_echo(backends, ca, "abc.example.com", tmp_path, "stream-tls")
    await cluster.service("tls", [tls_backend], port=8443, target_port=8443)
    await cluster.service("a", [echo["a"]])
    await cluster.apply(ca.issue("www.example.org").secret("gateway-cert"))
    await cluster.apply(ca.issue("term.example.org").secret("term-cert"))
    address = await cluster.gateway(
        "gw",
        [
            {
                "name": "passthrough",
                "port": 443,
                "protocol": "TLS",
                "hostname": "*.example.com",
                "tls": {"mode": "Passthrough"},
            },
            {
                "name": "https",
                "port": 443,
                "protocol": "HTTPS",
                "hostname": "www.example.org",
                "tls": {"certificateRefs": [{"name": "gateway-cert"}]},
            },
        ],
    )
    # mode Terminate on a Gateway of its own: its port's front server is the only one
    terminating = await cluster.gateway(
        "gw-terminate",
        [
            {
                "name": "terminate",
                "port": 8443,
                "protocol": "TLS",
                "hostname": "term.example.org",
                "tls": {"mode": "Terminate", "certificateRefs": [{"name": "term-cert"}]},
            }
        ],
    )
    await cluster.route(
        "tls",
        {
            "parentRefs": [{"name": "gw", "sectionName": "passthrough"}],
            "hostnames": ["abc.example.com"],
            "rules": [{"backendRefs": [{"name": "tls", "port": 8443}]}],
        },
        kind="TLSRoute",
    )
    await cluster.route(
        "terminated",
        {
            "parentRefs": [{"name": "gw-terminate"}],
            "hostnames": ["term.example.org"],
            "rules": [{"backendRefs": [{"name": "a", "port": 80}]}],
        },
        kind="TLSRoute",
    )
    await cluster.route(
        "web",
        {
            "parentRefs": [{"name": "gw", "sectionName": "https"}],
            "rules": [{"backendRefs": [{"name": "a", "port": 80}]}],
        },
    )

    def terminated() -> Coroutine[None, None, dict[str, Any] | None]:
        """GET / in TLS to the Terminate listener: its backend speaks plain HTTP."""
        return _echo(
            "--cacert", str(ca_file), "--resolve", f"term.example.org:8443:{terminating}",
            "https://term.example.org:8443/",
        )  # fmt: skip

    async def all_served() -> bool:
        replies = [await curl(address, h, ca_file) for h in ("abc.example.com", "www.example.org")]
        return all(r.status == 200 for r in replies) and await terminated() is not None

    await until(all_served)
    passthrough = await curl(address, "abc.example.com", ca_file)
    assert (passthrough.exit_code, passthrough.subject) == (0, "CN=abc.example.com")
    https = await curl(address, "www.example.org", ca_file)
    assert (https.exit_code, https.subject) == (0, "CN=www.example.org")
    # TLS ended at the gateway (its certificate passed --cacert for that name), then
    # plain TCP: the HTTP echo answered, and saw the request unencrypted
    reply = await terminated()
    assert reply is not None
    assert reply["name"] == "stream-a"
    # a passthrough name no route serves: the connection is closed, nothing is served
    unknown = await curl(address, "nobody.example.com", ca_file)
    assert unknown.exit_code != 0
    assert unknown.status == 0

    gateway = await cluster.custom.get_namespaced_custom_object(
        GW, "v1", cluster.namespace, "gateways", "gw"
    )
    attached = {ls["name"]: ls["attachedRoutes"] for ls in gateway["status"]["listeners"]}
    assert attached == {"passthrough": 1, "https": 1}
