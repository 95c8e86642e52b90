"""An informer: keeps a Store in step with the apiserver and tells handlers what changed.

The cycle (client-go's reflector, kept):
1. LIST (all pages), transform each object, atomically `Store.replace` the
   contents (vanished keys become deletes), remember the list's resourceVersion.
2. WATCH from the last resourceVersion seen, with bookmarks and a randomised
   timeout. ADDED/MODIFIED/DELETED and BOOKMARK advance the resourceVersion.
   A watch that ends normally is resumed from it: nothing is lost or replayed.
3. 410 Gone (the HTTP status of the watch, or an ERROR event with code 410):
   that resourceVersion is compacted away; go back to 1.
4. Any other error (connection refused, 5xx, 429, timeouts): sleep a jittered,
   growing backoff (reset by progress), then resume: WATCH from the last
   resourceVersion if there is one, else LIST.

Invariants:
- The store (and its indexes) is updated BEFORE handlers are called, so a
  handler that reads the store sees the object it is told about.
- Handlers are called in event order, synchronously, and must not do I/O; an
  exception in one is logged and skipped, never stops the informer.
- An update that changes `metadata.uid` is a delete followed by a re-create and
  is delivered as `on_delete(old)` then `on_add(new)`. An update with the stored
  resourceVersion (same uid) changes nothing and is not delivered.
- `has_synced` turns True once, after the first full LIST is stored and its
  handler calls have returned.
- Two guards against hot loops: a watch that ends within SHORT_WATCH seconds
  having delivered nothing counts as an error; and a 410 for the very
  resourceVersion a LIST just returned backs off before relisting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from typing import Protocol

import aiohttp
import structlog

from agc_controller.core.clock import Clock
from agc_controller.core.keys import object_key
from agc_controller.core.resources import Resource
from agc_controller.informers.backoff import Backoff
from agc_controller.informers.reflector import (
    ApiStatusError,
    ListWatcher,
    ResourceExpired,
    WatchEvent,
)
from agc_controller.informers.store import KubeObject, Store
from agc_controller.informers.transforms import Transform

# Server-side watch timeout range (seconds). Randomised so that the informers of
# many controllers do not all re-watch at the same moment.
WATCH_TIMEOUT_SECONDS = (300, 600)
# A watch that closes sooner than this without an event is treated as an error,
# so that a server or proxy that closes every watch at once is not hammered.
SHORT_WATCH = 1.0


class EventHandler(Protocol):
    """Receives an informer's changes; synchronous and I/O-free (map object -> keys)."""

    def on_add(self, obj: KubeObject) -> None: ...

    def on_update(self, old: KubeObject, new: KubeObject) -> None: ...

    def on_delete(self, obj: KubeObject) -> None: ...


class WatchClosedEarly(Exception):
    """The server closed a watch at once without sending anything."""


# Errors that are part of life with a remote apiserver: logged without a traceback.
_EXPECTED_ERRORS = (
    ApiStatusError,
    WatchClosedEarly,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    json.JSONDecodeError,
)


