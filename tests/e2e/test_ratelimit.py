"""RateLimitPolicy with real traffic: the rate that passes, the answer to the rest,
keys, precedence, and counts that survive route changes; requests in flight per
key (concurrency), and the slots they give back however they end — all without
reloads."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from multidict import CIMultiDictProxy

from devcluster.netns import BackendNamespace
from tests.e2e.conftest import GW, Cluster
from tests.e2e.test_auth import b64
from tests.e2e.test_http_routing import HTTP, eventually_status, get

KIND = "RateLimitPolicy"


@pytest.fixture(scope="module")
def echo(backends: BackendNamespace) -> str:
    return backends.start_echo("ratelimit")


def limit_policy(target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A RateLimitPolicy's spec naming `target` (in the Gateway API group)."""
    return {"targetRefs": [{"group": GW, **target}], **spec}


async def limited(address: str, path: str, **kwargs: Any) -> None:
    """Until responses on `path` carry RateLimit headers (the data plane has the policy)."""
    async with asyncio.timeout(20):
        while "RateLimit-Limit" not in (await get(address, path, **kwargs))[1]:
            await asyncio.sleep(0.05)


async def limited_rule(cluster: Cluster, echo: str, policy: str, **spec: Any) -> tuple[str, int]:
    """Gateway gw, route r whose rule `limited` sends to web, and RateLimitPolicy
    `policy` with `spec` on that rule, in force: the address and the reloads before
    the policy."""
    await cluster.service("web", [echo])
    address = await cluster.gateway("gw", HTTP)
    await cluster.prefix_route("r", "limited", "web", rest=None)
    reloads = cluster.provider.reloads
    await cluster.policy(
        KIND,
        policy,
        limit_policy({"kind": "HTTPRoute", "name": "r", "sectionName": "limited"}, **spec),
    )
    await cluster.policy_accepted(KIND, policy)
    await limited(address, "/limited")
    return address, reloads


async def test_ten_per_second_pass_and_the_rest_get_429_with_retry_after(
    cluster: Cluster, echo: str
) -> None:
    address, reloads = await limited_rule(
        cluster, echo, "ten", limit={"requests": 10, "unit": "Second"}
    )
    await asyncio.sleep(1.5)  # whatever the wait above spent is paid back

    # eight clients on kept-alive connections, as fast as the gateway answers, 5 s:
    # the first second takes the full burst (10, the default) and the rate, then the
    # rate alone holds
    passed: list[float] = []
    refused: list[aiohttp.ClientResponse] = []
    free: list[int] = []
    start = time.monotonic()

    async def client(session: aiohttp.ClientSession, path: str) -> None:
        while time.monotonic() - start < 5.0:
            async with session.get(f"http://{address}{path}", headers={"Host": "x"}) as resp:
                await resp.read()
                if path == "/free":
                    free.append(resp.status)
                elif resp.status == 200:
                    passed.append(time.monotonic() - start)
                else:
                    assert resp.status == 429, resp.status
                    refused.append(resp)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(
            *(client(session, "/limited") for _ in range(8)), client(session, "/free")
        )
    # counted when the answers arrive: a client-side stall moves an answer into the
    # next second (seen: 8 then 12), so the rate is checked over the last four
    per_second = [sum(1 for t in passed if s <= t < s + 1) for s in range(5)]
    assert 19 <= per_second[0] <= 21, per_second
    assert 38 <= sum(per_second[1:]) <= 42, per_second
    assert all(7 <= n <= 13 for n in per_second[1:]), per_second
    assert len(refused) > 100, "the clients sent far more than the limit"
    for resp in refused[:20]:
        assert int(resp.headers["Retry-After"]) >= 1
        assert resp.headers["RateLimit-Limit"] == "10"
        assert resp.headers["RateLimit-Remaining"] == "0"
    assert free, "the unlimited rule was asked too"
    assert set(free) == {200}, "a rule without a policy is never limited"
    assert cluster.provider.reloads == reloads, "attaching a policy needs no reload"


