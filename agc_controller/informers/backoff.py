"""Jittered exponential backoff for an informer's list/watch retries.

Invariants: the n-th delay since the last `reset()` (n = 0, 1, ...) lies in
[(1 - jitter) * d, d] with d = min(initial * factor**n, maximum): never above
`maximum`, never more than `jitter` below the nominal step. The jitter spreads
the retries of the many informers that lose the apiserver at the same moment,
so they do not come back in lockstep.
"""

from __future__ import annotations

import random

INITIAL_DELAY = 0.8  # seconds; the first retry is quick, a blip should cost little
MAX_DELAY = 30.0  # seconds; an apiserver outage is noticed within this after it ends
FACTOR = 2.0
JITTER = 0.2  # fraction by which a delay may fall short of its nominal step


class Backoff:
    def __init__(
        self,
        *,
        initial: float = INITIAL_DELAY,
        maximum: float = MAX_DELAY,
        factor: float = FACTOR,
        jitter: float = JITTER,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial <= maximum or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial <= maximum, factor >= 1, 0 <= jitter < 1")
        self._initial = initial
        self._maximum = maximum
        self._factor = factor
        self._jitter = jitter
        self._rng = rng or random.Random()
        # nominal (unjittered) delay of the next failure; initial after a reset
        self._step = initial

    def next_delay(self) -> float:
        """The delay before the next retry; each call grows the following one."""
        step = self._step
        self._step = min(step * self._factor, self._maximum)
        return step * (1 - self._jitter * self._rng.random())

    def reset(self) -> None:
        """Called after a success: the next failure starts from `initial` again."""
        self._step = self._initial
