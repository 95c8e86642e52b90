"""Write desired status to the API: read-modify-write of the `/status` subresource.

Invariants:
- No request when nothing changed: `prepare_status` decides from the object at
  hand (the cached one the caller passes, else a fresh GET).
- A write is a PUT of the whole object to `/status` carrying the
  resourceVersion the new status was prepared from. A concurrent change makes
  it fail with 409 instead of being overwritten; the writer then GETs the
  object, prepares again and retries, at most `MAX_ATTEMPTS` times in all.
  A PUT and not a merge patch: a merge patch keeps status keys it does not
  mention, so a Gateway's dropped `addresses` would survive it.
- NotFound is done: the object is gone and there is nothing to report on.
- Only what changed is even prepared: the writer remembers, per object (and
  Gateway, for route and policy entries), the desired status it last confirmed
  and the resourceVersions at which the stored status matched it (the one it
  read, and the one its own write produced). While the desired status is equal
  and the cached object is still at one of those versions, `is_current` says
  so without preparing anything; the caller skips the write. Any other version
  (someone else wrote, or our write is not cached yet) goes the long way.
- A desired status computed from an older generation than the stored object
  is never written (`StaleStatusError`): it would report on a spec that is gone.
- Everything else that goes wrong leaves as `StatusWriteError`, a temporary
  error: the caller re-queues the key (rate limited); nothing is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import attrs
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from agc_controller.core.clock import Clock
from agc_controller.core.errors import TemporaryError
from agc_controller.core.keys import ObjectKey
from agc_controller.core.resources import (
    AUTH_POLICY,
    BACKEND_TLS_POLICY,
    GATEWAY,
    GATEWAY_CLASS,
    GRPC_ROUTE,
    HEALTH_CHECK_POLICY,
    HTTP_ROUTE,
    INGRESS,
    LISTENER_SET,
    LOAD_BALANCING_POLICY,
    RATE_LIMIT_POLICY,
    TCP_ROUTE,
    TLS_ROUTE,
    UDP_ROUTE,
    WAF_POLICY,
    Resource,
)
from agc_controller.core.status import (
    DesiredStatus,
    GatewayClassStatus,
    GatewayStatus,
    IngressStatus,
    ListenerSetStatus,
    PolicyStatus,
    RouteStatus,
)
from agc_controller.core.timefmt import rfc3339
from agc_controller.status.prepare import dropped_entries, is_stale, prepare_status

MAX_ATTEMPTS = 5  # writes per call; conflicts beyond that go back to the queue

_ENTRY_LIST_RESOURCES = {
    r.kind: r
    for r in (
        HTTP_ROUTE,
        GRPC_ROUTE,
        TLS_ROUTE,
        TCP_ROUTE,
        UDP_ROUTE,
        BACKEND_TLS_POLICY,
        RATE_LIMIT_POLICY,
        HEALTH_CHECK_POLICY,
        LOAD_BALANCING_POLICY,
        AUTH_POLICY,
        WAF_POLICY,
    )
}


class StatusWriteError(TemporaryError):
    """The status could not be written now. Re-queue the key.

    `delay` is the server's Retry-After in seconds, when it sent one.
    """


class StaleStatusError(StatusWriteError):
    """The stored object has a newer generation than the desired status was computed from.

    Nothing was written. Re-queue the key: the next translation sees a cache
    that has caught up.
    """


class _Conflict(Exception):
    """409: the object changed since the resourceVersion the write carried."""


# statuses remembered as confirmed; beyond it the oldest are forgotten (they are
# then prepared again once, nothing more)
MAX_CONFIRMED = 100_000

# what a confirmation is about: kind, namespace, name, and the Gateway whose
# entries a route or policy status holds (None for Gateway, ListenerSet and GatewayClass)
_ConfirmedKey = tuple[str, str, str, ObjectKey | None]


@attrs.frozen
class _Confirmed:
    desired: DesiredStatus
    # resourceVersions at which the stored status was known to match `desired`
    versions: frozenset[str]


class StatusWriter:
    """Writes `DesiredStatus` values; one instance serves every kind and object."""

    def __init__(self, api: client.ApiClient, *, controller_name: str, clock: Clock) -> None:
        self._api = api  # the only I/O seam: every request goes through api.call_api
        self._controller_name = controller_name  # marks our entries in route/policy status
        self._clock = clock  # stamps lastTransitionTime
        # what the stored status last matched; insertion order = age, for the bound
        self._confirmed: dict[_ConfirmedKey, _Confirmed] = {}

    def is_current(self, desired: DesiredStatus, current: Mapping[str, Any] | None) -> bool:
        """Whether the cached `current` already carries `desired`, as last confirmed (no I/O)."""
        if current is None:
            return False
        confirmed = self._confirmed.get(_confirmed_key(desired))
        return (
            confirmed is not None
            and _version(current) in confirmed.versions
            and confirmed.desired == desired
        )

    def _confirm(self, desired: DesiredStatus, *objects: Mapping[str, Any]) -> None:
        key = _confirmed_key(desired)
        self._confirmed.pop(key, None)
        self._confirmed[key] = _Confirmed(desired, frozenset(_version(o) for o in objects))
        if len(self._confirmed) > MAX_CONFIRMED:
            del self._confirmed[next(iter(self._confirmed))]

    async def write(self, desired: DesiredStatus, current: Mapping[str, Any] | None = None) -> bool:
        """Bring the object's status to `desired`; True if a write happened.

        `current` is the object as cached (metadata.resourceVersion and status
        included); None makes the writer GET it. False means no write was
        needed or the object is gone. Raises `StaleStatusError` when `desired`
        is older than the stored object, `StatusWriteError` on any other
        failure, both meaning: re-queue.
        """
        if self.is_current(desired, current):
            return False
        resource, key = _target(desired)
        path = resource.object_path(key.name, key.namespace or None)
        log = structlog.get_logger(__name__).bind(kind=key.kind, object=str(key))
        if isinstance(desired, RouteStatus | PolicyStatus):
            log = log.bind(gateway=str(desired.gateway))
        # one timestamp per call: every condition that transitions now gets the same time
        now = rfc3339(self._clock.wall())
        obj = current
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if obj is None:
                obj = await self._request("GET", path)
                if obj is None:
                    self._confirmed.pop(_confirmed_key(desired), None)
                    return False
            generation = obj.get("metadata", {}).get("generation")
            if is_stale(obj, desired):
                log.info("status_skipped_stale", generation=generation, attempt=attempt)
                raise StaleStatusError(f"{key} is at generation {generation}, newer than desired")
            # reported on every call, write or not: the status stays incomplete until the
            # list has room, and a full list is usually a no-op for us
            dropped = dropped_entries(obj, desired, controller_name=self._controller_name)
            if dropped:
                log.warning("status_entries_dropped", dropped=[ref.to_api() for ref in dropped])
            status = prepare_status(obj, desired, controller_name=self._controller_name, now=now)
            if status is None:
                self._confirm(desired, obj)
                return False
            try:
                stored = await self._request(
                    "PUT", f"{path}/status", body=_with_status(obj, status, resource=resource)
                )
            except _Conflict:
                if attempt == MAX_ATTEMPTS:
                    break
                log.info("status_conflict_retry", generation=generation, attempt=attempt)
                obj = None
                continue
            if stored is None:
                self._confirmed.pop(_confirmed_key(desired), None)
                return False
            self._confirm(desired, obj, stored)
            log.info("status_written", generation=generation, attempt=attempt)
            return True
        raise StatusWriteError(f"{key}: status still conflicting after {MAX_ATTEMPTS} writes")

    async def _request(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """One API call: the object, or None on 404. Errors are mapped here, at the boundary."""
        try:
            result = await self._api.call_api(
                path,
                method,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body,
                response_types_map={200: "object", 201: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409:
                raise _Conflict from exc
            raise StatusWriteError(
                f"{method} {path}: {exc.status} {_api_message(exc)}",
                delay=_retry_after(exc),
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StatusWriteError(f"{method} {path}: {exc!r}") from exc
        stored: dict[str, Any] = result
        return stored


def _confirmed_key(desired: DesiredStatus) -> _ConfirmedKey:
    if isinstance(desired, GatewayClassStatus):
        return (GATEWAY_CLASS.kind, "", desired.name, None)
    if isinstance(desired, GatewayStatus):
        return (GATEWAY.kind, desired.namespace, desired.name, None)
    if isinstance(desired, ListenerSetStatus):
        return (LISTENER_SET.kind, desired.namespace, desired.name, None)
    if isinstance(desired, IngressStatus):
        return (INGRESS.kind, desired.namespace, desired.name, None)
    return (desired.kind, desired.namespace, desired.name, desired.gateway)


def _version(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def _target(desired: DesiredStatus) -> tuple[Resource, ObjectKey]:
    if isinstance(desired, GatewayClassStatus):
        return GATEWAY_CLASS, ObjectKey(GATEWAY_CLASS.kind, "", desired.name)
    if isinstance(desired, GatewayStatus):
        return GATEWAY, ObjectKey(GATEWAY.kind, desired.namespace, desired.name)
    if isinstance(desired, ListenerSetStatus):
        return LISTENER_SET, ObjectKey(LISTENER_SET.kind, desired.namespace, desired.name)
    if isinstance(desired, IngressStatus):
        return INGRESS, ObjectKey(INGRESS.kind, desired.namespace, desired.name)
    resource = _ENTRY_LIST_RESOURCES.get(desired.kind)
    if resource is None:
        raise ValueError(f"no status writer for kind {desired.kind!r}")
    return resource, ObjectKey(resource.kind, desired.namespace, desired.name)


def _with_status(
    obj: Mapping[str, Any], status: dict[str, Any], *, resource: Resource
) -> dict[str, Any]:
    """The PUT body: `obj` (not modified: it may be a shared cache entry) with `status`.

    managedFields are left out so the server keeps its own; resourceVersion
    stays, as the precondition.
    """
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {
        **obj,
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": metadata,
        "status": status,
    }


def _api_message(exc: ApiException) -> str:
    body: Any = exc.body  # bytes or str from the response; None when built by hand
    try:
        message = json.loads(body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)
    return str(message)


def _retry_after(exc: ApiException) -> float | None:
    headers: Any = exc.headers or {}  # a case-insensitive mapping from aiohttp
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
