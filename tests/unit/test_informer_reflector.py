"""ApiListWatcher over a real ApiClient against a local HTTP server playing the apiserver.

The real apiserver is in tests/integration; here the server is scripted so that
the answers the real one gives rarely (HTTP 410, 5xx with a non-JSON body) are
covered too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio import client

from agc_controller.core.resources import CONFIG_MAP, NAMESPACE
from agc_controller.informers import ApiListWatcher, ApiStatusError, ResourceExpired

PATH = "/api/v1/namespaces/ns/configmaps"


class FakeApiserver:
    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []  # query parameters of each request
        self.app = web.Application()
        self.app.router.add_get(PATH, self.configmaps)
        self.app.router.add_get("/api/v1/namespaces", self.broken)

    async def configmaps(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(query)
        if query.get("watch") != "1":
            return self.list_page(query.get("continue"))
        if query["resourceVersion"] == "1":
            return _status(410, "Expired", "too old resource version: 1 (40)")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        events = [
            {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "41"}}},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}},
        ]
        for event in events:
            await response.write(json.dumps(event).encode() + b"\n")
        await response.write(b"\n")  # blank keep-alive lines are skipped
        await response.write_eof()
        return response

    def list_page(self, continue_token: str | None) -> web.Response:
        if continue_token == "stale":
            return _status(410, "Expired", "continue token expired")
        page: dict[str, Any] = {
            "kind": "ConfigMapList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": "40"},
            # list items come without kind/apiVersion, as the apiserver sends them
            "items": [{"metadata": {"name": "a" if continue_token is None else "b"}}],
        }
        if continue_token is None:
            page["metadata"]["continue"] = "next"
        return web.json_response(page)

    async def broken(self, request: web.Request) -> web.Response:
        return web.Response(status=503, text="upstream connect error", reason="Unavailable")


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "status": "Failure", "reason": reason, "message": message}
    return web.json_response({**body, "code": code}, status=code)


@pytest.fixture
def apiserver() -> FakeApiserver:
    return FakeApiserver()


@pytest.fixture
async def api(apiserver: FakeApiserver) -> AsyncIterator[Any]:
    async with TestServer(apiserver.app) as server:
        configuration = client.Configuration(host=str(server.make_url("")).rstrip("/"))
        async with client.ApiClient(configuration) as api_client:
            yield api_client


async def test_list_pages_carry_kind_and_tokens(apiserver: FakeApiserver, api: Any) -> None:
    list_watcher = ApiListWatcher(api, CONFIG_MAP, "ns", label_selector="app=web", page_size=1)

    first = await list_watcher.list_page(None)
    second = await list_watcher.list_page(first.continue_token)

    assert first.continue_token == "next"
    assert second.continue_token is None
    assert first.resource_version == second.resource_version == "40"
    assert [item["metadata"]["name"] for item in (*first.items, *second.items)] == ["a", "b"]
    assert first.items[0]["kind"] == "ConfigMap"
    assert first.items[0]["apiVersion"] == "v1"
    assert apiserver.requests == [
        {"limit": "1", "labelSelector": "app=web"},
        {"limit": "1", "labelSelector": "app=web", "continue": "next"},
    ]


async def test_a_field_selector_goes_with_every_list(apiserver: FakeApiserver, api: Any) -> None:
    list_watcher = ApiListWatcher(
        api, CONFIG_MAP, "ns", label_selector="app=web", field_selector="metadata.name=a"
    )

    await list_watcher.list_page(None)

    assert apiserver.requests[0]["fieldSelector"] == "metadata.name=a"
    assert apiserver.requests[0]["labelSelector"] == "app=web"


async def test_watch_streams_events_with_bookmarks_requested(
    apiserver: FakeApiserver, api: Any
) -> None:
    list_watcher = ApiListWatcher(api, CONFIG_MAP, "ns")

    events = [event async for event in list_watcher.watch("40", timeout_seconds=333)]

    assert [event["type"] for event in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["resourceVersion"] == "42"
    assert apiserver.requests == [
        {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": "40",
            "timeoutSeconds": "333",
        }
    ]


async def test_http_410_is_resource_expired(api: Any) -> None:
    list_watcher = ApiListWatcher(api, CONFIG_MAP, "ns")

    with pytest.raises(ResourceExpired) as watched:
        await anext(list_watcher.watch("1", timeout_seconds=5))
    assert watched.value.status == 410
    assert "too old resource version" in watched.value.message

    with pytest.raises(ResourceExpired):
        await list_watcher.list_page("stale")


async def test_other_statuses_are_api_status_errors_even_without_a_status_body(api: Any) -> None:
    list_watcher = ApiListWatcher(api, NAMESPACE)

    with pytest.raises(ApiStatusError) as listed:
        await list_watcher.list_page(None)
    assert not isinstance(listed.value, ResourceExpired)
    assert (listed.value.status, listed.value.reason) == (503, "Unavailable")
    assert listed.value.message == "upstream connect error"


def test_error_event_status_maps_by_code() -> None:
    gone = ApiStatusError.from_status({"code": 410, "reason": "Expired", "message": "old"})
    assert isinstance(gone, ResourceExpired)
    other = ApiStatusError.from_status({"code": 500, "reason": "InternalError"})
    assert type(other) is ApiStatusError
    assert other.status == 500
