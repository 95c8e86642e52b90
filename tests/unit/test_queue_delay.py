"""DelayHeap: earliest time first, one wait per key, the earlier time wins."""

from __future__ import annotations

from agc_controller.queue.delay import DelayHeap


def test_pops_ready_keys_in_time_order() -> None:
    heap = DelayHeap[str]()
    heap.push("c", 30.0)
    heap.push("a", 10.0)
    heap.push("b", 20.0)
    assert heap.pop_ready(5.0) == []
    assert heap.pop_ready(20.0) == ["a", "b"]
    assert heap.next_ready_at() == 30.0
    assert len(heap) == 1


def test_equal_times_pop_in_push_order() -> None:
    heap = DelayHeap[int]()
    for key in [3, 1, 2]:
        heap.push(key, 1.0)
    assert heap.pop_ready(1.0) == [3, 1, 2]


def test_earlier_push_supersedes_and_later_push_is_ignored() -> None:
    heap = DelayHeap[str]()
    heap.push("a", 50.0)
    heap.push("a", 10.0)
    heap.push("a", 30.0)
    assert len(heap) == 1
    assert heap.next_ready_at() == 10.0
    assert heap.pop_ready(100.0) == ["a"], "the superseded entries must not surface"
    assert heap.next_ready_at() is None


def test_key_can_wait_again_after_it_fired() -> None:
    heap = DelayHeap[str]()
    heap.push("a", 50.0)
    heap.push("a", 10.0)
    assert heap.pop_ready(10.0) == ["a"]
    heap.push("a", 60.0)
    assert heap.pop_ready(55.0) == [], "the stale 50 s entry belongs to the old wait"
    assert heap.pop_ready(60.0) == ["a"]


def test_clear() -> None:
    heap = DelayHeap[str]()
    heap.push("a", 1.0)
    heap.clear()
    assert len(heap) == 0
    assert heap.pop_ready(2.0) == []
