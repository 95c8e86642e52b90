"""RateLimitPolicy (agc-controller.io/v1alpha1): its spec, parsed and checked.

    spec:
      targetRefs: [...]            # graph/policies.py
      limit:                       # a rate, or (concurrency alone) none
        requests: 10               # per unit, for each key
        unit: Second               # Second | Minute | Hour
        burst: 20                  # at most this many at once after a pause (default: requests)
      concurrency:                 # a number in flight, or none
        requests: 5                # each key's requests in flight at once; one more: 429
      key:
        type: ClientIP             # ClientIP (default) | Header | Claim
        header: X-Api-Key          # Header: the header whose value is the key
        claim: sub                 # Claim: the claim of the request's verified JWT

A policy sets `limit`, `concurrency` or both (both apply to each request); `key`
is whose requests share the budget and the count in flight alike. The CRD
refuses most bad values with CEL; these checks repeat them (a policy may come
from a file, `agc-controller translate`) and name the field.
Requests without the key header share one budget (the empty value): leaving
out a header never escapes the limit. A claim key is the verified token's (an
AuthPolicy with `jwt` on the same rule checks it first; the data plane counts
after it): a request without one, or without the claim, shares the empty key.
"""

from __future__ import annotations

from typing import TypeGuard

import attrs

from agc_controller.translate.capabilities import Capabilities
from agc_controller.translate.graph.policies import (
    FRONT_TARGETS,
    AttachedPolicies,
    PolicyNode,
    Target,
    build_attached,
    governing_name,
)
from agc_controller.translate.model import RateLimit
from agc_controller.translate.snapshot import Obj, Snapshot
from agc_controller.translate.validate import int_in, is_token

KIND = "RateLimitPolicy"

UNIT_SECONDS = {"Second": 1, "Minute": 60, "Hour": 3600}
# as in the CRD: large enough for any real limit, small enough for exact float math
REQUESTS_MAX = 1_000_000


def build_rate_limits(
    snapshot: Snapshot, capabilities: Capabilities
) -> AttachedPolicies[RateLimit]:
    """Every RateLimitPolicy of the snapshot; each value's bucket is left empty
    (`in_force` names it after the target it governs through)."""
    return build_attached(
        KIND,
        snapshot.rate_limit_policies.values(),
        lambda obj: parse_rate_limit(obj.get("spec") or {}),
        targets=FRONT_TARGETS,
        provider_problem=capabilities.rate_limit_problem,
    )


def in_force(policy: PolicyNode[RateLimit], target: Target) -> RateLimit:
    """The limit of `policy` as it governs through `target`: the bucket is named after
    both, so every rule a Gateway-wide policy covers shares one budget."""
    assert policy.value is not None  # only valid policies govern
    return attrs.evolve(policy.value, bucket=governing_name(policy, target))


def parse_rate_limit(spec: Obj) -> tuple[RateLimit | None, str | None]:
    limit, concurrency = spec.get("limit"), spec.get("concurrency")
    if limit is None and concurrency is None:
        return None, "spec.limit or spec.concurrency (or both) is required"
    parsed = RateLimit(bucket="")
    if limit is not None:
        limit = limit if isinstance(limit, dict) else {}
        requests = limit.get("requests")
        if not _count(requests):
            return None, f"spec.limit.requests must be an integer from 1 to {REQUESTS_MAX}"
        unit = limit.get("unit")
        if unit not in UNIT_SECONDS:
            return None, f"spec.limit.unit {str(unit)[:32]!r} is not one of Second, Minute, Hour"
        burst = limit.get("burst", requests)
        if not _count(burst):
            return None, f"spec.limit.burst must be an integer from 1 to {REQUESTS_MAX}"
        parsed = attrs.evolve(parsed, requests=requests, period_s=UNIT_SECONDS[unit], burst=burst)
    if concurrency is not None:
        in_flight = concurrency.get("requests") if isinstance(concurrency, dict) else None
        if not _count(in_flight):
            return None, f"spec.concurrency.requests must be an integer from 1 to {REQUESTS_MAX}"
        parsed = attrs.evolve(parsed, concurrency=in_flight)
    key = spec.get("key") or {}
    key_type = key.get("type", "ClientIP")
    header, claim = key.get("header"), key.get("claim")
    if header is not None and key_type != "Header":
        return None, "spec.key.header is only allowed with type Header"
    if claim is not None and key_type != "Claim":
        return None, "spec.key.claim is only allowed with type Claim"
    if key_type == "Header":
        if not is_token(header):
            return None, "spec.key.header must be an HTTP header name (a token of 1-256 characters)"
    elif key_type == "Claim":
        if not (isinstance(claim, str) and 0 < len(claim) <= 256 and claim.isprintable()):
            return None, "spec.key.claim must be a JWT claim name (1-256 printable characters)"
    elif key_type != "ClientIP":
        return None, f"spec.key.type {str(key_type)[:32]!r} is not one of ClientIP, Header, Claim"
    return attrs.evolve(parsed, key=key_type, header=header, claim=claim), None


def _count(value: object) -> TypeGuard[int]:
    return int_in(value, 1, REQUESTS_MAX)
