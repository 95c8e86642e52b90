"""Keys waiting until a point in time, earliest first: the delaying half of the
work queue, as a plain data structure (no clock, no tasks).

Invariants:
- a key waits at most once; pushing a key that already waits keeps the earlier
  of the two times (client-go's delaying queue: an earlier AddAfter wins);
- `pop_ready(now)` returns each ready key once, earliest time first.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DelayHeap(Generic[K]):
    def __init__(self) -> None:
        # (ready_at, seq, key); an entry is live only while `_live[key]` names its
        # (ready_at, seq): superseded entries stay in the heap and are skipped
        # when they surface, which is cheaper than removing from the middle
        self._heap: list[tuple[float, int, K]] = []
        # the one live (ready_at, seq) per waiting key
        self._live: dict[K, tuple[float, int]] = {}
        # tie-breaker: equal times pop in push order, and keys are never compared
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def push(self, key: K, ready_at: float) -> None:
        """Make `key` wait until `ready_at`, unless it already waits for an earlier time."""
        current = self._live.get(key)
        if current is not None and current[0] <= ready_at:
            return
        seq = next(self._seq)
        self._live[key] = (ready_at, seq)
        heapq.heappush(self._heap, (ready_at, seq, key))

    def pop_ready(self, now: float) -> list[K]:
        """Remove and return the keys whose time is at or before `now`."""
        ready: list[K] = []
        while (head := self._live_head()) is not None and head[0] <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._live[key]
            ready.append(key)
        return ready

    def next_ready_at(self) -> float | None:
        """The earliest time a key waits for, or None when nothing waits."""
        head = self._live_head()
        return None if head is None else head[0]

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def _live_head(self) -> tuple[float, int, K] | None:
        while self._heap:
            ready_at, seq, key = self._heap[0]
            if self._live.get(key) == (ready_at, seq):
                return self._heap[0]
            heapq.heappop(self._heap)
        return None
