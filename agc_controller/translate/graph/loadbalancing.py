"""BackendLoadBalancingPolicy (agc-controller.io/v1alpha1): its spec, parsed and checked.

    spec:
      targetRefs: [{group: "", kind: Service, name: web}]   # graph/policies.py
      loadBalancing:
        strategy: RoundRobin          # RoundRobin | LeastRequest | Random | ConsistentHash
        consistentHash:               # ConsistentHash only
          type: Header                # SourceIP | Header | Cookie
          name: X-User                # Header and Cookie: which one
        slowStartWindow: 30s          # RoundRobin and LeastRequest: a new endpoint's ramp
      circuitBreaker:
        maxRequests: 100              # in flight to the backend at once; more: 503 at once
      connectionDraining:             # an endpoint that leaves the backend (AGIC's
        enabled: true                 #   connection-draining annotations)
        timeout: 30s                  # enabled only: how long requests in flight may
                                      #   finish (default 30s; 1s to 1h)

At least one of loadBalancing, circuitBreaker and connectionDraining. The CRD
refuses most bad values with CEL; these checks repeat them and name the field.
What a provider makes of connectionDraining (the local data plane always lets
requests in flight finish) is the provider's to say: capabilities.py.
"""

from __future__ import annotations

from typing import Any

from agc_controller.translate.capabilities import Capabilities
from agc_controller.translate.graph.policies import (
    SERVICE_TARGETS,
    AttachedPolicies,
    build_attached,
)
from agc_controller.translate.model import ConnectionDraining, LoadBalancing
from agc_controller.translate.snapshot import Obj, Snapshot
from agc_controller.translate.validate import duration_ms, int_in, is_token

KIND = "BackendLoadBalancingPolicy"

STRATEGIES = ("RoundRobin", "LeastRequest", "Random", "ConsistentHash")
HASH_TYPES = ("SourceIP", "Header", "Cookie")
SLOW_START_MIN_MS = 1000
SLOW_START_MAX_MS = 3_600_000
MAX_REQUESTS_MAX = 1_000_000
# connectionDraining.timeout: AGIC's connection-draining-timeout default and bounds
# (Application Gateway's drainTimeoutInSec, 1 to 3600 seconds)
DRAIN_TIMEOUT = "30s"
DRAIN_TIMEOUT_MIN_MS = 1000
DRAIN_TIMEOUT_MAX_MS = 3_600_000


def build_load_balancing(
    snapshot: Snapshot, capabilities: Capabilities
) -> AttachedPolicies[LoadBalancing]:
    return build_attached(
        KIND,
        snapshot.load_balancing_policies.values(),
        lambda obj: parse_load_balancing(obj.get("spec") or {}),
        targets=SERVICE_TARGETS,
        provider_problem=capabilities.load_balancing_problem,
        provider_note=capabilities.load_balancing_note,
    )


def parse_load_balancing(spec: Obj) -> tuple[LoadBalancing | None, str | None]:
    balancing = spec.get("loadBalancing")
    breaker = spec.get("circuitBreaker")
    if balancing is None and breaker is None and spec.get("connectionDraining") is None:
        return None, (
            "spec.loadBalancing, spec.circuitBreaker or spec.connectionDraining (at least one) "
            "is required"
        )
    if balancing is not None and not isinstance(balancing, dict):
        return None, "spec.loadBalancing must be an object"
    if breaker is not None and not isinstance(breaker, dict):
        return None, "spec.circuitBreaker must be an object"
    draining, problem = _connection_draining(spec.get("connectionDraining"))
    if problem:
        return None, problem
    balancing = balancing or {}
    strategy = balancing.get("strategy", "RoundRobin")
    if strategy not in STRATEGIES:
        return None, (
            f"spec.loadBalancing.strategy {str(strategy)[:32]!r} is not one of "
            + ", ".join(STRATEGIES)
        )
    hash_on, hash_name, problem = _consistent_hash(strategy, balancing.get("consistentHash"))
    if problem:
        return None, problem
    slow_start_ms = None
    if (window := balancing.get("slowStartWindow")) is not None:
        if strategy not in ("RoundRobin", "LeastRequest"):
            return None, f"spec.loadBalancing.slowStartWindow is not allowed with {strategy}"
        slow_start_ms = duration_ms(window) if isinstance(window, str) else None
        if slow_start_ms is None or not SLOW_START_MIN_MS <= slow_start_ms <= SLOW_START_MAX_MS:
            return None, "spec.loadBalancing.slowStartWindow must be a duration from 1s to 1h"
    max_requests = None
    if breaker is not None:
        max_requests = breaker.get("maxRequests")
        if not int_in(max_requests, 1, MAX_REQUESTS_MAX):
            return None, (
                f"spec.circuitBreaker.maxRequests must be an integer from 1 to {MAX_REQUESTS_MAX}"
            )
    return (
        LoadBalancing(
            strategy=strategy,
            hash_on=hash_on,
            hash_name=hash_name,
            slow_start_ms=slow_start_ms,
            max_requests=max_requests,
            draining=draining,
        ),
        None,
    )


def _connection_draining(config: Any) -> tuple[ConnectionDraining | None, str | None]:
    """spec.connectionDraining: enabled (default true) and, only then, a timeout."""
    field = "spec.connectionDraining"
    if config is None:
        return None, None
    if not isinstance(config, dict):
        return None, f"{field} must be an object"
    enabled = config.get("enabled", True)
    if not isinstance(enabled, bool):
        return None, f"{field}.enabled must be true or false"
    timeout = config.get("timeout")
    if not enabled:
        if timeout is not None:
            # the CRD says so too: a timeout that does nothing would read as if it did
            return None, f"{field}.timeout is allowed only when {field}.enabled is true"
        return ConnectionDraining(enabled=False, timeout_ms=None), None
    window = DRAIN_TIMEOUT if timeout is None else timeout
    ms = duration_ms(window) if isinstance(window, str) else None
    if ms is None or not DRAIN_TIMEOUT_MIN_MS <= ms <= DRAIN_TIMEOUT_MAX_MS:
        return None, f"{field}.timeout must be a duration from 1s to 1h"
    return ConnectionDraining(enabled=True, timeout_ms=ms), None


def _consistent_hash(strategy: str, config: Any) -> tuple[Any, str | None, str | None]:
    """(type, name, problem) of spec.loadBalancing.consistentHash."""
    field = "spec.loadBalancing.consistentHash"
    if strategy != "ConsistentHash":
        if config is not None:
            return None, None, f"{field} is only allowed with strategy ConsistentHash"
        return None, None, None
    if not isinstance(config, dict):
        return None, None, f"{field} is required with strategy ConsistentHash"
    hash_on = config.get("type")
    if hash_on not in HASH_TYPES:
        return (
            None,
            None,
            (f"{field}.type {str(hash_on)[:32]!r} is not one of " + ", ".join(HASH_TYPES)),
        )
    name = config.get("name")
    if hash_on == "SourceIP":
        if name is not None:
            return None, None, f"{field}.name is not allowed with type SourceIP"
        return hash_on, None, None
    # a header name and an RFC 6265 cookie-name are both tokens
    if not is_token(name):
        return (
            None,
            None,
            (f"{field}.name must be a {hash_on.lower()} name (a token of 1-256 characters)"),
        )
    return hash_on, name, None