async def test_keys_precedence_detach_and_counts_that_survive_route_changes(
    cluster: Cluster, echo: str
) -> None:
    await cluster.service("web", [echo])
    address = await cluster.gateway("gw", HTTP)
    route = {
        "parentRefs": [{"name": "gw"}],
        "hostnames": ["api.example.com"],
        "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
    }
    await cluster.route("api", route)
    await cluster.route(
        "other",
        {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["other.example.com"],
            "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
        },
    )
    reloads = cluster.provider.reloads
    await cluster.policy(
        KIND,
        "gateway-wide",
        limit_policy({"kind": "Gateway", "name": "gw"}, limit={"requests": 1000, "unit": "Second"}),
    )
    await cluster.policy(
        KIND,
        "per-key",
        limit_policy(
            {"kind": "HTTPRoute", "name": "api"},
            limit={"requests": 2, "unit": "Minute"},
            key={"type": "Header", "header": "X-Api-Key"},
        ),
    )
    await cluster.policy_accepted(KIND, "gateway-wide")
    await cluster.policy_accepted(KIND, "per-key")
    api = {"host": "api.example.com"}
    # the route's policy governs it (2 a minute per key), the Gateway's the other route
    async with asyncio.timeout(20):
        while (await get(address, "/", **api, headers={"X-Api-Key": "probe"}))[1].get(
            "RateLimit-Limit"
        ) != "2":
            await asyncio.sleep(0.05)

    async def statuses(key: str, n: int) -> list[int]:
        return [(await get(address, "/", **api, headers={"X-Api-Key": key}))[0] for _ in range(n)]

    assert await statuses("alice", 3) == [200, 200, 429]
    assert await statuses("bob", 2) == [200, 200], "each key has its own budget"
    assert await statuses("", 2) == [200, 200]
    status, headers, _ = await get(address, "/", **api)
    assert status == 429, "requests without the header share one budget (the empty key)"
    status, headers, _ = await get(address, "/", host="other.example.com")
    assert (status, headers["RateLimit-Limit"]) == (200, "1000")

    # a route change keeps what was counted
    changed = {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"set": [{"name": "X-Changed", "value": "yes"}]},
    }
    await cluster.route("api", {**route, "rules": [{**route["rules"][0], "filters": [changed]}]})
    async with asyncio.timeout(20):
        probe = 0
        while (
            "X-Changed"
            not in (await get(address, "/", **api, headers={"X-Api-Key": f"probe-{probe}"}))[1]
        ):
            probe += 1
            await asyncio.sleep(0.05)
    assert await statuses("alice", 1) == [429]

    # detached: the Gateway's policy governs the route again
    await cluster.delete_policy(KIND, "per-key")
    async with asyncio.timeout(20):
        while (await get(address, "/", **api))[1].get("RateLimit-Limit") != "1000":
            await asyncio.sleep(0.05)
    assert await statuses("alice", 2) == [200, 200]
    assert cluster.provider.reloads == reloads, "policies come and go without reloads"


async def at_once(
    address: str, path: str, n: int, *, host: str = "x", headers: dict[str, str] | None = None
) -> list[tuple[int, CIMultiDictProxy[str], float]]:
    """`n` requests for `path` sent together, each on its own connection: per request
    its status, headers, and the seconds its answer took."""
    start = time.monotonic()

    async def one(session: aiohttp.ClientSession) -> tuple[int, CIMultiDictProxy[str], float]:
        async with session.get(
            f"http://{address}{path}", headers={"Host": host, **(headers or {})}
        ) as resp:
            await resp.read()
            return resp.status, resp.headers, time.monotonic() - start

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        return list(await asyncio.gather(*(one(s) for _ in range(n))))


def statuses(answers: list[tuple[int, CIMultiDictProxy[str], float]]) -> list[int]:
    return sorted(status for status, _, _ in answers)


