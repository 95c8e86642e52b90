"""The long-lived heap is set aside from the cyclic GC once, then again only when
the cache has grown by a quarter."""

from __future__ import annotations

import gc

from agc_controller.manager import FULL_PASS_EVERY, LongLivedHeap


def test_set_aside_again_only_after_a_quarter_more() -> None:
    heap = LongLivedHeap()
    assert not heap.set_aside_if_grown(10_000), "never before the first pass set it aside"
    frozen = gc.get_freeze_count()
    threshold = gc.get_threshold()
    try:
        heap.set_aside(1_000)
        assert gc.get_freeze_count() >= frozen
        # full passes come a tenth as often while the bulk is set aside
        assert gc.get_threshold() == (*threshold[:2], FULL_PASS_EVERY)
    finally:
        gc.set_threshold(*threshold)
    assert not heap.set_aside_if_grown(1_300)  # 1,000 * 1.25 + 100 = 1,350
    assert heap.set_aside_if_grown(1_400)
    assert heap.set_aside_at == 1_400
    assert not heap.set_aside_if_grown(1_400)
