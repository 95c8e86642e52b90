"""BackendLoadBalancingPolicy connectionDraining: the spec parsed, and what each
provider's capabilities make of it (golden cases show the statuses whole:
azure- and local-backendloadbalancingpolicy-draining)."""

from __future__ import annotations

from typing import Any

import pytest

from agc_controller.providers.azure import AZURE_CAPABILITIES
from agc_controller.providers.local.capabilities import LOCAL_CAPABILITIES
from agc_controller.translate.capabilities import FULL
from agc_controller.translate.graph.loadbalancing import parse_load_balancing
from agc_controller.translate.model import ConnectionDraining, LoadBalancing


@pytest.mark.parametrize(
    ("draining", "expected"),
    [
        ({}, ConnectionDraining(enabled=True, timeout_ms=30_000)),
        ({"enabled": True}, ConnectionDraining(enabled=True, timeout_ms=30_000)),
        ({"timeout": "1s"}, ConnectionDraining(enabled=True, timeout_ms=1000)),
        ({"timeout": "1h"}, ConnectionDraining(enabled=True, timeout_ms=3_600_000)),
        ({"timeout": "1m30s"}, ConnectionDraining(enabled=True, timeout_ms=90_000)),
        ({"enabled": False}, ConnectionDraining(enabled=False, timeout_ms=None)),
    ],
)
def test_draining_is_parsed_with_agics_defaults(
    draining: dict[str, Any], expected: ConnectionDraining
) -> None:
    value, problem = parse_load_balancing({"connectionDraining": draining})
    assert problem is None
    assert value == LoadBalancing(draining=expected)


def test_a_policy_without_draining_leaves_it_to_the_provider() -> None:
    value, problem = parse_load_balancing({"circuitBreaker": {"maxRequests": 3}})
    assert problem is None
    assert value is not None
    assert value.draining is None


@pytest.mark.parametrize(
    ("draining", "field"),
    [
        ("yes", "spec.connectionDraining must be an object"),
        ({"enabled": "false"}, "spec.connectionDraining.enabled must be true or false"),
        ({"enabled": False, "timeout": "10s"}, "spec.connectionDraining.timeout is allowed only"),
        ({"timeout": "999ms"}, "spec.connectionDraining.timeout must be a duration from 1s to 1h"),
        ({"timeout": "3601s"}, "spec.connectionDraining.timeout must be a duration from 1s to 1h"),
        ({"timeout": 30}, "spec.connectionDraining.timeout must be a duration from 1s to 1h"),
        ({"timeout": "30"}, "spec.connectionDraining.timeout must be a duration from 1s to 1h"),
    ],
)
def test_a_bad_draining_is_refused_by_its_field(draining: Any, field: str) -> None:
    value, problem = parse_load_balancing({"connectionDraining": draining})
    assert value is None
    assert problem is not None
    assert problem.startswith(field), problem


def test_azure_takes_whole_seconds_only() -> None:
    whole = LoadBalancing(draining=ConnectionDraining(timeout_ms=2000))
    assert AZURE_CAPABILITIES.load_balancing_problem(whole) is None
    half = LoadBalancing(draining=ConnectionDraining(timeout_ms=1500))
    assert AZURE_CAPABILITIES.load_balancing_problem(half) == (
        "spec.connectionDraining.timeout in other than whole seconds is not supported by the "
        "azure provider"
    )
    # every other provider's timeouts are the spec's
    assert LOCAL_CAPABILITIES.load_balancing_problem(half) is None
    assert FULL.load_balancing_problem(half) is None


def test_azure_refuses_a_policy_whole_and_says_its_draining_goes_too() -> None:
    breaker = LoadBalancing(max_requests=5)
    assert AZURE_CAPABILITIES.load_balancing_problem(breaker) == (
        "spec.circuitBreaker is not supported by the azure provider"
    )
    both = LoadBalancing(max_requests=5, draining=ConnectionDraining())
    assert AZURE_CAPABILITIES.load_balancing_problem(both) == (
        "spec.circuitBreaker is not supported by the azure provider; the policy is refused "
        "whole, its spec.connectionDraining included"
    )


def test_only_the_local_provider_notes_that_draining_is_not_enforced() -> None:
    draining = LoadBalancing(draining=ConnectionDraining(enabled=False, timeout_ms=None))
    note = LOCAL_CAPABILITIES.load_balancing_note(draining)
    assert note is not None
    assert note.startswith("spec.connectionDraining is not enforced by the local provider")
    assert LOCAL_CAPABILITIES.load_balancing_note(LoadBalancing(strategy="Random")) is None
    assert AZURE_CAPABILITIES.load_balancing_note(draining) is None
    assert FULL.load_balancing_note(draining) is None
