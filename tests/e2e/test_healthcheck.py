"""HealthCheckPolicy with real probes and traffic: an endpoint whose health endpoint
fails leaves the rotation within interval x unhealthyThreshold and comes back
after healthyThreshold passed probes, with every client request answered; when
every endpoint fails, all of them serve again. No reloads."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import grpc
import pytest

from devcluster.netns import BackendNamespace
from tests.e2e.conftest import Cluster
from tests.e2e.test_http_routing import HTTP, eventually_status

KIND = "HealthCheckPolicy"
INTERVAL_S = 0.3
TIMEOUT_S = 0.25
UNHEALTHY = 2
HEALTHY = 2


@pytest.fixture(scope="module")
def pair(backends: BackendNamespace) -> dict[str, str]:
    found = {name: backends.start_echo(name) for name in ("hc-a", "hc-b")}
    found["hc-broken"] = backends.start_echo("hc-broken", args=("--status", "500"))
    return found


async def set_health(backend: str, status: int) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.put(f"http://{backend}:8080/__health", params={"status": str(status)}) as r,
    ):
        assert r.status == status


class Traffic:
    """One client on a kept-alive connection, asking the gateway all along; every
    answer's backend is noted, and any answer other than 200 is a failure."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.answers: list[tuple[float, str]] = []
        self.failures: list[int] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                async with session.get(
                    f"http://{self.address}/", headers={"Host": "hc.example.com"}
                ) as resp:
                    body: dict[str, Any] = await resp.json()
                    if resp.status != 200:
                        self.failures.append(resp.status)
                    else:
                        self.answers.append((time.monotonic(), str(body["name"])))
                await asyncio.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()

    async def until_only(self, names: set[str], since: float, *, window: int = 30) -> float:
        """Seconds from `since` until `window` answers in a row came from `names` only."""
        async with asyncio.timeout(15):
            while True:
                recent = [(t, n) for t, n in self.answers if t >= since]
                for i in range(len(recent) - window + 1):
                    if all(n in names for _, n in recent[i : i + window]):
                        return recent[i][0] - since
                await asyncio.sleep(0.05)

    def served_by(self, since: float) -> set[str]:
        return {n for t, n in self.answers if t >= since}


async def test_a_failing_endpoint_leaves_the_rotation_and_comes_back(
    cluster: Cluster, pair: dict[str, str]
) -> None:
    a, b = pair["hc-a"], pair["hc-b"]
    for backend in (a, b):
        await set_health(backend, 200)
    await cluster.service("pair", [a, b])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["hc.example.com"],
            "rules": [{"backendRefs": [{"name": "pair", "port": 80}]}],
        },
    )
    await eventually_status(address, "/", 200, host="hc.example.com")
    reloads = cluster.provider.reloads
    await cluster.policy(
        KIND,
        "pair",
        {
            "targetRefs": [{"group": "", "kind": "Service", "name": "pair"}],
            "default": {
                "interval": f"{int(INTERVAL_S * 1000)}ms",
                "timeout": f"{int(TIMEOUT_S * 1000)}ms",
                "healthyThreshold": HEALTHY,
                "unhealthyThreshold": UNHEALTHY,
                "http": {"path": "/__health"},
            },
        },
    )
    await cluster.policy_accepted(KIND, "pair")
    traffic = Traffic(address)
    client = asyncio.create_task(traffic.run())
    try:
        start = time.monotonic()
        await asyncio.sleep(1.0)
        assert traffic.served_by(start) == {"hc-a", "hc-b"}

        # a's health endpoint fails (its app still serves): out within
        # interval x unhealthyThreshold, plus a probe's time and the client's window
        failed_at = time.monotonic()
        await set_health(a, 503)
        out_after = await traffic.until_only({"hc-b"}, failed_at)
        assert out_after < INTERVAL_S * UNHEALTHY + TIMEOUT_S + 0.5, out_after

        # back after healthyThreshold passed probes
        healed_at = time.monotonic()
        await set_health(a, 200)
        async with asyncio.timeout(INTERVAL_S * HEALTHY + TIMEOUT_S + 2):
            while "hc-a" not in traffic.served_by(healed_at):
                await asyncio.sleep(0.02)

        # every endpoint fails its probe: none is left out (a backend never goes dark)
        for backend in (a, b):
            await set_health(backend, 503)
        await asyncio.sleep(INTERVAL_S * UNHEALTHY + 1.0)
        dark = time.monotonic()
        await asyncio.sleep(1.0)
        assert traffic.served_by(dark) == {"hc-a", "hc-b"}
    finally:
        traffic.stop()
        await client
        for backend in (a, b):
            await set_health(backend, 200)
    assert traffic.failures == [], "every client request was answered by a serving endpoint"
    assert cluster.provider.reloads == reloads, "a policy is data: no reload"


