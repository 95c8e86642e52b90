"""BackendLoadBalancingPolicy with real traffic: the circuit breaker's 503s exactly
above maxRequests, consistent hashing keeping each key on one endpoint, and
LeastRequest steering away from a slow endpoint (its share measured against
round robin's) — all without reloads."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import aiohttp
import pytest

from devcluster.netns import BackendNamespace
from tests.e2e.conftest import Cluster
from tests.e2e.test_http_routing import HTTP, eventually_status, get


@pytest.fixture(scope="module")
def echoes(backends: BackendNamespace) -> dict[str, str]:
    found = {name: backends.start_echo(name) for name in ("lb-a", "lb-b", "lb-c")}
    found["lb-slow"] = backends.start_echo("lb-slow", args=("--delay", "0.1"))
    return found


async def serve(cluster: Cluster, service: str, addresses: list[str]) -> str:
    await cluster.service(service, addresses)
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["lb.example.com"],
            "rules": [{"backendRefs": [{"name": service, "port": 80}]}],
        },
    )
    await eventually_status(address, "/", 200, host="lb.example.com")
    return address


async def apply_policy(cluster: Cluster, service: str, **spec: Any) -> None:
    kind = "BackendLoadBalancingPolicy"
    await cluster.policy(
        kind, service, {"targetRefs": [{"group": "", "kind": "Service", "name": service}], **spec}
    )
    await cluster.policy_accepted(kind, service)


async def test_the_circuit_breaker_answers_503_exactly_above_max_requests(
    cluster: Cluster, echoes: dict[str, str]
) -> None:
    address = await serve(cluster, "breaker", [echoes["lb-a"], echoes["lb-b"]])
    reloads = cluster.provider.reloads
    await apply_policy(cluster, "breaker", circuitBreaker={"maxRequests": 3})
    host = {"Host": "lb.example.com"}

    async def breaker_on() -> None:
        # until a fourth request in flight is refused: the data plane has the policy
        async with asyncio.timeout(20):
            while True:
                async with aiohttp.ClientSession() as s:
                    slow = [
                        asyncio.create_task(
                            s.get(f"http://{address}/?delay=0.5", headers=host).__aenter__()
                        )
                        for _ in range(4)
                    ]
                    statuses = sorted([(await t).status for t in slow])
                if statuses == [200, 200, 200, 503]:
                    return
                await asyncio.sleep(0.2)

    await breaker_on()

    async def one(session: aiohttp.ClientSession) -> tuple[int, str | None]:
        async with session.get(f"http://{address}/?delay=1", headers=host) as resp:
            await resp.read()
            return resp.status, resp.headers.get("X-AGC-Overloaded")

    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(one(session) for _ in range(10)))
    counted = collections.Counter(answers)
    assert counted == {(200, None): 3, (503, "maxRequests"): 7}, counted
    # the slots came back: three at once pass again
    async with aiohttp.ClientSession() as session:
        again = await asyncio.gather(*(one(session) for _ in range(3)))
    assert [status for status, _ in again] == [200, 200, 200]
    assert cluster.provider.reloads == reloads


async def test_consistent_hash_keeps_each_key_on_one_endpoint(
    cluster: Cluster, echoes: dict[str, str]
) -> None:
    address = await serve(cluster, "hashed", [echoes["lb-a"], echoes["lb-b"], echoes["lb-c"]])
    await apply_policy(
        cluster,
        "hashed",
        loadBalancing={
            "strategy": "ConsistentHash",
            "consistentHash": {"type": "Header", "name": "X-User"},
        },
    )

    async def backends_of(user: str, n: int) -> set[str]:
        found = set()
        for _ in range(n):
            status, _, body = await get(
                address, "/", host="lb.example.com", headers={"X-User": user}
            )
            assert status == 200
            found.add(body["name"])
        return found

    # until the policy is in force: one user keeps landing on one endpoint
    async with asyncio.timeout(20):
        while len(await backends_of("probe", 6)) != 1:
            await asyncio.sleep(0.1)
    placed = {}
    for i in range(30):
        seen = await backends_of(f"user-{i}", 4)
        assert len(seen) == 1, f"user-{i} went to {seen}"
        placed[f"user-{i}"] = seen.pop()
    assert set(placed.values()) == {"lb-a", "lb-b", "lb-c"}, "the keys spread over all"


async def test_least_request_sends_less_to_a_slow_endpoint_than_round_robin(
    cluster: Cluster, echoes: dict[str, str]
) -> None:
    address = await serve(cluster, "mixed", [echoes["lb-a"], echoes["lb-slow"]])

    async def slow_share(seconds: float) -> float:
        """The slow endpoint's share of the answers to 8 clients asking all along."""
        served: collections.Counter[str] = collections.Counter()
        end = time.monotonic() + seconds

        async def client(session: aiohttp.ClientSession) -> None:
            while time.monotonic() < end:
                async with session.get(
                    f"http://{address}/", headers={"Host": "lb.example.com"}
                ) as resp:
                    body = await resp.json()
                    assert resp.status == 200
                    served[body["name"]] += 1

        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(client(session) for _ in range(8)))
        return served["lb-slow"] / sum(served.values())

    round_robin = await slow_share(3.0)
    await apply_policy(cluster, "mixed", loadBalancing={"strategy": "LeastRequest"})
    await asyncio.sleep(0.5)
    least_request = await slow_share(3.0)
    print(f"slow endpoint's share: round robin {round_robin:.3f}, LeastRequest {least_request:.3f}")
    # round robin gives the slow endpoint every other request: half the answers
    # (those it sends there come back late, not fewer); LeastRequest sends it a
    # request only when it has no more in flight than the fast one
    assert round_robin > 0.3, round_robin
    assert least_request < round_robin / 2, (least_request, round_robin)
