"""Zero failed requests while things change under a non-retrying keep-alive load.

Every change here must reach the data plane without reloading the NGINX that
serves the load, so clients see no closed connection and no error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devcluster.netns import BackendNamespace
from tests.e2e.certs import CertificateAuthority
from tests.e2e.conftest import Cluster
from tests.e2e.load import Load
from tests.e2e.test_http_routing import HTTP, eventually_status


@pytest.fixture(scope="module")
def pool(backends: BackendNamespace) -> list[str]:
    return [backends.start_echo(f"pool-{i}") for i in range(5)]


async def test_scale_endpoints_under_load(cluster: Cluster, pool: list[str]) -> None:
    await cluster.service("svc", pool[:1])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]},
    )
    await eventually_status(address, "/", 200)
    reloads = cluster.provider.reloads
    async with Load(f"http://{address}/", seconds=8) as load:
        for size in (2, 3, 4, 5, 4, 3, 2, 1):
            await cluster.endpoints("svc", pool[:size])
            await asyncio.sleep(0.7)
    assert load.result is not None
    assert load.result.requests > 1000, load.result.output
    assert load.result.failed == 0, load.result.output
    assert cluster.provider.reloads == reloads


async def test_unrelated_routes_and_weights_change_under_load(
    cluster: Cluster, pool: list[str]
) -> None:
    await cluster.service("a", pool[:1])
    await cluster.service("b", pool[1:2])
    address = await cluster.gateway("gw", HTTP)

    async def split(weight_a: int) -> None:
        await cluster.route(
            "main",
            {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [
                            {"name": "a", "port": 80, "weight": weight_a},
                            {"name": "b", "port": 80, "weight": 100 - weight_a},
                        ],
                    }
                ],
            },
        )

    await split(100)
    await eventually_status(address, "/", 200)
    async with Load(f"http://{address}/", seconds=10) as load:
        for i in range(100):
            await cluster.route(
                f"extra-{i}",
                {
                    "parentRefs": [{"name": "gw"}],
                    "hostnames": [f"h{i}.example.com"],
                    "rules": [{"backendRefs": [{"name": "b", "port": 80}]}],
                },
            )
        for weight in (80, 50, 20, 0, 60, 100):
            await split(weight)
            await asyncio.sleep(0.3)
        for i in range(100):
            await cluster.route(
                f"extra-{i}",
                {
                    "parentRefs": [{"name": "gw"}],
                    "hostnames": [f"h{i}.example.com"],
                    "rules": [
                        {
                            "matches": [{"path": {"type": "Exact", "value": f"/v{i}"}}],
                            "backendRefs": [{"name": "a", "port": 80}],
                        }
                    ],
                },
            )
        for i in range(100):
            await cluster.custom.delete_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", cluster.namespace, "httproutes", f"extra-{i}"
            )
    assert load.result is not None
    assert load.result.failed == 0, load.result.output
    assert load.result.requests > 1000, load.result.output


async def test_certificate_change_under_load(
    cluster: Cluster, pool: list[str], tmp_path: Path
) -> None:
    ca = CertificateAuthority()
    await cluster.apply(ca.issue("tls.example.com").secret("cert"))
    await cluster.service("a", pool[:1])
    address = await cluster.gateway(
        "gw",
        [
            {
                "name": "https",
                "port": 443,
                "protocol": "HTTPS",
                "hostname": "tls.example.com",
                "tls": {"certificateRefs": [{"name": "cert"}]},
            }
        ],
    )
    await cluster.route(
        "r",
        {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "a", "port": 80}]}]},
    )
    async with asyncio.timeout(20):
        while True:
            process = await asyncio.create_subprocess_exec(
                "curl",
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--resolve",
                f"tls.example.com:443:{address}",
                "https://tls.example.com/",
                stdout=asyncio.subprocess.PIPE,
            )
            if (await process.communicate())[0] == b"200":
                break
            await asyncio.sleep(0.1)
    reloads = cluster.provider.reloads
    # wrk does not verify certificates; SNI comes from the URL host, routed to the address below
    async with Load(f"https://{address}/", seconds=8, host="tls.example.com") as load:
        for i in range(5):
            await cluster.apply(ca.issue("tls.example.com", f"r{i}.example.com").secret("cert"))
            await asyncio.sleep(1)
    assert load.result is not None
    assert load.result.failed == 0, load.result.output
    assert cluster.provider.reloads == reloads


async def test_port_churn_on_one_gateway_spares_the_other(
    cluster: Cluster, pool: list[str]
) -> None:
    await cluster.service("a", pool[:1])
    steady = await cluster.gateway("steady", HTTP)
    churned = await cluster.gateway("churn", HTTP)
    for gw in ("steady", "churn"):
        await cluster.route(
            gw,
            {"parentRefs": [{"name": gw}], "rules": [{"backendRefs": [{"name": "a", "port": 80}]}]},
        )
    await eventually_status(steady, "/", 200)
    await eventually_status(churned, "/", 200)
    reloads = cluster.provider.reloads
    async with (
        Load(f"http://{steady}/", seconds=25) as load,
        Load(f"http://{churned}/", seconds=25) as churn_load,
    ):
        for i in range(40):  # the extra port is added 20 times and removed 20 times
            extra = [{"name": "extra", "port": 8081, "protocol": "HTTP"}] if i % 2 == 0 else []
            generation = await cluster.apply_gateway("churn", HTTP + extra)
            await cluster.wait_observed("churn", generation)
    assert cluster.provider.reloads - reloads >= 40
    assert load.result is not None
    assert churn_load.result is not None
    assert load.result.failed == 0, load.result.output
    # the changed Gateway's own keep-alive clients too: each reload drains their
    # connections first (nginx.py), so none is closed under a request in flight
    print(
        f"churned gateway under {cluster.provider.reloads - reloads} reloads: "
        f"{churn_load.result.requests} requests, {churn_load.result.socket_errors} socket "
        f"errors, {churn_load.result.non_2xx_3xx} non-2xx"
    )
    assert churn_load.result.failed == 0, churn_load.result.output
