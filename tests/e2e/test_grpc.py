"""gRPC through the local data plane: GRPCRoute matching to h2c backends, on a
plain port that keeps serving HTTP/1.1, and on an HTTPS listener (ALPN h2)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from devcluster.netns import BackendNamespace
from tests.e2e.certs import CertificateAuthority
from tests.e2e.conftest import Cluster
from tests.e2e.test_http_routing import eventually_status, get

GRPC_ECHO = "tests.e2e.grpc_echo"


@pytest.fixture(scope="module")
def grpc_backends(backends: BackendNamespace) -> dict[str, str]:
    return {name: backends.start_echo(f"grpc-{name}", module=GRPC_ECHO) for name in ("a", "b")}


@pytest.fixture(scope="module")
def web(backends: BackendNamespace) -> str:
    return backends.start_echo("grpc-web")


async def call(
    channel: grpc.aio.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()
) -> dict[str, Any]:
    reply = await channel.unary_unary(method)(b"", metadata=metadata, timeout=5)
    return dict(json.loads(reply))


async def eventually_served(channel: grpc.aio.Channel, method: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            try:
                return await call(channel, method)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)


def grpc_route(hostname: str, section: str | None = None) -> dict[str, Any]:
    parent: dict[str, Any] = {"name": "gw"}
    if section:
        parent["sectionName"] = section
    return {
        "parentRefs": [parent],
        "hostnames": [hostname],
        "rules": [
            {
                "matches": [
                    {
                        "method": {"service": "agc.test.Echo", "method": "Call"},
                        "headers": [{"name": "x-version", "value": "b"}],
                    }
                ],
                "backendRefs": [{"name": "grpc-b", "port": 80}],
            },
            {
                "matches": [{"method": {"service": "agc.test.Echo"}}],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"add": [{"name": "x-added", "value": "yes"}]},
                    }
                ],
                "backendRefs": [{"name": "grpc-a", "port": 80}],
            },
        ],
    }


async def test_grpc_and_http1_share_a_plain_port(
    cluster: Cluster, grpc_backends: dict[str, str], web: str
) -> None:
    for name, address in grpc_backends.items():
        await cluster.service(f"grpc-{name}", [address])
    await cluster.service("web", [web])
    address = await cluster.gateway("gw", [{"name": "http", "port": 80, "protocol": "HTTP"}])
    await cluster.route(
        "web",
        {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["web.example.com"],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
        },
    )
    await eventually_status(address, "/", 200, host="web.example.com")
    reloads = cluster.provider.reloads
    await cluster.route("grpc", grpc_route("grpc.example.com"), kind="GRPCRoute")

    options = [("grpc.default_authority", "grpc.example.com")]
    async with grpc.aio.insecure_channel(f"{address}:80", options=options) as channel:
        served = await eventually_served(channel, "/agc.test.Echo/Call")
        assert served["name"] == "grpc-a"
        assert served["metadata"]["x-added"] == "yes"
        assert served["metadata"]["x-forwarded-for"] == "127.0.0.1"  # the client's address
        by_header = await call(channel, "/agc.test.Echo/Call", (("x-version", "b"),))
        assert by_header["name"] == "grpc-b"
        other_method = await call(channel, "/agc.test.Echo/Other", (("x-version", "b"),))
        assert other_method["name"] == "grpc-a"  # the header rule names method Call only
        with pytest.raises(grpc.aio.AioRpcError) as unmatched:
            await call(channel, "/agc.test.Other/Call")
        assert unmatched.value.code() == grpc.StatusCode.UNIMPLEMENTED  # HTTP 404
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await channel.unary_unary("/agc.test.Echo/Fail")(b"NOT_FOUND", timeout=5)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND  # backend status passes through

    # HTTP/1.1 on the same port, through the protocol sniffer
    status, _, body = await get(address, "/path", host="web.example.com")
    assert (status, body["name"]) == (200, "grpc-web")
    assert body["headers"]["X-Forwarded-For"] == "127.0.0.1"
    status, _, _ = await get(address, "/", host="grpc.example.com")
    assert status == 404  # no HTTPRoute for that host

    # the first gRPC rule on the port put the sniffer in front (one reload);
    # later gRPC changes are state only
    assert cluster.provider.reloads == reloads + 1
    route = grpc_route("grpc.example.com")
    route["rules"][0]["backendRefs"] = [{"name": "grpc-a", "port": 80}]
    await cluster.route("grpc", route, kind="GRPCRoute")
    async with grpc.aio.insecure_channel(f"{address}:80", options=options) as channel:
        async with asyncio.timeout(20):
            while (await call(channel, "/agc.test.Echo/Call", (("x-version", "b"),)))[
                "name"
            ] != "grpc-a":
                await asyncio.sleep(0.05)
    assert cluster.provider.reloads == reloads + 1


async def test_grpc_over_https_listener(
    cluster: Cluster, grpc_backends: dict[str, str], tmp_path: Path
) -> None:
    ca = CertificateAuthority()
    await cluster.apply(ca.issue("grpc.example.com").secret("grpc-cert"))
    for name, address in grpc_backends.items():
        await cluster.service(f"grpc-{name}", [address])
    listener = {
        "name": "https",
        "port": 443,
        "protocol": "HTTPS",
        "tls": {"certificateRefs": [{"name": "grpc-cert"}]},
    }
    address = await cluster.gateway("gw", [listener])
    await cluster.route("grpc", grpc_route("grpc.example.com"), kind="GRPCRoute")
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.pem.encode())
    options = [("grpc.ssl_target_name_override", "grpc.example.com")]
    async with grpc.aio.secure_channel(f"{address}:443", credentials, options=options) as channel:
        served = await eventually_served(channel, "/agc.test.Echo/Call")
        assert served["name"] == "grpc-a"
        assert served["metadata"]["x-forwarded-proto"] == "https"
        by_header = await call(channel, "/agc.test.Echo/Call", (("x-version", "b"),))
        assert by_header["name"] == "grpc-b"