class Informer:
    """One kind's cache and change feed; `run()` it once as an eternal task."""

    def __init__(
        self,
        resource: Resource,
        list_watcher: ListWatcher,
        *,
        clock: Clock,
        transform: Transform | None = None,
        name: str | None = None,
        watch_timeout_seconds: tuple[int, int] = WATCH_TIMEOUT_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name or resource.plural  # for logs and task names
        self._list_watcher = list_watcher
        self._clock = clock
        self._transform = transform
        self._watch_timeout_seconds = watch_timeout_seconds
        self._rng = rng or random.Random()
        self._backoff = Backoff(rng=self._rng)
        self._log = structlog.get_logger(__name__).bind(kind=resource.kind, informer=self.name)
        # the cache; only this informer mutates it
        self._store = Store()
        # fixed once run() starts, so every handler sees every event from the first
        self._handlers: list[EventHandler] = []
        self._running = False  # set by run(); from then on the handlers are fixed
        # the RV to watch from; None means the store is not (or no longer) current: LIST
        self._resource_version: str | None = None
        # False from a LIST until the first watch event after it; a 410 while False
        # means the list's own RV is gone: a real API server does that once while
        # its watch cache for a just-created resource starts (the LIST came from
        # etcd at an older RV), a misbehaving one again and again
        self._watched_since_list = False
        # 410s in a row, each right after a LIST (reset by a watch event)
        self._expired_after_list = 0
        # 429s in a row on the first watch after a LIST (reset by a watch event): the
        # watch cache of a just-created resource still filling, once; more is a warning
        self._warming_after_list = 0
        # set once, after the first LIST was stored and its handlers ran
        self._synced = asyncio.Event()

    @property
    def store(self) -> Store:
        """The cache; read-only for everyone but this informer (see Store)."""
        return self._store

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        """Return once `has_synced` is True."""
        await self._synced.wait()

    def add_handler(self, handler: EventHandler) -> None:
        """Register `handler`; only before `run()`, so that it misses no event."""
        if self._running:
            raise RuntimeError(f"informer {self.name}: handlers must be added before run()")
        self._handlers.append(handler)

    async def run(self) -> None:
        """List and watch forever; cancel the task to stop."""
        if self._running:
            raise RuntimeError(f"informer {self.name} is already running")
        self._running = True
        while True:
            resource_version = self._resource_version
            listing = resource_version is None
            try:
                if resource_version is None:
                    await self._list()
                else:
                    await self._watch(resource_version)
            except ResourceExpired as error:
                if listing:
                    # the continue token expired mid-LIST: an error like any other
                    await self._back_off("informer_list_error", error)
                    continue
                self._log.info("informer_relist", reason=error.message)
                self._resource_version = None
                if not self._watched_since_list:
                    self._expired_after_list += 1
                    await self._back_off(
                        "informer_relist_loop", error, quiet=self._expired_after_list == 1
                    )
            except Exception as error:
                warming = (
                    not listing
                    and not self._watched_since_list
                    and isinstance(error, ApiStatusError)
                    and error.status == 429
                )
                self._warming_after_list = self._warming_after_list + 1 if warming else 0
                await self._back_off(
                    "informer_list_error" if listing else "informer_watch_error",
                    error,
                    quiet=self._warming_after_list == 1,
                )

    async def _back_off(self, event: str, error: Exception, *, quiet: bool = False) -> None:
        """Wait the next backoff delay, logged as a warning (`quiet`: as info)."""
        delay = self._backoff.next_delay()
        log = self._log.info if quiet else self._log.warning
        log(
            event,
            error=str(error) or type(error).__name__,
            error_type=type(error).__name__,
            delay=round(delay, 3),
            exc_info=not isinstance(error, _EXPECTED_ERRORS),
        )
        await self._clock.sleep(delay)

    async def _list(self) -> None:
        objects: list[KubeObject] = []
        continue_token: str | None = None
        pages = 0
        while True:
            page = await self._list_watcher.list_page(continue_token)
            pages += 1
            objects.extend(self._transformed(obj) for obj in page.items)
            continue_token = page.continue_token
            if continue_token is None:
                break
        deltas = self._store.replace(objects)
        self._resource_version = page.resource_version
        self._watched_since_list = False
        self._backoff.reset()
        self._log.info(
            "informer_listed",
            objects=len(objects),
            pages=pages,
            resource_version=page.resource_version,
            added=len(deltas.added),
            deleted=len(deltas.deleted),
        )
        for obj in deltas.deleted:
            self._notify_delete(obj)
        for obj in deltas.added:
            self._notify_add(obj)
        for old, new in deltas.updated:
            self._notify_upsert(old, new)
        if not self._synced.is_set():
            self._synced.set()
            self._log.info("informer_synced", objects=len(objects))

    async def _watch(self, resource_version: str) -> None:
        timeout = self._rng.randint(*self._watch_timeout_seconds)
        started = self._clock.monotonic()
        events = 0
        stream = self._list_watcher.watch(resource_version, timeout_seconds=timeout)
        async with contextlib.aclosing(stream):
            async for event in stream:
                self._handle_event(event)
                events += 1
                if events == 1:
                    self._backoff.reset()  # the watch works: the next failure is a new one
        duration = self._clock.monotonic() - started
        self._log.debug(
            "informer_watch_ended",
            events=events,
            duration=round(duration, 3),
            resource_version=self._resource_version,
        )
        if events == 0 and duration < SHORT_WATCH:
            raise WatchClosedEarly(f"watch closed after {duration:.3f}s without events")

    def _handle_event(self, event: WatchEvent) -> None:
        event_type = event.get("type")
        raw = event.get("object") or {}
        if event_type == "ERROR":
            raise ApiStatusError.from_status(raw)
        if event_type in ("ADDED", "MODIFIED"):
            self._apply_upsert(self._transformed(raw))
        elif event_type == "DELETED":
            self._apply_delete(self._transformed(raw))
        elif event_type != "BOOKMARK":
            self._log.warning("informer_unknown_event", event_type=event_type)
            return
        # taken from the raw object: a transform must not be able to lose our place
        self._resource_version = str(raw["metadata"]["resourceVersion"])
        self._watched_since_list = True
        self._expired_after_list = 0
        self._warming_after_list = 0

    def _transformed(self, obj: KubeObject) -> KubeObject:
        return self._transform(obj) if self._transform else obj

    def _apply_upsert(self, new: KubeObject) -> None:
        old = self._store.upsert(new)
        self._notify_upsert(old, new)

    def _apply_delete(self, obj: KubeObject) -> None:
        if self._store.delete(object_key(obj)) is not None:
            # the event's object: the last state, as client-go delivers it
            self._notify_delete(obj)

    def _notify_upsert(self, old: KubeObject | None, new: KubeObject) -> None:
        if old is None:
            self._notify_add(new)
        elif _uid(old) != _uid(new):
            # deleted and re-created between two observations: handlers must see both
            self._notify_delete(old)
            self._notify_add(new)
        elif _rv(old) != _rv(new):  # the same RV is a repeat of what we had: not news
            self._notify("on_update", new, lambda handler: handler.on_update(old, new))

    def _notify_add(self, obj: KubeObject) -> None:
        self._notify("on_add", obj, lambda handler: handler.on_add(obj))

    def _notify_delete(self, obj: KubeObject) -> None:
        self._notify("on_delete", obj, lambda handler: handler.on_delete(obj))

    def _notify(self, method: str, obj: KubeObject, call: Callable[[EventHandler], None]) -> None:
        for handler in self._handlers:
            try:
                call(handler)
            except Exception:
                self._log.exception(
                    "informer_handler_error",
                    handler=type(handler).__name__,
                    method=method,
                    key=object_key(obj),
                )


def _uid(obj: KubeObject) -> str | None:
    uid: str | None = obj["metadata"].get("uid")
    return uid


def _rv(obj: KubeObject) -> str | None:
    rv: str | None = obj["metadata"].get("resourceVersion")
    return rv
