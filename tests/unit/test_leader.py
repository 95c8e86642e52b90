"""LeaderElector's option checks and timestamp format (its behaviour is tested
against a real apiserver in tests/integration/test_leader.py)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from kubernetes_asyncio import client

from agc_controller.core.clock import SystemClock
from agc_controller.core.timefmt import micro_time
from agc_controller.runtime.leader import LeaderElector

UNUSED_API = cast(client.ApiClient, object())


def make(**overrides: Any) -> LeaderElector:
    options: dict[str, Any] = {
        "namespace": "ns",
        "name": "lease",
        "identity": "me",
        "clock": SystemClock(),
    }
    return LeaderElector(UNUSED_API, **(options | overrides))


def test_micro_time_is_utc_with_microseconds() -> None:
    assert micro_time(0.5) == "1970-01-01T00:00:00.500000Z"
    assert micro_time(1_700_000_000.000001) == "2023-11-14T22:13:20.000001Z"


def test_a_new_elector_does_not_lead() -> None:
    assert not make().is_leader


@pytest.mark.parametrize(
    "timing",
    [
        {"lease_duration": 10.0, "renew_deadline": 10.0},
        {"renew_deadline": 2.0, "retry_period": 2.0},
        {"lease_duration": 3.0, "renew_deadline": 2.0, "retry_period": 0.0},
    ],
    ids=["lease-not-longer-than-deadline", "deadline-within-jittered-retry", "zero-retry"],
)
def test_rejects_timings_that_allow_two_leaders(timing: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        make(**timing)


def test_rejects_empty_identity() -> None:
    with pytest.raises(ValueError, match="identity"):
        make(identity="")
