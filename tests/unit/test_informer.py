"""Informer against a scripted ListWatcher and a fake clock.

The fake ListWatcher serves scripted LIST pages and watch streams in order;
when the informer asks for more than was scripted, the call parks forever and
`idle` is set: everything scripted has been processed, the test may assert.
The fake clock records sleeps and returns at once, so no test waits for time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import attrs
import pytest
from structlog.testing import capture_logs

from agc_controller.core.resources import CONFIG_MAP
from agc_controller.informers import (
    ApiStatusError,
    Informer,
    ListPage,
    ResourceExpired,
    Store,
    drop_managed_fields,
    object_key,
)

Obj = dict[str, Any]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@attrs.frozen
class Advance:
    """A watch script step: time passes on the fake clock."""

    seconds: float


WatchStep = Obj | Exception | Advance


class FakeListWatcher:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        # each list_page call takes the next: a page, or an exception to raise
        self.pages: deque[ListPage | Exception] = deque()
        # each watch call takes the next: a script of steps, or an exception raised on open
        self.watches: deque[list[WatchStep] | Exception] = deque()
        self.list_calls: list[str | None] = []  # continue tokens asked for
        self.watch_calls: list[tuple[str, int]] = []  # (resourceVersion, timeoutSeconds)
        self.idle = asyncio.Event()

    def add_list(self, *pages: ListPage | Exception) -> None:
        self.pages.extend(pages)

    def add_watch(self, *scripts: list[WatchStep] | Exception) -> None:
        self.watches.extend(scripts)

    async def list_page(self, continue_token: str | None) -> ListPage:
        self.list_calls.append(continue_token)
        if not self.pages:
            await self._park()
        page = self.pages.popleft()
        if isinstance(page, Exception):
            raise page
        return page

    async def watch(
        self, resource_version: str, *, timeout_seconds: int
    ) -> AsyncGenerator[Obj, None]:
        self.watch_calls.append((resource_version, timeout_seconds))
        if not self.watches:
            await self._park()
        script = self.watches.popleft()
        if isinstance(script, Exception):
            raise script
        for step in script:
            if isinstance(step, Exception):
                raise step
            if isinstance(step, Advance):
                self.clock.now += step.seconds
                continue
            yield step

    @property
    def watched_from(self) -> list[str]:
        return [rv for rv, _ in self.watch_calls]

    async def _park(self) -> None:
        self.idle.set()
        await asyncio.Event().wait()


class Recorder:
    """Records every notification as (event, key, resourceVersion, uid)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def _record(self, event: str, obj: Obj) -> None:
        meta = obj["metadata"]
        self.events.append((event, object_key(obj), meta["resourceVersion"], meta["uid"]))

    def on_add(self, obj: Obj) -> None:
        self._record("add", obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        assert object_key(old) == object_key(new)
        self._record("update", new)

    def on_delete(self, obj: Obj) -> None:
        self._record("delete", obj)


def cm(name: str, rv: int, *, uid: str | None = None, **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid or f"uid-{name}",
            "resourceVersion": str(rv),
        },
        "data": data,
    }


def page(rv: int, *items: Obj, continue_token: str | None = None) -> ListPage:
    return ListPage(items=list(items), resource_version=str(rv), continue_token=continue_token)


def added(obj: Obj) -> Obj:
    return {"type": "ADDED", "object": obj}


def modified(obj: Obj) -> Obj:
    return {"type": "MODIFIED", "object": obj}


def deleted(obj: Obj) -> Obj:
    return {"type": "DELETED", "object": obj}


def bookmark(rv: int) -> Obj:
    return {
        "type": "BOOKMARK",
        "object": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"resourceVersion": str(rv)},
        },
    }


def error_event(code: int, reason: str) -> Obj:
    status = {"kind": "Status", "status": "Failure", "reason": reason, "code": code}
    return {"type": "ERROR", "object": {**status, "message": f"{reason} (test)"}}


