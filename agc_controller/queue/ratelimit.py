"""Rate limiters for re-queueing failed keys, with client-go's semantics.

A rate limiter answers "how long should this key wait before its next try?".
`when(key)` is called once per failure and records it; `forget(key)` is called
on success and clears the key's history; `num_requeues(key)` reports the
failures recorded since the last `forget`.

- `ItemExponentialFailureRateLimiter`: per key, `base * 2**failures`, capped.
- `BucketRateLimiter`: one token bucket for all keys (golang.org/x/time/rate):
  a caller that finds the bucket empty reserves a future token and is told how
  long to wait for it, so a burst of failures is spread out at `qps`.
- `MaxOfRateLimiter`: the longest delay any of its limiters asks for.
- `default_controller_rate_limiter`: client-go's DefaultControllerRateLimiter,
  max(exponential 5 ms…1000 s, bucket 10 qps / burst 100).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol, TypeVar

from agc_controller.core.clock import Clock

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)

# 2.0**1024 overflows a float; a failure count that high is past any cap anyway.
_MAX_EXPONENT = 1023


class RateLimiter(Protocol[K_contra]):
    def when(self, key: K_contra) -> float:
        """Record a failure of `key`; return the seconds it should wait."""
        ...

    def forget(self, key: K_contra) -> None:
        """Clear `key`'s failure history (it succeeded, or was given up)."""
        ...

    def num_requeues(self, key: K_contra) -> int:
        """Failures recorded for `key` since the last `forget`."""
        ...


class ItemExponentialFailureRateLimiter(RateLimiter[K]):
    """`base * 2**failures` seconds per key, capped at `max_delay`."""

    def __init__(self, *, base: float = 0.005, max_delay: float = 1000.0) -> None:
        if base <= 0 or max_delay < base:
            raise ValueError(f"need 0 < base <= max_delay, got {base=} {max_delay=}")
        self._base = base
        self._max_delay = max_delay
        # failures recorded per key since its last forget; absent means zero
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        exponent = self._failures.get(key, 0)
        self._failures[key] = exponent + 1
        return min(self._max_delay, self._base * 2.0 ** min(exponent, _MAX_EXPONENT))

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter(RateLimiter[Hashable]):
    """A token bucket shared by all keys: `burst` tokens, refilled at `qps`.

    Like golang.org/x/time/rate's `Reserve().Delay()`: every call takes a
    token, borrowing from the future when the bucket is empty (the balance goes
    negative), so successive callers are told to wait 1/qps, 2/qps, … longer.
    Keys have no history here: `forget` is a no-op and `num_requeues` is 0.
    """

    def __init__(self, *, qps: float = 10.0, burst: int = 100, clock: Clock) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"need qps > 0 and burst >= 1, got {qps=} {burst=}")
        self._qps = qps
        self._burst = burst
        self._clock = clock
        # token balance as of `_last`; never above burst, negative while reserved ahead
        self._tokens = float(burst)
        # monotonic time `_tokens` was computed at
        self._last = clock.monotonic()

    def when(self, key: Hashable) -> float:
        now = self._clock.monotonic()
        refill = (now - self._last) * self._qps
        self._last = now
        self._tokens = min(float(self._burst), self._tokens + refill) - 1.0
        return -self._tokens / self._qps if self._tokens < 0 else 0.0

    def forget(self, key: Hashable) -> None:
        return

    def num_requeues(self, key: Hashable) -> int:
        return 0


class MaxOfRateLimiter(RateLimiter[K]):
    """The longest delay, and the most requeues, of any of `limiters`.

    Every limiter sees every call, so each keeps its own accounting.
    """

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, key: K) -> float:
        return max(limiter.when(key) for limiter in self._limiters)

    def forget(self, key: K) -> None:
        for limiter in self._limiters:
            limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return max(limiter.num_requeues(key) for limiter in self._limiters)


def default_controller_rate_limiter(clock: Clock) -> RateLimiter[Hashable]:
    """client-go's DefaultControllerRateLimiter: per-key exponential backoff from
    5 ms to 1000 s, and no more than 10 retries a second overall (burst 100)."""
    return MaxOfRateLimiter[Hashable](
        ItemExponentialFailureRateLimiter(base=0.005, max_delay=1000.0),
        BucketRateLimiter(qps=10.0, burst=100, clock=clock),
    )