async def test_passive_ejection_takes_out_an_endpoint_whose_answers_fail(
    cluster: Cluster, pair: dict[str, str]
) -> None:
    await cluster.service("flaky", [pair["hc-a"], pair["hc-broken"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["hc.example.com"],
            "rules": [{"backendRefs": [{"name": "flaky", "port": 80}]}],
        },
    )
    await eventually_status(address, "/", 200, host="hc.example.com")
    await cluster.policy(
        KIND,
        "flaky",
        {
            "targetRefs": [{"group": "", "kind": "Service", "name": "flaky"}],
            "passive": {"consecutiveFailures": 3, "ejectionTime": "2s"},
        },
    )
    await cluster.policy_accepted(KIND, "flaky")

    async def statuses(n: int) -> list[int]:
        found = []
        async with aiohttp.ClientSession() as session:
            for _ in range(n):
                async with session.get(
                    f"http://{address}/", headers={"Host": "hc.example.com"}
                ) as resp:
                    await resp.read()
                    found.append(resp.status)
        return found

    # until the data plane has the policy: the broken endpoint's 500s stop
    async with asyncio.timeout(20):
        while 500 in await statuses(10):
            await asyncio.sleep(0.1)
    # it is out; when its ejection ends it gets exactly three more tries, one at a time
    await asyncio.sleep(2.5)
    answers = await statuses(40)
    assert answers.count(500) == 3, answers
    assert answers[-10:] == [200] * 10, "out again after the third failure in a row"


@pytest.fixture(scope="module")
def grpc_pair(backends: BackendNamespace) -> dict[str, str]:
    return {
        name: backends.start_echo(name, module="tests.e2e.grpc_echo")
        for name in ("hc-grpc-a", "hc-grpc-b")
    }


async def set_grpc_health(backend: str, status: str) -> None:
    """Tell a gRPC echo backend what its grpc.health.v1 Check answers (directly)."""
    async with grpc.aio.insecure_channel(f"{backend}:8080") as channel:
        await channel.unary_unary("/agc.test.Health/Set")(status.encode(), timeout=5)


async def test_grpc_probes_take_a_not_serving_endpoint_out_and_bring_it_back(
    cluster: Cluster, grpc_pair: dict[str, str]
) -> None:
    a, b = grpc_pair["hc-grpc-a"], grpc_pair["hc-grpc-b"]
    for backend in (a, b):
        await set_grpc_health(backend, "SERVING")
    await cluster.service("grpc-pair", [a, b])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "rpc",
        {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["rpc.example.com"],
            "rules": [{"backendRefs": [{"name": "grpc-pair", "port": 80}]}],
        },
        kind="GRPCRoute",
    )
    await cluster.policy(
        KIND,
        "grpc-pair",
        {
            "targetRefs": [{"group": "", "kind": "Service", "name": "grpc-pair"}],
            "default": {
                "interval": f"{int(INTERVAL_S * 1000)}ms",
                "timeout": f"{int(TIMEOUT_S * 1000)}ms",
                "healthyThreshold": HEALTHY,
                "unhealthyThreshold": UNHEALTHY,
                "grpc": {"service": "echo"},
            },
        },
    )
    await cluster.policy_accepted(KIND, "grpc-pair")
    options = [("grpc.default_authority", "rpc.example.com")]
    async with grpc.aio.insecure_channel(f"{address}:80", options=options) as channel:

        async def served_by(calls: int) -> set[str]:
            names = set()
            for _ in range(calls):
                reply = await channel.unary_unary("/agc.test.Echo/Call")(b"", timeout=5)
                names.add(str(json.loads(reply)["name"]))
            return names

        async with asyncio.timeout(20):
            while await served_by(20) != {"hc-grpc-a", "hc-grpc-b"}:
                await asyncio.sleep(0.1)

        # a answers NOT_SERVING: out within interval x unhealthyThreshold (+ a probe)
        await set_grpc_health(a, "NOT_SERVING")
        await asyncio.sleep(INTERVAL_S * UNHEALTHY + TIMEOUT_S + 0.3)
        assert await served_by(30) == {"hc-grpc-b"}

        await set_grpc_health(a, "SERVING")
        async with asyncio.timeout(INTERVAL_S * HEALTHY + TIMEOUT_S + 3):
            while "hc-grpc-a" not in await served_by(10):
                await asyncio.sleep(0.05)
