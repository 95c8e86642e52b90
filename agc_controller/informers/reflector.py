"""The I/O seam of an informer: paginated LIST and streaming WATCH of one resource.

`ListWatcher` is the Protocol the informer drives; tests feed it scripted pages
and events. `ApiListWatcher` implements it with raw GETs through a
kubernetes-asyncio ApiClient, keeping objects as the JSON dicts the API sends
(model classes would cost a deserialisation per object, and CRDs are dicts anyway).

Invariants:
- A non-2xx answer becomes `ApiStatusError`; HTTP 410 Gone becomes its subclass
  `ResourceExpired`, the one error the informer answers with a relist.
- Watch events are yielded untouched, ERROR events included: interpreting them
  (410 in an ERROR event means the same as HTTP 410) is the informer's job, so
  the fake and the real ListWatcher behave alike.
- LIST items carry `apiVersion` and `kind` like watch objects do (the API leaves
  them out of list items), so every cached object names its kind.
- A watch never outlives its server-side timeout by more than WATCH_GRACE: a
  connection that died silently is noticed instead of waited on forever.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any, Protocol, cast

import aiohttp
import attrs

from agc_controller.core.resources import Resource
from agc_controller.informers.store import KubeObject

PAGE_SIZE = 500  # objects per LIST page: bounds the apiserver's and our memory spikes
LIST_TIMEOUT = 60.0  # seconds for one LIST page, connection included
CONNECT_TIMEOUT = 30.0  # seconds to open a watch connection
WATCH_GRACE = 30.0  # seconds a watch may run past its timeoutSeconds before we give up on it

WatchEvent = dict[str, Any]
"""`{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}`."""


class ApiStatusError(Exception):
    """The apiserver answered a LIST or WATCH with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_status(cls, status: dict[str, Any], *, http_status: int = 0) -> ApiStatusError:
        """From a `Status` object (an error body, or the object of an ERROR event)."""
        code = http_status or int(status.get("code") or 0)
        error_class = ResourceExpired if code == 410 else ApiStatusError
        return error_class(code, str(status.get("reason", "")), str(status.get("message", "")))


class ResourceExpired(ApiStatusError):
    """410 Gone: the resourceVersion (or continue token) was compacted away; relist."""


@attrs.frozen
class ListPage:
    items: list[KubeObject]
    resource_version: str  # the collection's RV; the same snapshot on every page
    continue_token: str | None  # None on the last page


class ListWatcher(Protocol):
    async def list_page(self, continue_token: str | None) -> ListPage:
        """One page of a LIST; `None` starts a fresh, consistent LIST."""
        ...

    def watch(
        self, resource_version: str, *, timeout_seconds: int
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events after `resource_version`; ends when the server closes the watch.

        A generator, so that the informer can close it (and its connection) at once
        when it stops reading early.
        """
        ...


class ApiListWatcher:
    """LIST/WATCH of `resource` over an ApiClient, optionally one namespace, labels
    or fields (`metadata.name=x`: the only list a `resourceNames` RBAC rule allows)."""

    def __init__(
        self,
        api: Any,  # kubernetes_asyncio.client.ApiClient (untyped)
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        *,
        field_selector: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._api = api
        self._resource = resource
        self._path = resource.collection_path(namespace)
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._page_size = page_size

    async def list_page(self, continue_token: str | None) -> ListPage:
        # No resourceVersion: a consistent read. RV=0 would be served from the
        # apiserver's watch cache, which may be older than what we saw before a
        # 410, and would take our cache back in time.
        params = [("limit", str(self._page_size)), *self._selector_params()]
        if continue_token:
            params.append(("continue", continue_token))
        response = await self._get(params, aiohttp.ClientTimeout(total=LIST_TIMEOUT))
        try:
            body = json.loads(await response.read())
        finally:
            response.release()
        items: list[KubeObject] = body.get("items") or []
        for item in items:
            item.setdefault("apiVersion", self._resource.api_version)
            item.setdefault("kind", self._resource.kind)
        metadata = body.get("metadata") or {}
        return ListPage(
            items=items,
            resource_version=str(metadata.get("resourceVersion", "")),
            continue_token=metadata.get("continue") or None,
        )

    async def watch(
        self, resource_version: str, *, timeout_seconds: int
    ) -> AsyncGenerator[WatchEvent, None]:
        params = [
            ("watch", "1"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
            *self._selector_params(),
        ]
        client_timeout = aiohttp.ClientTimeout(
            total=timeout_seconds + WATCH_GRACE, sock_connect=CONNECT_TIMEOUT
        )
        response = await self._get(params, client_timeout)
        try:
            # one JSON event per line; aiohttp splits the chunked stream on newlines
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)
        finally:
            # close, not release: an unfinished stream must not go back to the pool
            response.close()

    def _selector_params(self) -> list[tuple[str, str]]:
        params = [("labelSelector", self._label_selector)] if self._label_selector else []
        if self._field_selector:
            params.append(("fieldSelector", self._field_selector))
        return params

    async def _get(
        self, params: list[tuple[str, str]], client_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        response = cast(
            aiohttp.ClientResponse,
            await self._api.call_api(
                self._path,
                "GET",
                query_params=params,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=client_timeout,
            ),
        )
        if response.status < 300:
            return response
        # without _preload_content the client does not check the status; we do
        try:
            raw = await response.read()
        finally:
            response.release()
        try:
            status = json.loads(raw)
        except ValueError:
            status = {"message": raw[:200].decode(errors="replace")}
        if not isinstance(status, dict):
            status = {}
        status.setdefault("reason", response.reason or "")
        raise ApiStatusError.from_status(status, http_status=response.status)