async def test_a_request_past_the_concurrency_in_flight_gets_429_at_once_and_slots_come_back(
    cluster: Cluster, echo: str
) -> None:
    # a rate far above what the test sends, and two in flight per client address
    address, reloads = await limited_rule(
        cluster,
        echo,
        "two-at-once",
        limit={"requests": 1000, "unit": "Second"},
        concurrency={"requests": 2},
    )

    # three slow requests at once: two pass (each takes the backend's second), the third
    # is answered 429 at once, without Retry-After; the unlimited rule stays open
    limited_answers, free = await asyncio.gather(
        at_once(address, "/limited?delay=1", 3), at_once(address, "/?delay=1", 3)
    )
    assert statuses(limited_answers) == [200, 200, 429]
    for status, headers, took in limited_answers:
        if status == 429:
            assert took < 0.5, "refused at once, not after the others finished"
            assert "Retry-After" not in headers, "no time says when a slot is free"
        else:
            assert took >= 1
            assert headers["RateLimit-Limit"] == "1000", "the rate applies as well"
    assert statuses(free) == [200, 200, 200], "a rule without a policy is never limited"

    # the finished requests gave their slots back: two at once pass again, and so does a
    # run of requests one after another
    assert statuses(await at_once(address, "/limited?delay=0.5", 2)) == [200, 200]
    for _ in range(10):
        assert (await get(address, "/limited"))[0] == 200
    assert cluster.provider.reloads == reloads, "attaching a policy needs no reload"


async def test_slots_come_back_from_requests_refused_after_the_limit_and_from_jumps(
    cluster: Cluster, echo: str
) -> None:
    await cluster.service("web", [echo])
    address = await cluster.gateway("gw", HTTP)
    to = [{"name": "web", "port": 80}]
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "name": "guarded",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/guarded"}}],
                    "backendRefs": to,
                },
                {
                    # a mirror: the router jumps to another location (ngx.exec), which
                    # drops the request's context unless it is stashed
                    "name": "mirrored",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/mirrored"}}],
                    "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": to[0]}}],
                    "backendRefs": to,
                },
            ],
        },
    )
    await eventually_status(address, "/mirrored", 200)
    # the CRD itself refuses a policy with neither a rate nor a concurrency
    with pytest.raises(client.ApiException) as refused:
        await cluster.policy(KIND, "nothing", limit_policy({"kind": "HTTPRoute", "name": "r"}))
    assert refused.value.status == 422
    assert "at least one of limit and concurrency is required" in refused.value.body
    # two in flight per client address on the whole route (both rules share the count),
    # and API keys on the guarded rule, checked after the limit
    await cluster.policy(
        KIND,
        "two-at-once",
        limit_policy({"kind": "HTTPRoute", "name": "r"}, concurrency={"requests": 2}),
    )
    await cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keys"},
            "type": "agc-controller.io/api-key",
            "data": {"tester": b64("key-one")},
        }
    )
    await cluster.policy(
        "AuthPolicy",
        "keys",
        {
            "targetRefs": [
                {"group": GW, "kind": "HTTPRoute", "name": "r", "sectionName": "guarded"}
            ],
            "apiKey": {"secretRefs": [{"name": "keys"}]},
        },
    )
    await cluster.policy_accepted(KIND, "two-at-once")
    await cluster.policy_accepted("AuthPolicy", "keys")
    await eventually_status(address, "/guarded", 401)

    # until a third request in flight is refused: the data plane has the policy
    async with asyncio.timeout(20):
        while statuses(await at_once(address, "/mirrored?delay=0.5", 3)) != [200, 200, 429]:
            await asyncio.sleep(0.1)
    # refused after the limit (401: no key) and jumped (the mirror): each gives its slot
    # back, or the third of these would be 429
    for _ in range(5):
        assert (await get(address, "/guarded"))[0] == 401
        assert (await get(address, "/mirrored"))[0] == 200
    key = {"X-Api-Key": "key-one"}
    answers = await at_once(address, "/guarded?delay=1", 3, headers=key)
    assert statuses(answers) == [200, 200, 429]
    assert statuses(await at_once(address, "/mirrored?delay=0.5", 2)) == [200, 200]