GONE_EVENT = error_event(410, "Expired")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lw(clock: FakeClock) -> FakeListWatcher:
    return FakeListWatcher(clock)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_informer(
    lw: FakeListWatcher, clock: FakeClock, *handlers: Any, **options: Any
) -> Informer:
    informer = Informer(CONFIG_MAP, lw, clock=clock, rng=random.Random(3), **options)
    for handler in handlers:
        informer.add_handler(handler)
    return informer


async def run_until_idle(informer: Informer, lw: FakeListWatcher) -> None:
    """Run the informer until it asks for more than was scripted, then stop it."""
    task = asyncio.create_task(informer.run())
    idle = asyncio.create_task(lw.idle.wait())
    async with asyncio.timeout(5):
        await asyncio.wait({task, idle}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        idle.cancel()
        task.result()  # re-raises what killed it
        pytest.fail("informer.run() returned")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def keys_rvs(store: Store) -> dict[str, str]:
    return {object_key(obj): obj["metadata"]["resourceVersion"] for obj in store.list()}


def stored(informer: Informer, key: str) -> Obj:
    obj = informer.store.get(key)
    assert obj is not None, key
    return obj


async def test_initial_list_adds_each_object_then_syncs(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(page(10, cm("a", 5), cm("b", 7)))
    informer = make_informer(lw, clock, recorder)
    synced_during_handlers: list[bool] = []

    class SyncProbe:
        def on_add(self, obj: Obj) -> None:
            synced_during_handlers.append(informer.has_synced)

        def on_update(self, old: Obj, new: Obj) -> None: ...

        def on_delete(self, obj: Obj) -> None: ...

    informer.add_handler(SyncProbe())
    assert not informer.has_synced

    await run_until_idle(informer, lw)

    assert recorder.events == [("add", "ns/a", "5", "uid-a"), ("add", "ns/b", "7", "uid-b")]
    assert synced_during_handlers == [False, False]  # synced only after the handlers ran
    assert informer.has_synced
    await asyncio.wait_for(informer.wait_synced(), 1)
    assert keys_rvs(informer.store) == {"ns/a": "5", "ns/b": "7"}
    assert lw.watched_from == ["10"]
    assert clock.sleeps == []


async def test_list_follows_continue_tokens_and_watches_from_the_list_rv(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(
        page(30, cm("a", 1), continue_token="c1"),
        page(30, cm("b", 2), continue_token="c2"),
        page(30, cm("c", 3)),
    )
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    assert lw.list_calls == [None, "c1", "c2"]
    assert sorted(informer.store.keys()) == ["ns/a", "ns/b", "ns/c"]
    assert [event for event, *_ in recorder.events] == ["add", "add", "add"]
    assert lw.watched_from == ["30"]


async def test_watch_events_update_store_and_handlers(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(page(10, cm("a", 5)))
    lw.add_watch(
        [
            added(cm("b", 11)),
            modified(cm("a", 12, v="2")),
            deleted(cm("b", 13)),
            added(cm("c", 14)),
        ]
    )
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    assert recorder.events[1:] == [
        ("add", "ns/b", "11", "uid-b"),
        ("update", "ns/a", "12", "uid-a"),
        ("delete", "ns/b", "13", "uid-b"),
        ("add", "ns/c", "14", "uid-c"),
    ]
    assert keys_rvs(informer.store) == {"ns/a": "12", "ns/c": "14"}
    assert stored(informer, "ns/a")["data"] == {"v": "2"}
    # the stream ended normally: resumed from the last event's RV, no relist, no backoff
    assert lw.watched_from == ["10", "14"]
    assert lw.list_calls == [None]
    assert clock.sleeps == []


async def test_repeated_resource_version_is_not_delivered(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(page(10, cm("a", 5)))
    lw.add_watch([modified(cm("a", 5)), added(cm("a", 5)), modified(cm("a", 6))])
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    assert recorder.events == [("add", "ns/a", "5", "uid-a"), ("update", "ns/a", "6", "uid-a")]


async def test_delete_of_unknown_object_is_ignored(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(page(10))
    lw.add_watch([deleted(cm("ghost", 11)), added(cm("a", 12))])
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    assert recorder.events == [("add", "ns/a", "12", "uid-a")]
    assert lw.watched_from == ["10", "12"]


async def test_bookmark_moves_rv_only_and_next_watch_starts_from_it(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(page(10, cm("a", 5)))
    lw.add_watch([bookmark(50)], [bookmark(60), Advance(300)])
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    assert recorder.events == [("add", "ns/a", "5", "uid-a")]
    assert keys_rvs(informer.store) == {"ns/a": "5"}
    assert lw.watched_from == ["10", "50", "60"]
    assert clock.sleeps == []


async def test_each_watch_asks_for_a_timeout_in_range(
    lw: FakeListWatcher, clock: FakeClock
) -> None:
    lw.add_list(page(10))
    lw.add_watch(*[[bookmark(11 + i)] for i in range(20)])
    informer = make_informer(lw, clock)

    await run_until_idle(informer, lw)

    timeouts = [timeout for _, timeout in lw.watch_calls]
    assert len(timeouts) == 21
    assert all(300 <= t <= 600 for t in timeouts)
    assert len(set(timeouts)) > 1  # randomised, not one fixed value


@pytest.mark.parametrize(
    "gone",
    [
        pytest.param(ResourceExpired(410, "Expired", "too old"), id="http-status"),
        pytest.param([GONE_EVENT], id="error-event"),
    ],
)
async def test_gone_relists_and_synthesizes_deltas(
    lw: FakeListWatcher,
    clock: FakeClock,
    recorder: Recorder,
    gone: Exception | list[WatchStep],
) -> None:
    lw.add_list(page(10, cm("same", 1), cm("changed", 2), cm("vanished", 3), cm("recreated", 4)))
    lw.add_watch([modified(cm("changed", 11))], gone)
    lw.add_list(
        page(
            20,
            cm("same", 1),
            cm("changed", 19),
            cm("recreated", 18, uid="uid-recreated-2"),
            cm("new", 17),
        )
    )
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    after_relist = recorder.events[5:]  # after 4 adds and 1 update
    assert sorted(after_relist) == sorted(
        [
            ("delete", "ns/vanished", "3", "uid-vanished"),
            ("add", "ns/new", "17", "uid-new"),
            ("update", "ns/changed", "19", "uid-changed"),
            ("delete", "ns/recreated", "4", "uid-recreated"),
            ("add", "ns/recreated", "18", "uid-recreated-2"),
        ]
    )
    # a re-create is a delete followed by an add, in that order
    recreated = [e for e in after_relist if e[1] == "ns/recreated"]
    assert [e[0] for e in recreated] == ["delete", "add"]
    assert keys_rvs(informer.store) == {
        "ns/same": "1",
        "ns/changed": "19",
        "ns/recreated": "18",
        "ns/new": "17",
    }
    assert lw.list_calls == [None, None]
    assert lw.watched_from == ["10", "11", "20"]
    assert clock.sleeps == []  # the watch had made progress: relist at once


async def test_gone_for_the_rv_a_list_just_returned_backs_off_before_relisting(
    lw: FakeListWatcher, clock: FakeClock
) -> None:
    lw.add_list(page(10), page(10), page(10))
    lw.add_watch([GONE_EVENT], [GONE_EVENT])
    informer = make_informer(lw, clock)

    with capture_logs() as logs:
        await run_until_idle(informer, lw)

    assert lw.list_calls == [None, None, None]
    assert len(clock.sleeps) == 2
    assert 0.64 <= clock.sleeps[0] <= 0.8
    # once is a real API server's new watch cache (info), twice in a row a loop
    levels = [e["log_level"] for e in logs if e["event"] == "informer_relist_loop"]
    assert levels == ["info", "warning"]


async def test_a_warming_watch_cache_after_a_list_is_info_once_then_a_warning(
    lw: FakeListWatcher, clock: FakeClock
) -> None:
    warming = error_event(429, "TooManyRequests")
    lw.add_list(page(10))
    lw.add_watch([warming], [warming], [warming])
    informer = make_informer(lw, clock)

    with capture_logs() as logs:
        await run_until_idle(informer, lw)

    # the watch is retried from the list's RV, with backoff
    assert lw.watched_from[:3] == ["10", "10", "10"]
    levels = [e["log_level"] for e in logs if e["event"] == "informer_watch_error"]
    assert levels[:3] == ["info", "warning", "warning"]


async def test_errors_back_off_with_growing_jittered_delays_then_reset(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(page(10))
    failures: list[list[WatchStep] | Exception] = [
        ConnectionRefusedError("connection refused"),
        ApiStatusError(500, "InternalError", "etcd leader changed"),
        ApiStatusError(429, "TooManyRequests", "slow down"),
        TimeoutError(),
        aiohttp.ClientPayloadError("connection reset mid-stream"),
        [error_event(500, "InternalError")],
        [],  # closed at once without events
        ApiStatusError(503, "ServiceUnavailable", "apiserver shutting down"),
    ]
    lw.add_watch(*failures)
    lw.add_watch([added(cm("a", 11)), RuntimeError("stream broke after progress")])
    lw.add_watch(ApiStatusError(500, "InternalError", "again"))
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    # progress (the event) resets the backoff: the 9th failure starts from 0.8 again
    nominal = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 0.8, 1.6]
    assert len(clock.sleeps) == len(nominal)
    for delay, step in zip(clock.sleeps, nominal, strict=True):
        assert 0.8 * step <= delay <= step, (delay, step)
    assert clock.sleeps[:8] != nominal[:8]  # jittered
    # every retry resumed the watch from the last RV; nothing forced a relist
    assert lw.list_calls == [None]
    assert lw.watched_from == ["10"] * 9 + ["11", "11"]
    assert recorder.events == [("add", "ns/a", "11", "uid-a")]


async def test_list_error_backs_off_then_lists_again(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(
        ApiStatusError(503, "ServiceUnavailable", "starting"),
        page(10, cm("a", 1), continue_token="c1"),
        ResourceExpired(410, "Expired", "continue token expired"),
        page(12, cm("a", 1), continue_token="c2"),
        page(12, cm("b", 2)),
    )
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    # a failed page restarts the whole LIST; nothing is stored from a partial one
    assert lw.list_calls == [None, None, "c1", None, "c2"]
    assert len(clock.sleeps) == 2
    assert recorder.events == [("add", "ns/a", "1", "uid-a"), ("add", "ns/b", "2", "uid-b")]
    assert informer.has_synced
    assert lw.watched_from == ["12"]


@pytest.mark.parametrize(
    ("script", "backs_off"),
    [
        pytest.param([], True, id="closed-at-once"),
        pytest.param([Advance(0.5)], True, id="closed-after-half-a-second"),
        pytest.param([Advance(300)], False, id="closed-after-its-timeout"),
    ],
)
async def test_empty_watch_backs_off_only_when_short(
    lw: FakeListWatcher, clock: FakeClock, script: list[WatchStep], backs_off: bool
) -> None:
    lw.add_list(page(10))
    lw.add_watch(script)
    informer = make_informer(lw, clock)

    await run_until_idle(informer, lw)

    assert len(clock.sleeps) == (1 if backs_off else 0)
    assert lw.watched_from == ["10", "10"]


async def test_handlers_see_the_new_state_in_store_and_indexes(
    lw: FakeListWatcher, clock: FakeClock
) -> None:
    lw.add_list(page(10, cm("a", 5, owner="x")))
    lw.add_watch(
        [modified(cm("a", 11, owner="y")), added(cm("b", 12, owner="y")), deleted(cm("a", 13))]
    )
    lw.add_list(page(20, cm("b", 12, owner="y"), cm("c", 19, owner="x")))
    lw.add_watch([GONE_EVENT])
    informer = make_informer(lw, clock)
    informer.store.add_indexer("owner", lambda obj: [obj["data"]["owner"]])
    seen: list[tuple[str, str, bool, list[str]]] = []

    class StoreProbe:
        def _probe(self, event: str, obj: Obj) -> None:
            key = object_key(obj)
            stored = informer.store.get(key)
            owner = obj["data"].get("owner", "y")
            owners = [object_key(o) for o in informer.store.by_index("owner", owner)]
            seen.append((event, key, stored is obj, owners))

        def on_add(self, obj: Obj) -> None:
            self._probe("add", obj)

        def on_update(self, old: Obj, new: Obj) -> None:
            self._probe("update", new)

        def on_delete(self, obj: Obj) -> None:
            assert informer.store.get(object_key(obj)) is None
            self._probe("delete", obj)

    informer.add_handler(StoreProbe())

    await run_until_idle(informer, lw)

    # lw: list, watch (3 events), watch (410), relist; relist deltas: add c (a is gone already)
    assert seen == [
        ("add", "ns/a", True, ["ns/a"]),
        ("update", "ns/a", True, ["ns/a"]),
        ("add", "ns/b", True, ["ns/a", "ns/b"]),
        ("delete", "ns/a", False, ["ns/b"]),
        ("add", "ns/c", True, ["ns/c"]),
    ]


async def test_uid_change_on_watch_is_delete_then_add(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(page(10, cm("a", 5)))
    lw.add_watch([modified(cm("a", 11, uid="uid-a-2"))])
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    assert recorder.events == [
        ("add", "ns/a", "5", "uid-a"),
        ("delete", "ns/a", "5", "uid-a"),
        ("add", "ns/a", "11", "uid-a-2"),
    ]
    assert stored(informer, "ns/a")["metadata"]["uid"] == "uid-a-2"


async def test_failing_handler_does_not_stop_the_informer_or_other_handlers(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    class Broken:
        def on_add(self, obj: Obj) -> None:
            raise RuntimeError("bug in a handler")

        def on_update(self, old: Obj, new: Obj) -> None:
            raise KeyError("bug in a handler")

        def on_delete(self, obj: Obj) -> None:
            raise ValueError("bug in a handler")

    lw.add_list(page(10, cm("a", 5)))
    lw.add_watch([modified(cm("a", 11)), deleted(cm("a", 12))], [added(cm("b", 13))])
    informer = make_informer(lw, clock, Broken(), recorder)

    await run_until_idle(informer, lw)

    assert [event for event, *_ in recorder.events] == ["add", "update", "delete", "add"]
    assert informer.has_synced
    assert lw.watched_from == ["10", "12", "13"]
    assert clock.sleeps == []


async def test_transform_applies_before_storing_and_notifying(
    lw: FakeListWatcher, clock: FakeClock
) -> None:
    def heavy(name: str, rv: int) -> Obj:
        obj = cm(name, rv)
        obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]
        return obj

    lw.add_list(page(10, heavy("a", 5)))
    lw.add_watch([added(heavy("b", 11))])
    notified: list[Obj] = []

    class Collect:
        def on_add(self, obj: Obj) -> None:
            notified.append(obj)

        def on_update(self, old: Obj, new: Obj) -> None: ...

        def on_delete(self, obj: Obj) -> None: ...

    informer = make_informer(lw, clock, Collect(), transform=drop_managed_fields)

    await run_until_idle(informer, lw)

    assert [object_key(o) for o in notified] == ["ns/a", "ns/b"]
    assert all("managedFields" not in o["metadata"] for o in notified)
    assert all("managedFields" not in o["metadata"] for o in informer.store.list())
    assert lw.watched_from == ["10", "11"]


async def test_unknown_event_type_is_skipped(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    lw.add_list(page(10))
    lw.add_watch([{"type": "SURPRISE", "object": cm("x", 99)}, added(cm("a", 11))])
    informer = make_informer(lw, clock, recorder)

    await run_until_idle(informer, lw)

    assert recorder.events == [("add", "ns/a", "11", "uid-a")]
    assert lw.watched_from == ["10", "11"]


async def test_handlers_cannot_be_added_once_running(
    lw: FakeListWatcher, clock: FakeClock, recorder: Recorder
) -> None:
    informer = make_informer(lw, clock)
    task = asyncio.create_task(informer.run())
    async with asyncio.timeout(5):
        await lw.idle.wait()
    try:
        with pytest.raises(RuntimeError, match="before run"):
            informer.add_handler(recorder)
        with pytest.raises(RuntimeError, match="already running"):
            await informer.run()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
