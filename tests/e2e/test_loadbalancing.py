"""BackendLoadBalancingPolicy with real traffic: the circuit breaker's 503s exactly
above maxRequests, consistent hashing keeping each key on one endpoint,
LeastRequest steering away from a slow endpoint (its share measured against
round robin's), and an endpoint leaving the Service while requests to it are in
flight (they finish there, new ones go elsewhere: connectionDraining, which the
local data plane always does) — all without reloads."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client.rest import ApiException

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


async def _answered_by(address: str, path: str = "/") -> tuple[int, str | None]:
    """One request on a connection of its own (NGINX's workers share the listening
    socket, so requests spread over them): its status and the echo answering it."""
    status, _, body = await get(address, path, host="lb.example.com")
    return status, body["name"] if isinstance(body, dict) else None


@pytest.mark.parametrize(
    "draining",
    [None, {"timeout": "1s"}, {"enabled": False}],
    ids=["no-policy", "timeout-1s", "disabled"],
)
async def test_requests_in_flight_to_an_endpoint_that_leaves_finish_there(
    cluster: Cluster, echoes: dict[str, str], draining: dict[str, Any] | None
) -> None:
    """A and B serve; slow requests go to both; A leaves the EndpointSlice while they
    are in flight. The data plane stops picking A at once (every later request goes
    to B) and the slow requests A was answering still finish there with 200 — with
    no policy, and with any connectionDraining (the local provider never cuts them:
    not at a 1s timeout shorter than the requests, not at once when disabled), which
    the policy's status says."""
    address = await serve(cluster, "drained", [echoes["lb-a"], echoes["lb-b"]])
    reloads = cluster.provider.reloads
    if draining is not None:
        await apply_policy(cluster, "drained", connectionDraining=draining)
        policy = await cluster.policy_accepted("BackendLoadBalancingPolicy", "drained")
        (message,) = [
            c["message"]
            for a in policy["status"]["ancestors"]
            for c in a["conditions"]
            if c["type"] == "Accepted"
        ]
        assert "spec.connectionDraining is not enforced by the local provider" in message
    # both endpoints are in the rotation before anything leaves
    async with asyncio.timeout(20):
        while {(await _answered_by(address))[1] for _ in range(6)} != {"lb-a", "lb-b"}:
            await asyncio.sleep(0.05)

    # four at once over two workers: some worker takes two in turn, one to each endpoint
    slow = [asyncio.create_task(_answered_by(address, "/?delay=3")) for _ in range(4)]
    await asyncio.sleep(0.5)
    assert not any(t.done() for t in slow), "the slow requests are in flight"
    await cluster.endpoints("drained", [echoes["lb-b"]])

    # A is out of the data plane's rotation once ten requests in a row go to B (while
    # A is in it, two requests one worker takes in a row go to A and B)
    in_a_row = 0
    async with asyncio.timeout(20):
        while in_a_row < 10:
            status, name = await _answered_by(address)
            assert status == 200
            in_a_row = in_a_row + 1 if name == "lb-b" else 0
    assert not any(t.done() for t in slow), "A left while requests to it were in flight"
    after = [await _answered_by(address) for _ in range(20)]
    assert after == [(200, "lb-b")] * 20, after

    answers = await asyncio.gather(*slow)
    assert all(status == 200 for status, _ in answers), answers
    # some of them were A's, in flight when it left, and A answered them
    assert {name for _, name in answers} == {"lb-a", "lb-b"}, answers
    assert cluster.provider.reloads == reloads


async def test_the_crd_checks_connection_draining(cluster: Cluster) -> None:
    """The API server stores a policy with connectionDraining alone (defaulting
    enabled to true), and refuses a timeout with draining disabled."""
    kind = "BackendLoadBalancingPolicy"
    target = [{"group": "", "kind": "Service", "name": "nothing"}]
    await cluster.policy(kind, "draining-only", {"targetRefs": target, "connectionDraining": {}})
    stored = await cluster.custom.get_namespaced_custom_object(
        "agc-controller.io",
        "v1alpha1",
        cluster.namespace,
        "backendloadbalancingpolicies",
        "draining-only",
    )
    assert stored["spec"]["connectionDraining"] == {"enabled": True}
    with pytest.raises(ApiException) as raised:
        await cluster.policy(
            kind,
            "timeout-without-draining",
            {"targetRefs": target, "connectionDraining": {"enabled": False, "timeout": "10s"}},
        )
    assert raised.value.status == 422
    assert (
        "timeout is allowed only when enabled is true" in json.loads(raised.value.body)["message"]
    )
    with pytest.raises(ApiException) as raised:
        await cluster.policy(kind, "nothing-set", {"targetRefs": target})
    assert raised.value.status == 422
    assert (
        "set at least one of loadBalancing, circuitBreaker and connectionDraining"
        in (json.loads(raised.value.body)["message"])
    )
