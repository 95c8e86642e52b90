"""StatusWriter's error mapping and retry bounds, against a scripted api.call_api.

The happy paths and real conflicts run against a real apiserver in
tests/integration/test_status_writer.py; these are the failures that are hard
to provoke there.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import attrs
import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from structlog.testing import capture_logs

from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import (
    Condition,
    GatewayStatus,
    ListenerSetStatus,
    ParentReference,
    RouteParentStatus,
    RouteStatus,
)
from agc_controller.status import (
    MAX_ATTEMPTS,
    MAX_ROUTE_PARENTS,
    StaleStatusError,
    StatusWriteError,
    StatusWriter,
)

OURS = "example.com/agc"
PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/ns/gateways/gw"


class FixedClock:
    def monotonic(self) -> float:
        return 0.0

    def wall(self) -> float:
        return 1_714_557_600.0

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the writer never sleeps")


class ScriptedApi:
    """Answers call_api from a script: an object to return or an exception to raise."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str, Any]] = []

    async def call_api(self, path: str, method: str, **kwargs: Any) -> Any:
        self.calls.append((method, path, kwargs.get("body")))
        answer = self.script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def api_error(
    status: int, *, message: str = "", headers: dict[str, str] | None = None
) -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message}).encode()
    exc.headers = headers
    return exc


def gateway_obj(*, rv: str = "1", generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": "gw",
            "namespace": "ns",
            "generation": generation,
            "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"gatewayClassName": "agc", "listeners": []},
    }


DESIRED = GatewayStatus(
    namespace="ns",
    name="gw",
    conditions=(Condition("Accepted", "True", "Accepted", "Fine.", 1),),
    listeners=(),
    addresses=(),
)


def writer(api: ScriptedApi) -> StatusWriter:
    return StatusWriter(api, controller_name=OURS, clock=FixedClock())


async def test_put_carries_resource_version_and_no_managed_fields() -> None:
    api = ScriptedApi({})
    assert await writer(api).write(DESIRED, gateway_obj(rv="42")) is True
    [(method, path, body)] = api.calls
    assert (method, path) == ("PUT", f"{PATH}/status")
    assert body["metadata"]["resourceVersion"] == "42"
    assert "managedFields" not in body["metadata"]
    assert body["status"]["conditions"][0]["lastTransitionTime"] == "2024-05-01T10:00:00Z"


async def test_a_listener_set_status_goes_to_its_own_status_subresource() -> None:
    listener_set = {
        **gateway_obj(rv="7"),
        "kind": "ListenerSet",
        "metadata": {"name": "ls", "namespace": "apps", "generation": 1, "resourceVersion": "7"},
    }
    desired = ListenerSetStatus(
        namespace="apps",
        name="ls",
        conditions=(Condition("Accepted", "True", "Accepted", "Fine.", 1),),
        listeners=(),
    )
    api = ScriptedApi({"metadata": {"resourceVersion": "8"}})
    w = writer(api)
    assert await w.write(desired, listener_set) is True
    [(method, path, body)] = api.calls
    assert (method, path) == (
        "PUT",
        "/apis/gateway.networking.k8s.io/v1/namespaces/apps/listenersets/ls/status",
    )
    assert body["kind"] == "ListenerSet"
    assert [c["type"] for c in body["status"]["conditions"]] == ["Accepted"]
    # confirmed at the version the write produced: nothing to do there
    assert w.is_current(desired, {"metadata": {"resourceVersion": "8"}})


async def test_conflicts_are_bounded_then_temporary_error() -> None:
    script: list[Any] = [api_error(409)]
    for _ in range(MAX_ATTEMPTS - 1):
        script += [gateway_obj(), api_error(409)]
    api = ScriptedApi(*script)
    with capture_logs() as logs, pytest.raises(StatusWriteError) as raised:
        await writer(api).write(DESIRED, gateway_obj())
    assert not isinstance(raised.value, StaleStatusError)
    # the last conflict is not retried here: it goes back to the queue
    assert [e["event"] for e in logs] == ["status_conflict_retry"] * (MAX_ATTEMPTS - 1)
    assert [c[0] for c in api.calls].count("PUT") == MAX_ATTEMPTS
    assert api.script == []


async def test_not_found_on_write_means_done() -> None:
    assert await writer(ScriptedApi(api_error(404))).write(DESIRED, gateway_obj()) is False


