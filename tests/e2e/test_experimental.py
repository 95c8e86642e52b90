"""Route features whose fields exist only in the experimental CRDs: retries and
cookie session persistence (run with AGC_GATEWAY_API_CHANNEL=experimental)."""

from __future__ import annotations

import asyncio
import collections

import aiohttp
import pytest

from devcluster.netns import BackendNamespace
from tests.e2e.conftest import Cluster
from tests.e2e.test_http_routing import HTTP, eventually_status

pytestmark = pytest.mark.experimental_channel


@pytest.fixture(scope="module")
def pool(backends: BackendNamespace) -> dict[str, str]:
    return {
        "healthy": backends.start_echo("exp-healthy"),
        "failing": backends.start_echo("exp-failing", args=("--status", "503")),
        "a": backends.start_echo("exp-a"),
        "b": backends.start_echo("exp-b"),
        "c": backends.start_echo("exp-c"),
    }


def rule(prefix: str, service: str, retry: dict[str, object] | None = None) -> dict[str, object]:
    """A route rule: requests under `prefix` to port 80 of `service`, with `retry`."""
    out: dict[str, object] = {
        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
        "backendRefs": [{"name": service, "port": 80}],
    }
    if retry is not None:
        out["retry"] = retry
    return out


async def statuses(address: str, path: str, count: int) -> collections.Counter[int]:
    seen: collections.Counter[int] = collections.Counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.get(f"http://{address}{path}", headers={"Host": "x"}) as r:
                seen[r.status] += 1
    return seen


async def timed_get(address: str, path: str) -> tuple[int, dict[str, object], float]:
    """GET `path` through the gateway: status, the echo's JSON (or {}), seconds taken."""
    start = asyncio.get_running_loop().time()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{address}{path}", headers={"Host": "x"}) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body, asyncio.get_running_loop().time() - start


async def test_retry_moves_to_another_endpoint(cluster: Cluster, pool: dict[str, str]) -> None:
    await cluster.service("mixed", [pool["healthy"], pool["failing"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                rule("/retry", "mixed", retry={"codes": [503], "attempts": 2}),
                rule("/once", "mixed"),
                rule("/other-codes", "mixed", retry={"codes": [502], "attempts": 2}),
            ],
        },
    )
    await eventually_status(address, "/retry", 200)
    assert await statuses(address, "/retry", 100) == {200: 100}
    without = await statuses(address, "/once", 100)
    assert without[503] > 20, without  # round robin: about half land on the failing one
    other = await statuses(address, "/other-codes", 100)
    assert other[503] > 20, other  # 503 is not among the rule's codes: not retried


async def test_cookie_session_persistence(cluster: Cluster, pool: dict[str, str]) -> None:
    await cluster.service("sticky", [pool["a"], pool["b"], pool["c"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "sessionPersistence": {"type": "Cookie", "sessionName": "agc-session"},
                    "backendRefs": [{"name": "sticky", "port": 80}],
                },
            ],
        },
    )
    await eventually_status(address, "/", 200)
    # unsafe: keep cookies from IP-address hosts (the Gateway's address)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"http://{address}/", headers={"Host": "x"}) as r:
            first = (await r.json())["name"]
            assert "agc-session" in r.cookies
        names = collections.Counter()
        for _ in range(30):
            async with session.get(f"http://{address}/", headers={"Host": "x"}) as r:
                names[(await r.json())["name"]] += 1
        assert names == {first: 30}
        # its endpoint leaves: the client moves, and sticks to the new one
        remaining = [
            a
            for n, a in (("exp-a", pool["a"]), ("exp-b", pool["b"]), ("exp-c", pool["c"]))
            if n != first
        ]
        await cluster.endpoints("sticky", remaining)
        async with asyncio.timeout(20):  # until the data plane has the new endpoints
            while True:
                async with session.get(f"http://{address}/", headers={"Host": "x"}) as r:
                    if (await r.json())["name"] != first:
                        break
                await asyncio.sleep(0.05)
        moved: collections.Counter[str] = collections.Counter()
        for _ in range(40):
            async with session.get(f"http://{address}/", headers={"Host": "x"}) as r:
                moved[(await r.json())["name"]] += 1
        assert first not in moved
        assert len(moved) == 1, moved  # a new cookie, and it sticks again


