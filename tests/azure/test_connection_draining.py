"""connectionDraining of a BackendLoadBalancingPolicy on Application Gateway, through
the real SDK to the ARM test server: what the backend settings carry, and that
the server (holding ARM's published bounds on its own) refuses what ARM would."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from agc_controller.providers.azure import AzureProvider
from agc_controller.translate.model import ConnectionDraining, LoadBalancer, LoadBalancing
from tests.azure.conftest import APPLICATION_GATEWAY, RESOURCE_GROUP, SUBSCRIPTION, CallCounter
from tests.azure.models import model
from tests.azure.server import ArmServer

BACKEND = "default/web:80"


def _with_draining(draining: ConnectionDraining | None) -> LoadBalancer:
    base = model()
    if draining is None:
        return base
    return attrs.evolve(base, load_balancing={BACKEND: LoadBalancing(draining=draining)})


def _stored_draining(arm: ArmServer) -> list[Any]:
    """connectionDraining of each backend settings child for BACKEND on the gateway."""
    props = arm.gateway(SUBSCRIPTION, RESOURCE_GROUP, APPLICATION_GATEWAY)["properties"]
    return [
        s["properties"].get("connectionDraining")
        for s in props.get("backendHttpSettingsCollection") or []
        if "-be-default-web-80-" in s["name"]
    ]


@pytest.mark.parametrize(
    ("draining", "expected"),
    [
        (None, {"enabled": True, "drainTimeoutInSec": 30}),
        (ConnectionDraining(), {"enabled": True, "drainTimeoutInSec": 30}),
        (ConnectionDraining(timeout_ms=3_600_000), {"enabled": True, "drainTimeoutInSec": 3600}),
        (ConnectionDraining(timeout_ms=1000), {"enabled": True, "drainTimeoutInSec": 1}),
        (
            ConnectionDraining(enabled=False, timeout_ms=None),
            {"enabled": False, "drainTimeoutInSec": 1},
        ),
    ],
    ids=["no-policy", "defaults", "1h", "1s", "off"],
)
async def test_the_policys_draining_is_the_backend_settings(
    arm: ArmServer,
    provider: tuple[AzureProvider, CallCounter],
    draining: ConnectionDraining | None,
    expected: dict[str, Any],
) -> None:
    p, _ = provider
    result = await p.apply(_with_draining(draining))
    assert result.programmed, result.message
    assert _stored_draining(arm) == [expected]


async def test_a_changed_draining_is_put_again(
    arm: ArmServer, provider: tuple[AzureProvider, CallCounter]
) -> None:
    p, _ = provider
    assert (await p.apply(_with_draining(ConnectionDraining(timeout_ms=120_000)))).programmed
    assert _stored_draining(arm) == [{"enabled": True, "drainTimeoutInSec": 120}]
    assert (
        await p.apply(_with_draining(ConnectionDraining(enabled=False, timeout_ms=None)))
    ).programmed
    # the old settings went with the change (their name carries a digest of the content)
    assert _stored_draining(arm) == [{"enabled": False, "drainTimeoutInSec": 1}]
    assert len(arm.puts()) == 2


@pytest.mark.parametrize("timeout_ms", [0, 3_601_000], ids=["0s", "3601s"])
async def test_the_server_refuses_a_drain_timeout_arm_refuses(
    arm: ArmServer, provider: tuple[AzureProvider, CallCounter], timeout_ms: int
) -> None:
    """Translation never makes these (1s to 1h); a model built by hand does, and the
    server refuses it as ARM would, so a provider bug could not pass unseen."""
    p, _ = provider
    result = await p.apply(_with_draining(ConnectionDraining(timeout_ms=timeout_ms)))
    assert not result.programmed
    assert result.reason == "Invalid"
    assert "drainTimeoutInSec" in result.message, result.message
    assert _stored_draining(arm) == []
