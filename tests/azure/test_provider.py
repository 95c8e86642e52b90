"""The azure provider against the ARM test server through the real SDK (no kube-apiserver)."""

from __future__ import annotations

import asyncio

from agc_controller.providers.azure import AzureProvider
from tests.azure.conftest import APPLICATION_GATEWAY, RESOURCE_GROUP, SUBSCRIPTION, CallCounter
from tests.azure.models import model
from tests.azure.server import ArmServer, Failure

Provider = tuple[AzureProvider, CallCounter]


def _props(arm: ArmServer) -> dict:  # type: ignore[type-arg]
    return arm.gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)["properties"]


def _names(arm: ArmServer, collection: str) -> list[str]:
    return [c["name"] for c in _props(arm).get(collection) or []]


async def test_apply_puts_once_and_reports_the_public_address(
    arm: ArmServer, provider: Provider
) -> None:
    p, counter = provider
    result = await p.apply(model())
    assert result.programmed, result.message
    assert [a.value for a in result.addresses] == ["203.0.113.10"]
    assert len(arm.puts()) == 1
    assert _props(arm)["provisioningState"] == "Succeeded"
    pools = _props(arm)["backendAddressPools"]
    assert pools[0]["properties"]["backendAddresses"] == [{"ipAddress": "10.2.0.1"}]
    # the same model again: GET, compare, no PUT
    again = await p.apply(model())
    assert again.programmed
    assert len(arm.puts()) == 1
    assert counter.counts[("PUT", 201)] == 1
    assert counter.counts[("GET", 200)] >= 3


async def test_put_carries_if_match(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    before = arm.gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)["etag"]
    await p.apply(model())
    assert arm.puts()[0].headers["If-Match"] == before


async def test_412_rereads_and_retries(arm: ArmServer, provider: Provider) -> None:
    p, counter = provider
    arm.inject(Failure("PUT", 412, "PreconditionFailed", "The condition is not met."))
    result = await p.apply(model())
    assert result.programmed, result.message
    assert counter.counts[("PUT", 412)] == 1
    assert len(arm.puts()) == 1


async def test_429_honours_retry_after(arm: ArmServer, provider: Provider) -> None:
    p, counter = provider
    arm.inject(
        Failure("PUT", 429, "RetryableErrorDueToAnotherOperation", "busy", retry_after=0.5, times=1)
    )
    result = await p.apply(model())
    assert result.programmed
    busy = next(r for r in arm.requests if r.status == 429)
    accepted = arm.puts()[0]
    assert accepted.time - busy.time >= 0.45
    assert counter.counts[("PUT", 429)] == 1


async def test_500_and_failed_operation_are_retried(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    arm.inject(Failure("PUT", 500, "InternalServerError", "boom"))
    arm.inject(Failure("LRO", 0, "InternalServerError", "The operation failed."))
    result = await p.apply(model())
    assert result.programmed, result.message
    # the 500 never reached the gateway; the failed operation did and was PUT again
    assert len(arm.puts()) == 2
    assert _props(arm)["provisioningState"] == "Succeeded"


async def test_permanent_4xx_is_a_result_with_arms_message(
    arm: ArmServer, provider: Provider
) -> None:
    p, _ = provider
    arm.inject(
        Failure("PUT", 400, "ApplicationGatewayInvalidThing", "The thing is invalid.", times=5)
    )
    result = await p.apply(model())
    assert not result.programmed
    assert result.reason == "Invalid"
    assert "The thing is invalid." in result.message
    # unchanged wish, unchanged gateway: not PUT again
    puts = len(arm.calls("PUT"))
    await p.apply(model())
    assert len(arm.calls("PUT")) == puts


async def test_over_limit_is_refused_before_any_put(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    result = await p.apply(model(paths=tuple(f"/p{i}" for i in range(101))))
    assert not result.programmed
    assert "limit is 100" in result.message
    assert arm.calls("PUT") == []


async def test_unknown_application_gateway_is_invalid(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    result = await p.apply(
        model(annotations=(("azure.agc-controller.io/application-gateway", "missing"),))
    )
    assert not result.programmed
    assert "was not found" in result.message


async def test_burst_coalesces_and_shared_gateway_merges(
    arm: ArmServer, provider: Provider
) -> None:
    p, _ = provider
    arm.operation_seconds = 0.5
    results = await asyncio.gather(
        *(p.apply(model("a", paths=(f"/v{i}",))) for i in range(10)),
        p.apply(model("b", hostname="b.example.com")),
    )
    assert all(r.programmed for r in results)
    assert len(arm.puts()) <= 2
    listeners = _names(arm, "httpListeners")
    assert len(listeners) == 2
    paths = [
        rule["properties"]["paths"]
        for m in _props(arm)["urlPathMaps"]
        for rule in m["properties"]["pathRules"]
    ]
    assert ["/v9", "/v9/*"] in paths
    assert ["/v0", "/v0/*"] not in paths


async def test_delete_removes_only_its_children(arm: ArmServer, provider: Provider) -> None:
    p, _ = provider
    await p.apply(model("a"))
    await p.apply(model("b", hostname="b.example.com"))
    await p.delete(model("a").gateway)
    listeners = _names(arm, "httpListeners")
    assert len(listeners) == 1
    assert "b.example.com" in listeners[0]
    assert _names(arm, "frontendPorts") == ["agc-port-80"]
    await p.delete(model("b").gateway)
    assert _names(arm, "httpListeners") == []
    assert _names(arm, "frontendPorts") == []
