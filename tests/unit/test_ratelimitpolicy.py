"""RateLimitPolicy's spec parsed (graph/ratelimit.py): a rate, a concurrency limit
(requests in flight per key), or both; the field named when one is wrong; and
what the providers refuse. The golden cases ratelimitpolicy-concurrency and
azure-ratelimitpolicy-concurrency show the same through translation."""

from __future__ import annotations

from typing import Any

import pytest

from agc_controller.providers.azure import AZURE_CAPABILITIES
from agc_controller.translate.capabilities import FULL
from agc_controller.translate.graph.ratelimit import parse_rate_limit
from agc_controller.translate.model import RateLimit


def parsed(spec: dict[str, Any]) -> RateLimit:
    limit, problem = parse_rate_limit(spec)
    assert problem is None
    assert limit is not None
    return limit


def problem(spec: dict[str, Any]) -> str:
    limit, found = parse_rate_limit(spec)
    assert limit is None
    assert found is not None
    return found


def test_a_concurrency_limit_alone_has_no_rate() -> None:
    limit = parsed({"concurrency": {"requests": 3}})
    assert limit == RateLimit(bucket="", concurrency=3)
    assert (limit.requests, limit.period_s, limit.burst) == (None, None, None)


def test_a_rate_and_a_concurrency_limit_together_share_the_key() -> None:
    limit = parsed(
        {
            "limit": {"requests": 10, "unit": "Minute", "burst": 2},
            "concurrency": {"requests": 1_000_000},
            "key": {"type": "Header", "header": "X-Api-Key"},
        }
    )
    assert limit == RateLimit(
        bucket="",
        requests=10,
        period_s=60,
        burst=2,
        key="Header",
        header="X-Api-Key",
        concurrency=1_000_000,
    )


def test_a_rate_alone_is_as_before() -> None:
    limit = parsed({"limit": {"requests": 5, "unit": "Second"}})
    assert limit == RateLimit(bucket="", requests=5, period_s=1, burst=5)
    assert limit.concurrency is None


@pytest.mark.parametrize("spec", [{}, {"limit": None}, {"limit": None, "concurrency": None}])
def test_one_of_limit_and_concurrency_is_required(spec: dict[str, Any]) -> None:
    assert problem(spec) == "spec.limit or spec.concurrency (or both) is required"


@pytest.mark.parametrize(
    "concurrency",
    [
        {},
        {"requests": 0},
        {"requests": -1},
        {"requests": 1.5},
        {"requests": "2"},
        {"requests": True},
        {"requests": 1_000_001},
        "2",
        2,
    ],
    ids=repr,
)
def test_a_bad_concurrency_is_named(concurrency: object) -> None:
    assert problem({"concurrency": concurrency}) == (
        "spec.concurrency.requests must be an integer from 1 to 1000000"
    )


def test_a_bad_rate_beside_a_good_concurrency_is_still_refused() -> None:
    spec = {"limit": {"requests": 0, "unit": "Second"}, "concurrency": {"requests": 1}}
    assert problem(spec) == "spec.limit.requests must be an integer from 1 to 1000000"
    assert problem({"limit": "ten", "concurrency": {"requests": 1}}).startswith(
        "spec.limit.requests"
    )


def test_the_key_is_checked_for_a_concurrency_limit_too() -> None:
    spec = {"concurrency": {"requests": 1}, "key": {"type": "Header"}}
    assert problem(spec).startswith("spec.key.header must be an HTTP header name")


def test_the_azure_provider_refuses_a_concurrency_limit_naming_the_field() -> None:
    alone = parsed({"concurrency": {"requests": 2}})
    with_rate = parsed({"limit": {"requests": 1, "unit": "Second"}, "concurrency": {"requests": 2}})
    for limit in (alone, with_rate):
        assert AZURE_CAPABILITIES.rate_limit_problem(limit) == (
            "spec.concurrency is not supported by the azure provider"
        )
        assert FULL.rate_limit_problem(limit) is None
    rate = parsed({"limit": {"requests": 1, "unit": "Second"}})
    assert AZURE_CAPABILITIES.rate_limit_problem(rate) is None
