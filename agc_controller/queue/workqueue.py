"""The work queue between event handlers and workers (client-go's
rate-limiting delaying work queue, for asyncio).

A key names a unit of work (the controller uses small frozen attrs objects);
the worker rebuilds the desired state for it from the cache, so adding a key
that is already pending coalesces into one run.

Invariants (as client-go's `workqueue.Typed`):
- every key in the FIFO is in `dirty` and not in `processing`, and appears once;
- a key is handed to at most one worker at a time: while it is processing, an
  `add` only marks it dirty, and `done` puts it back in the FIFO;
- a failed key is never dropped: the worker calls `add_rate_limited`, which
  waits per-key backoff (and a global bucket) and then adds it again;
- after `shutdown`, adds are ignored, but keys already in the FIFO (and dirty
  keys re-queued by `done`) are still handed out; `get` raises `ShutDown` only
  once the FIFO is empty. Keys waiting in `add_after` are dropped.

Worker loop:

    while True:
        key = await queue.get()          # raises ShutDown when finished
        try:
            await reconcile(key)
        except Exception:
            queue.add_rate_limited(key)
        else:
            queue.forget(key)
        finally:
            queue.done(key)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from agc_controller.core.clock import Clock
from agc_controller.queue.delay import DelayHeap
from agc_controller.queue.metrics import NoopQueueMetrics, QueueMetrics
from agc_controller.queue.ratelimit import RateLimiter, default_controller_rate_limiter

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down and has nothing left to hand out."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        *,
        clock: Clock,
        rate_limiter: RateLimiter[K] | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        self._clock = clock
        self._rate_limiter: RateLimiter[K] = rate_limiter or default_controller_rate_limiter(clock)
        self._metrics: QueueMetrics = metrics or NoopQueueMetrics()
        # keys ready for a worker, in order; each is in `_dirty` and not in `_processing`
        self._queue: deque[K] = deque()
        # keys that need processing: everything in `_queue`, plus processing keys
        # that were added again while a worker held them
        self._dirty: set[K] = set()
        # keys a worker holds between `get` and `done`; never handed out twice
        self._processing: set[K] = set()
        # set exactly when `_processing` is empty; what a draining shutdown waits on
        self._idle = asyncio.Event()
        self._idle.set()
        # getters parked on an empty queue; each push wakes (at most) one
        self._getters: deque[asyncio.Future[None]] = deque()
        # once True, never False again: adds are ignored, getters finish the FIFO
        self._shutting_down = False
        # keys parked by `add_after`, and the one task that moves them to the FIFO
        self._waiting: DelayHeap[K] = DelayHeap()
        self._waiting_changed = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        # for metrics only: when a key became dirty / when a worker took it
        self._dirty_since: dict[K, float] = {}
        self._processing_since: dict[K, float] = {}

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def len(self) -> int:
        """Keys waiting for a worker (not counting processing or delayed keys)."""
        return len(self._queue)

    def add(self, key: K) -> None:
        """Mark `key` as needing work. A no-op if it is already pending; if a
        worker holds it, it is queued again when that worker calls `done`."""
        if self._shutting_down or key in self._dirty:
            return
        self._metrics.on_add()
        self._dirty.add(key)
        self._dirty_since[key] = self._clock.monotonic()
        if key not in self._processing:
            self._push(key)

    async def get(self) -> K:
        """Wait for a key and take it; the caller must call `done(key)` later."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # woken for a key but cancelled before taking it: pass the key on
                    self._wake_one_getter()
                elif waiter in self._getters:
                    self._getters.remove(waiter)
                raise
        key = self._queue.popleft()
        self._metrics.set_depth(len(self._queue))
        now = self._clock.monotonic()
        self._metrics.observe_queue_latency(now - self._dirty_since.pop(key, now))
        self._processing_since[key] = now
        self._dirty.discard(key)
        self._processing.add(key)
        self._idle.clear()
        return key

    def done(self, key: K) -> None:
        """Release `key`; if it was added while held, it goes back in the queue."""
        started = self._processing_since.pop(key, None)
        if started is not None:
            self._metrics.observe_work_duration(self._clock.monotonic() - started)
        self._processing.discard(key)
        if key in self._dirty:
            self._push(key)
        if not self._processing:
            self._idle.set()

    def add_after(self, key: K, delay: float) -> None:
        """Add `key` once `delay` seconds have passed on the clock. If it already
        waits, the earlier of the two times wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        self._waiting.push(key, self._clock.monotonic() + delay)
        self._waiting_changed.set()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(
                self._add_when_ready(), name="workqueue-delay"
            )

    def add_rate_limited(self, key: K) -> None:
        """Add `key` after the delay the rate limiter gives for another failure."""
        if self._shutting_down:
            return
        self._metrics.on_retry()
        self.add_after(key, self._rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """Clear `key`'s failure history (call it when the key succeeded)."""
        self._rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self._rate_limiter.num_requeues(key)

    def shutdown(self) -> None:
        """Stop accepting keys and wake every getter; delayed keys are dropped."""
        self._shutting_down = True
        self._waiting.clear()
        if self._timer is not None:
            self._timer.cancel()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def shutdown_with_drain(self) -> None:
        """`shutdown`, then wait until no worker holds a key. Cancel to stop waiting."""
        self.shutdown()
        # `_idle` may be set for an instant while `done` re-queues a dirty key
        # that a worker takes right away: look again after every wake-up
        while self._processing:
            await self._idle.wait()

    def _push(self, key: K) -> None:
        self._queue.append(key)
        self._metrics.set_depth(len(self._queue))
        self._wake_one_getter()

    def _wake_one_getter(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _add_when_ready(self) -> None:
        """Eternal (until shutdown): move keys whose time has come into the queue."""
        while True:
            for key in self._waiting.pop_ready(self._clock.monotonic()):
                self.add(key)
            self._waiting_changed.clear()
            next_ready_at = self._waiting.next_ready_at()
            if next_ready_at is None:
                await self._waiting_changed.wait()
            else:
                await self._sleep_unless_changed(next_ready_at - self._clock.monotonic())

    async def _sleep_unless_changed(self, seconds: float) -> None:
        """Sleep on the injected clock, cut short when a new key starts waiting
        (it may be due earlier than the one being slept for)."""
        sleep = asyncio.ensure_future(self._clock.sleep(seconds))
        changed = asyncio.ensure_future(self._waiting_changed.wait())
        try:
            await asyncio.wait({sleep, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            changed.cancel()
