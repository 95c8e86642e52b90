"""Backoff: jittered delays that grow to a cap, and start over after a reset."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agc_controller.informers import Backoff

NOMINAL = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]


def _within_jitter(delay: float, nominal: float) -> bool:
    return 0.8 * nominal <= delay <= nominal


def test_delays_grow_to_the_cap_within_jitter_bounds() -> None:
    backoff = Backoff(rng=random.Random(1))
    delays = [backoff.next_delay() for _ in NOMINAL]
    assert all(map(_within_jitter, delays, NOMINAL)), delays
    assert delays != NOMINAL  # jittered, not the bare steps


def test_reset_starts_over() -> None:
    backoff = Backoff(rng=random.Random(2))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert _within_jitter(backoff.next_delay(), 0.8)


def test_extreme_jitter_draws_stay_in_bounds() -> None:
    class Fixed(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    assert Backoff(rng=Fixed(0.0)).next_delay() == pytest.approx(0.8)
    assert Backoff(rng=Fixed(0.999999)).next_delay() == pytest.approx(0.64, abs=1e-5)


@pytest.mark.parametrize(
    "options",
    [{"initial": 0}, {"initial": 40}, {"factor": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}],
)
def test_rejects_nonsense(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(**options)
