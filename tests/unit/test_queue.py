"""Work queue: client-go's invariants (dedupe, one worker per key, re-queue of
keys dirtied while processing, shutdown and drain) and the delaying and
rate-limited adds, on a fake clock that only moves when a test moves it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Hashable

import pytest

from agc_controller.queue import ItemExponentialFailureRateLimiter, ShutDown, WorkQueue

# upper bound on waiting for something that must happen without the clock moving;
# hitting it means the queue failed to deliver, not that it was slow
DELIVERY = 2.0


class FakeClock:
    """`sleep` parks until `advance` moves `now` past the sleeper's deadline."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        entry = (self.now + seconds, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for due, future in list(self._sleepers):
            if due <= self.now and not future.done():
                future.set_result(None)
        await settle()


async def settle() -> None:
    """Let every ready task run until the loop goes quiet."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def queue(clock: FakeClock) -> AsyncIterator[WorkQueue[str]]:
    q = WorkQueue[str](clock=clock)
    yield q
    q.shutdown()


def assert_invariants(q: WorkQueue[str]) -> None:
    """White-box: every queued key is dirty, not processing, and queued once."""
    queued = list(q._queue)
    assert len(queued) == len(set(queued))
    assert set(queued) <= q._dirty
    assert not set(queued) & q._processing


async def test_add_dedupes_pending_keys(queue: WorkQueue[str]) -> None:
    for key in ["a", "b", "a", "a", "b", "c"]:
        queue.add(key)
    assert queue.len() == 3
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_get_waits_for_an_add(queue: WorkQueue[str]) -> None:
    getter = asyncio.create_task(queue.get())
    await settle()
    assert not getter.done()
    queue.add("a")
    assert await asyncio.wait_for(getter, DELIVERY) == "a"


async def test_key_added_while_processing_waits_for_done(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("a")
    assert queue.len() == 0, "a processing key must not be handed out again"
    second = asyncio.create_task(queue.get())
    await settle()
    assert not second.done()
    queue.done("a")
    assert await asyncio.wait_for(second, DELIVERY) == "a"
    queue.done("a")
    assert queue.len() == 0


async def test_done_without_new_add_does_not_requeue(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.done(await queue.get())
    assert queue.len() == 0


@pytest.mark.parametrize("seed", [1, 7, 42])
async def test_one_key_never_reaches_two_workers_and_no_add_is_lost(
    queue: WorkQueue[str], seed: int
) -> None:
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(6)]
    holders: dict[str, int] = {}
    overlaps: list[str] = []
    tick = 0
    last_add: dict[str, int] = {}
    last_start: dict[str, int] = {}

    async def worker(worker_id: int) -> None:
        nonlocal tick
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            tick += 1
            last_start[key] = tick
            if key in holders:
                overlaps.append(key)
            holders[key] = worker_id
            for _ in range(rng.randint(0, 4)):
                await asyncio.sleep(0)
            del holders[key]
            queue.done(key)

    workers = [asyncio.create_task(worker(i)) for i in range(16)]
    for _ in range(3000):
        key = rng.choice(keys)
        tick += 1
        last_add[key] = tick
        queue.add(key)
        assert_invariants(queue)
        if rng.random() < 0.5:
            await asyncio.sleep(0)
    await queue.shutdown_with_drain()
    await asyncio.wait_for(asyncio.gather(*workers), DELIVERY)

    assert overlaps == []
    # level-triggered: every key was processed again after its last add
    assert all(last_start[key] > last_add[key] for key in last_add)


async def test_cancelled_getter_passes_its_wakeup_on(queue: WorkQueue[str]) -> None:
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await settle()
    queue.add("a")  # wakes `first`, which is cancelled before it can take the key
    first.cancel()
    assert await asyncio.wait_for(second, DELIVERY) == "a"
    assert first.cancelled()


async def test_shutdown_unblocks_every_getter(queue: WorkQueue[str]) -> None:
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await settle()
    queue.shutdown()
    results = await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), DELIVERY)
    assert all(isinstance(result, ShutDown) for result in results)


async def test_shutdown_hands_out_queued_keys_then_raises(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.shutdown()
    queue.add("b")
    assert queue.len() == 1, "adds after shutdown are ignored"
    assert await queue.get() == "a"
    with pytest.raises(ShutDown):
        await queue.get()


async def test_drain_waits_for_in_flight_work(queue: WorkQueue[str]) -> None:
    queue.add("a")
    queue.add("b")
    a = await queue.get()
    b = await queue.get()
    drain = asyncio.create_task(queue.shutdown_with_drain())
    await settle()
    queue.done(a)
    await settle()
    assert not drain.done(), "b is still being processed"
    queue.done(b)
    await asyncio.wait_for(drain, DELIVERY)


async def test_drain_returns_at_once_when_idle(queue: WorkQueue[str]) -> None:
    await asyncio.wait_for(queue.shutdown_with_drain(), DELIVERY)
    assert queue.shutting_down


async def test_add_after_releases_keys_in_time_order(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add_after("b", 2.0)
    queue.add_after("a", 1.0)
    queue.add_after("c", 3.0)
    await clock.advance(0.5)
    assert queue.len() == 0
    await clock.advance(0.5)
    assert queue.len() == 1
    await clock.advance(2.0)
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_add_after_earlier_time_wins(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add_after("a", 5.0)
    queue.add_after("a", 1.0)
    await clock.advance(1.0)
    assert await asyncio.wait_for(queue.get(), DELIVERY) == "a"
    queue.done("a")
    await clock.advance(10.0)
    assert queue.len() == 0, "the superseded 5 s entry must not fire"


async def test_add_after_later_time_does_not_postpone(
    queue: WorkQueue[str], clock: FakeClock
) -> None:
    queue.add_after("a", 1.0)
    queue.add_after("a", 5.0)
    await clock.advance(1.0)
    assert queue.len() == 1


async def test_add_after_without_delay_adds_now(queue: WorkQueue[str]) -> None:
    queue.add_after("a", 0.0)
    queue.add_after("b", -1.0)
    assert queue.len() == 2


async def test_shutdown_drops_delayed_keys(queue: WorkQueue[str], clock: FakeClock) -> None:
    queue.add_after("a", 1.0)
    queue.shutdown()
    await clock.advance(2.0)
    with pytest.raises(ShutDown):
        await queue.get()


async def test_add_rate_limited_backs_off_until_forget(clock: FakeClock) -> None:
    q = WorkQueue[str](
        clock=clock, rate_limiter=ItemExponentialFailureRateLimiter(base=1.0, max_delay=60.0)
    )
    delays = []
    for _ in range(3):
        q.add_rate_limited("a")
        delays.append(await _seconds_until_queued(q, clock))
        q.done(await q.get())
    assert delays == [1.0, 2.0, 4.0]
    assert q.num_requeues("a") == 3
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.add_rate_limited("a")
    assert await _seconds_until_queued(q, clock) == 1.0
    q.shutdown()


async def _seconds_until_queued(q: WorkQueue[str], clock: FakeClock) -> float:
    waited = 0.0
    while q.len() == 0:
        await clock.advance(0.5)
        waited += 0.5
        assert waited < 100, "a rate-limited key was dropped"
    return waited


class RecordingMetrics:
    def __init__(self) -> None:
        self.adds = 0
        self.retries = 0
        self.depths: list[int] = []
        self.latencies: list[float] = []
        self.durations: list[float] = []

    def on_add(self) -> None:
        self.adds += 1

    def set_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def on_retry(self) -> None:
        self.retries += 1

    def observe_queue_latency(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def observe_work_duration(self, seconds: float) -> None:
        self.durations.append(seconds)


async def test_metrics_hooks(clock: FakeClock) -> None:
    metrics = RecordingMetrics()
    q = WorkQueue[Hashable](clock=clock, metrics=metrics)
    q.add("a")
    q.add("a")
    q.add("b")
    clock.now += 3.0
    key = await q.get()
    clock.now += 2.0
    q.done(key)
    q.add_rate_limited(key)
    q.shutdown()
    assert metrics.adds == 2, "a deduplicated add is not an add"
    assert metrics.depths == [1, 2, 1]
    assert metrics.latencies == [3.0]
    assert metrics.durations == [2.0]
    assert metrics.retries == 1
