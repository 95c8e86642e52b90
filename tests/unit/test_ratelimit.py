"""Rate limiters: the delays client-go's limiters give, on a hand-driven clock."""

from __future__ import annotations

import pytest

from agc_controller.queue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


class HandClock:
    """Only `monotonic` matters to the limiters; tests move `now` by hand."""

    def __init__(self) -> None:
        self.now = 5000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("rate limiters never sleep")


def test_exponential_doubles_from_base_per_failure() -> None:
    limiter = ItemExponentialFailureRateLimiter[str]()
    delays = [limiter.when("k") for _ in range(6)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.16])
    assert limiter.num_requeues("k") == 6


def test_exponential_is_capped_at_max_delay() -> None:
    limiter = ItemExponentialFailureRateLimiter[str]()
    delays = [limiter.when("k") for _ in range(30)]
    # 0.005 * 2**17 = 655.36 s is the last step under the 1000 s cap
    assert delays[17] == pytest.approx(655.36)
    assert delays[18:] == [1000.0] * 12


def test_exponential_survives_failure_counts_beyond_float_range() -> None:
    limiter = ItemExponentialFailureRateLimiter[str](base=1.0, max_delay=60.0)
    for _ in range(1100):
        delay = limiter.when("k")
    assert delay == 60.0


def test_exponential_counts_keys_separately_and_forget_resets() -> None:
    limiter = ItemExponentialFailureRateLimiter[str](base=1.0, max_delay=100.0)
    assert [limiter.when("a"), limiter.when("a"), limiter.when("b")] == [1.0, 2.0, 1.0]
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.num_requeues("b") == 1
    assert limiter.when("a") == 1.0


def test_bucket_allows_a_burst_then_paces_at_qps() -> None:
    clock = HandClock()
    limiter = BucketRateLimiter(qps=10.0, burst=100, clock=clock)
    assert [limiter.when(i) for i in range(100)] == [0.0] * 100
    # past the burst each caller reserves the next future token
    assert [limiter.when(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])


def test_bucket_refills_with_time_up_to_burst() -> None:
    clock = HandClock()
    limiter = BucketRateLimiter(qps=10.0, burst=5, clock=clock)
    for i in range(5):
        limiter.when(i)
    clock.now += 0.05  # half a token back
    assert limiter.when("x") == pytest.approx(0.05)
    clock.now += 1000.0  # refills to the burst, not to 10,000 tokens
    assert [limiter.when(i) for i in range(6)] == pytest.approx([0, 0, 0, 0, 0, 0.1])


def test_bucket_keeps_no_per_key_history() -> None:
    limiter = BucketRateLimiter(qps=1.0, burst=1, clock=HandClock())
    limiter.when("k")
    limiter.forget("k")
    assert limiter.num_requeues("k") == 0
    assert limiter.when("k") == pytest.approx(1.0)


def test_max_of_takes_the_longest_delay_and_forgets_everywhere() -> None:
    clock = HandClock()
    limiter = MaxOfRateLimiter[str](
        ItemExponentialFailureRateLimiter(base=0.5, max_delay=100.0),
        BucketRateLimiter(qps=1.0, burst=1, clock=clock),
    )
    assert limiter.when("k") == pytest.approx(0.5)  # bucket had a token
    assert limiter.when("k") == pytest.approx(1.0)  # bucket: next token in 1 s
    assert limiter.when("k") == pytest.approx(2.0)  # exponential: 0.5 * 2**2
    assert limiter.num_requeues("k") == 3
    limiter.forget("k")
    assert limiter.num_requeues("k") == 0


def test_default_controller_rate_limiter_matches_client_go() -> None:
    clock = HandClock()
    limiter = default_controller_rate_limiter(clock)
    assert [limiter.when("same") for _ in range(3)] == pytest.approx([0.005, 0.01, 0.02])
    # 3 tokens spent above; 97 more distinct keys empty the 100-token bucket
    assert {limiter.when(i) for i in range(97)} == {0.005}
    assert limiter.when("one-more") == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("base", "max_delay"),
    [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)],
    ids=["zero", "negative", "inverted"],
)
def test_exponential_rejects_nonsense(base: float, max_delay: float) -> None:
    with pytest.raises(ValueError, match="base"):
        ItemExponentialFailureRateLimiter[str](base=base, max_delay=max_delay)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="qps"):
        BucketRateLimiter(qps=0.0, burst=1, clock=HandClock())
    with pytest.raises(ValueError, match="burst"):
        BucketRateLimiter(qps=1.0, burst=0, clock=HandClock())


def test_max_of_needs_a_limiter() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MaxOfRateLimiter[str]()