async def test_not_found_on_read_means_done() -> None:
    api = ScriptedApi(api_error(404))
    assert await writer(api).write(DESIRED) is False
    assert [c[0] for c in api.calls] == ["GET"]


async def test_throttling_carries_retry_after() -> None:
    api = ScriptedApi(api_error(429, message="slow down", headers={"Retry-After": "7"}))
    with pytest.raises(StatusWriteError) as raised:
        await writer(api).write(DESIRED, gateway_obj())
    assert raised.value.delay == 7.0
    assert "slow down" in str(raised.value)


async def test_invalid_status_is_a_write_error_naming_the_server_message() -> None:
    api = ScriptedApi(api_error(422, message="status.conditions: Too many: 9"))
    with pytest.raises(StatusWriteError, match=r"422 status\.conditions: Too many: 9"):
        await writer(api).write(DESIRED, gateway_obj())


async def test_connection_failure_is_a_write_error() -> None:
    api = ScriptedApi(aiohttp.ClientConnectionError("connection refused"))
    with pytest.raises(StatusWriteError) as raised:
        await writer(api).write(DESIRED)
    assert raised.value.delay is None


async def test_stale_generation_raises_without_writing() -> None:
    api = ScriptedApi()
    with pytest.raises(StaleStatusError):
        await writer(api).write(DESIRED, gateway_obj(generation=2))
    assert api.calls == []


async def test_unknown_route_kind_is_a_programming_error() -> None:
    desired = RouteStatus("XRoute", "ns", "r", ObjectKey("Gateway", "ns", "gw"), ())
    with pytest.raises(ValueError, match="XRoute"):
        await writer(ScriptedApi()).write(desired, {"metadata": {}})


async def test_entries_beyond_the_limit_are_logged() -> None:
    other = {
        "parentRef": {"name": "x"},
        "controllerName": "other.example.org/c",
        "conditions": [],
    }
    route = {
        "metadata": {"name": "r", "namespace": "ns", "generation": 1, "resourceVersion": "5"},
        "status": {"parents": [other] * MAX_ROUTE_PARENTS},
    }
    gateway = ObjectKey("Gateway", "ns", "gw")
    desired = RouteStatus(
        "HTTPRoute",
        "ns",
        "r",
        gateway,
        (
            RouteParentStatus(
                ParentReference(name="gw", namespace="ns"),
                (Condition("Accepted", "True", "Accepted", "Fine.", 1),),
            ),
        ),
    )
    api = ScriptedApi()
    with capture_logs() as logs:
        # the list is full of other controllers' entries: ours cannot be added, no write
        assert await writer(api).write(desired, route) is False
    assert api.calls == []
    [event] = logs
    assert event["event"] == "status_entries_dropped"
    assert event["dropped"] == [ParentReference(name="gw", namespace="ns").to_api()]


async def test_an_unchanged_status_is_not_prepared_again() -> None:
    stored = {**gateway_obj(rv="43"), "status": {}}
    api = ScriptedApi(stored)
    w = writer(api)
    assert await w.write(DESIRED, gateway_obj(rv="42")) is True
    # the cache holds either version (ours not seen yet, or seen): nothing to do
    for cached in (gateway_obj(rv="42"), gateway_obj(rv="43")):
        assert w.is_current(DESIRED, cached)
        assert await w.write(DESIRED, cached) is False
    assert len(api.calls) == 1


async def test_a_status_changed_by_someone_else_is_prepared_again() -> None:
    api = ScriptedApi({**gateway_obj(rv="43"), "status": {}}, {})
    w = writer(api)
    assert await w.write(DESIRED, gateway_obj(rv="42")) is True
    assert not w.is_current(DESIRED, gateway_obj(rv="44"))
    # the object at 44 has no status (somebody cleared it): ours is written again
    assert await w.write(DESIRED, gateway_obj(rv="44")) is True
    assert [c[0] for c in api.calls] == ["PUT", "PUT"]


async def test_a_changed_desired_status_is_written() -> None:
    api = ScriptedApi({**gateway_obj(rv="43"), "status": {}}, {})
    w = writer(api)
    await w.write(DESIRED, gateway_obj(rv="42"))
    changed = attrs.evolve(
        DESIRED, conditions=(Condition("Accepted", "False", "Invalid", "Not fine.", 1),)
    )
    assert not w.is_current(changed, gateway_obj(rv="43"))
    assert await w.write(changed, gateway_obj(rv="43")) is True