async def test_retry_attempts_backoff_and_the_last_answer(
    cluster: Cluster, pool: dict[str, str]
) -> None:
    # one endpoint: every retry goes back to it, as with a single-replica backend
    await cluster.service("counted", [pool["healthy"]])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                rule("/backoff", "counted", {"codes": [500], "attempts": 3, "backoff": "200ms"}),
                rule("/all", "counted", retry={"codes": [500, 502, 503, 504], "attempts": 2}),
                rule("/too-many", "counted", retry={"codes": [500], "attempts": 9}),
            ],
        },
    )
    await eventually_status(address, "/all", 200)

    status, body, elapsed = await timed_get(address, "/backoff?key=a&fail_times=2")
    assert (status, body["attempt"]) == (200, 3)
    assert elapsed >= 0.4  # two waits of the 200 ms backoff
    status, body, _ = await timed_get(address, "/backoff?key=b&fail_times=4")
    # 1 try + 3 retries, all failing: the backend's own last answer comes through
    assert (status, body["attempt"]) == (500, 4)
    status, body, _ = await timed_get(address, "/backoff?key=c&fail_times=2&fail_status=503")
    assert (status, body["attempt"]) == (503, 1)  # 503 is not among the codes
    for code in (500, 502, 503, 504):
        status, body, _ = await timed_get(
            address, f"/all?key=ok-{code}&fail_times=1&fail_status={code}"
        )
        assert (status, body["attempt"]) == (200, 2)
        status, body, _ = await timed_get(
            address, f"/all?key=ko-{code}&fail_times=3&fail_status={code}"
        )
        assert (status, body["attempt"]) == (code, 3)

    # more retries than the data plane can make: the rule is refused, not cut short
    assert (await timed_get(address, "/too-many"))[0] == 404
    route = await cluster.custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", cluster.namespace, "httproutes", "r"
    )
    messages = " ".join(c["message"] for c in route["status"]["parents"][0]["conditions"])
    assert "spec.rules[2].retry.attempts above 8 (9) is not supported" in messages


async def test_retry_after_a_backend_timeout(cluster: Cluster, pool: dict[str, str]) -> None:
    """HTTPRouteRetryBackendTimeout: a try that reaches timeouts.backendRequest
    without an answer is given up and the request tried again; without a retry
    policy the client gets 504 at the timeout."""
    await cluster.service("slow-once", [pool["healthy"]])
    address = await cluster.gateway("gw", HTTP)
    timeouts = {"backendRequest": "500ms"}
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    **rule("/retry", "slow-once", {"codes": [500], "attempts": 1}),
                    "timeouts": timeouts,
                },
                {**rule("/once", "slow-once"), "timeouts": timeouts},
            ],
        },
    )
    await eventually_status(address, "/retry", 200)

    # the first try would answer after 3 s: it is cut at 0.5 s, the second answers
    status, body, elapsed = await timed_get(
        address, "/retry?key=timeout-a&fail_times=1&fail_delay=3"
    )
    assert (status, body["attempt"]) == (200, 2)
    assert 0.5 <= elapsed < 2.5
    status, _, elapsed = await timed_get(address, "/once?key=timeout-b&fail_times=1&fail_delay=3")
    assert status == 504
    assert 0.5 <= elapsed < 2.5


async def test_retry_after_a_connection_error(
    cluster: Cluster, pool: dict[str, str], backends: BackendNamespace
) -> None:
    # an address in the backends' namespace with nothing listening: refused at once
    dead = backends.add_address()
    await cluster.service("half-dead", [pool["healthy"], dead])
    address = await cluster.gateway("gw", HTTP)
    await cluster.route(
        "r",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                # no status code of the dead endpoint's to retry: its refusal is
                # retried because any retry policy covers connection errors
                rule("/retry", "half-dead", retry={"codes": [500], "attempts": 1}),
                rule("/once", "half-dead"),
            ],
        },
    )
    await eventually_status(address, "/retry", 200)
    assert await statuses(address, "/retry", 100) == {200: 100}
    without = await statuses(address, "/once", 100)
    assert without[502] > 20, without  # round robin: about half are refused
