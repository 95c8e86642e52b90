"""Informers and ApiListWatcher against the real kube-apiserver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from agc_controller.core.clock import SystemClock
from agc_controller.core.resources import CONFIG_MAP, Resource
from agc_controller.informers import (
    ApiListWatcher,
    ApiStatusError,
    Informer,
    ListPage,
    object_key,
    trim_config_map,
)

Obj = dict[str, Any]
TIMEOUT = 30  # seconds any single expected event may take; a bound, not a wait


class QueueHandler:
    """Pushes (event, name, data) for every notification."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, str, dict[str, str]]] = asyncio.Queue()

    def _put(self, event: str, obj: Obj) -> None:
        self.queue.put_nowait((event, obj["metadata"]["name"], obj.get("data") or {}))

    def on_add(self, obj: Obj) -> None:
        self._put("add", obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        self._put("update", new)

    def on_delete(self, obj: Obj) -> None:
        self._put("delete", obj)

    async def next_for(self, name: str) -> tuple[str, dict[str, str]]:
        """The next notification about `name` (others, e.g. kube-root-ca.crt, are skipped)."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                event, got, data = await self.queue.get()
                if got == name:
                    return event, data


class CountingListWatcher:
    """Passes through to a real ListWatcher, counting full LISTs and watches."""

    def __init__(self, inner: ApiListWatcher) -> None:
        self.inner = inner
        self.lists = 0
        self.watches = 0
        self._changed = asyncio.Condition()

    async def list_page(self, continue_token: str | None) -> ListPage:
        if continue_token is None:
            self.lists += 1
        return await self.inner.list_page(continue_token)

    async def watch(self, resource_version: str, *, timeout_seconds: int) -> AsyncGenerator[Obj]:
        async with self._changed:
            self.watches += 1
            self._changed.notify_all()
        stream = self.inner.watch(resource_version, timeout_seconds=timeout_seconds)
        async with contextlib.aclosing(stream):
            async for event in stream:
                yield event

    async def wait_for_watches(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: self.watches >= count)


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    task = asyncio.create_task(informer.run(), name=f"informer-{informer.name}")
    try:
        async with asyncio.timeout(TIMEOUT):
            await informer.wait_synced()
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _config_map(name: str, **data: str) -> Obj:
    return {"metadata": {"name": name, "labels": {"test": "informer"}}, "data": data}


async def test_informer_sees_add_update_delete(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    await core.create_namespaced_config_map(
        namespace, _config_map("before", **{"ca.crt": "ca", "app.conf": "x=1"})
    )
    informer = Informer(
        CONFIG_MAP,
        ApiListWatcher(kube, CONFIG_MAP, namespace),
        clock=SystemClock(),
        transform=trim_config_map,
    )
    handler = QueueHandler()
    informer.add_handler(handler)

    async with running(informer):
        assert await handler.next_for("before") == ("add", {"ca.crt": "ca"})
        listed = informer.store.get(f"{namespace}/before")
        assert listed is not None
        # list items get kind/apiVersion like watch objects; the transform ran
        assert (listed["kind"], listed["apiVersion"]) == ("ConfigMap", "v1")
        assert listed["data"] == {"ca.crt": "ca"}

        await core.create_namespaced_config_map(namespace, _config_map("live", **{"ca.crt": "1"}))
        assert await handler.next_for("live") == ("add", {"ca.crt": "1"})

        await core.replace_namespaced_config_map(
            "live", namespace, _config_map("live", **{"ca.crt": "2"})
        )
        assert await handler.next_for("live") == ("update", {"ca.crt": "2"})
        updated = informer.store.get(f"{namespace}/live")
        assert updated is not None
        assert updated["data"] == {"ca.crt": "2"}

        await core.delete_namespaced_config_map("live", namespace)
        assert await handler.next_for("live") == ("delete", {"ca.crt": "2"})
        assert informer.store.get(f"{namespace}/live") is None
        assert informer.store.get(f"{namespace}/before") is not None


async def test_events_keep_flowing_across_rewatches(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    list_watcher = CountingListWatcher(ApiListWatcher(kube, CONFIG_MAP, namespace))
    # the server ends every watch after 1 s, so each step below spans a re-watch
    informer = Informer(CONFIG_MAP, list_watcher, clock=SystemClock(), watch_timeout_seconds=(1, 1))
    handler = QueueHandler()
    informer.add_handler(handler)

    async with running(informer):
        for step in range(4):
            watches = list_watcher.watches
            await core.create_namespaced_config_map(
                namespace, _config_map(f"cm-{step}", n=str(step))
            )
            assert await handler.next_for(f"cm-{step}") == ("add", {"n": str(step)})
            await list_watcher.wait_for_watches(watches + 1)  # a later watch has started

        await core.delete_namespaced_config_map("cm-0", namespace)
        assert await handler.next_for("cm-0") == ("delete", {"n": "0"})

    assert list_watcher.lists == 1  # every re-watch resumed from its RV; never relisted
    assert list_watcher.watches >= 5
    names = sorted(obj["metadata"]["name"] for obj in informer.store.list())
    assert [name for name in names if name.startswith("cm-")] == ["cm-1", "cm-2", "cm-3"]


async def test_list_pages_with_continue_tokens_and_label_selector(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    for i in range(5):
        await core.create_namespaced_config_map(namespace, _config_map(f"cm-{i}"))
    await core.create_namespaced_config_map(namespace, {"metadata": {"name": "unlabelled"}})
    list_watcher = ApiListWatcher(
        kube, CONFIG_MAP, namespace, label_selector="test=informer", page_size=2
    )

    pages: list[ListPage] = []
    continue_token: str | None = None
    while True:
        page = await list_watcher.list_page(continue_token)
        pages.append(page)
        continue_token = page.continue_token
        if continue_token is None:
            break

    assert [len(page.items) for page in pages] == [2, 2, 1]
    items = [item for page in pages for item in page.items]
    assert sorted(object_key(item) for item in items) == [f"{namespace}/cm-{i}" for i in range(5)]
    assert {(item["apiVersion"], item["kind"]) for item in items} == {("v1", "ConfigMap")}
    # one consistent snapshot: every page reports the same resourceVersion
    assert len({page.resource_version for page in pages}) == 1


async def test_errors_become_api_status_errors(kube: client.ApiClient, namespace: str) -> None:
    missing = Resource("example.com", "v1", "widgets", "Widget", namespaced=True)
    list_watcher = ApiListWatcher(kube, missing, namespace)

    with pytest.raises(ApiStatusError) as listed:
        await list_watcher.list_page(None)
    assert listed.value.status == 404

    stream = list_watcher.watch("0", timeout_seconds=5)
    with pytest.raises(ApiStatusError) as watched:
        await anext(stream)
    assert watched.value.status == 404
