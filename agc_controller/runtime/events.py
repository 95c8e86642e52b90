"""Kubernetes Events (events.k8s.io/v1) on Gateways and Ingresses.

Status conditions are the record; Events are the notification a person sees in
`kubectl describe gateway` or `kubectl get events`. So:
- An Event is emitted only when a Gateway's `Programmed` condition changes
  status (`gateway_transition`): first programmed, programming failed,
  recovered. A reconcile that changes nothing emits nothing, however often it
  runs.
- Ingress has no conditions: Events are its record (the caller emits each note
  once, when it first applies; see controller/worker.py). They are queued
  (`record_soon`) and posted by `run`, off the reconcile's path: a first pass
  over thousands of Ingresses records one each, and a new Ingress must not wait
  for them. A full backlog drops (and logs) the newest.
- Recording is best effort: a failed POST is logged and dropped, never raised
  (it must not re-queue a key whose status is already written), and it is
  bounded by a timeout so a slow apiserver cannot hold a worker.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import aiohttp
import attrs
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.core.clock import Clock
from agc_controller.core.resources import EVENT, GATEWAY, Resource
from agc_controller.core.status import Condition, ConditionStatus
from agc_controller.core.timefmt import micro_time

log = structlog.get_logger(__name__)

# seconds one Event POST may take before it is given up
POST_TIMEOUT = 5.0
# Events queued by record_soon and not posted yet, at most; and posts in flight
BACKLOG = 10_000
SENDERS = 4
# the API refuses a longer note
_MAX_NOTE = 1024

EventType = Literal["Normal", "Warning"]


@attrs.frozen
class GatewayEvent:
    type: EventType
    reason: str  # CamelCase, as Event reasons are
    note: str


def gateway_transition(
    previous: ConditionStatus | None, programmed: Condition
) -> GatewayEvent | None:
    """The Event for a Gateway whose `Programmed` goes from `previous` (None: never
    reported) to `programmed`, or None when its status did not change."""
    if programmed.status == previous:
        return None
    if programmed.status == "True":
        if previous == "False":
            return GatewayEvent("Normal", "Recovered", f"Programmed again: {programmed.message}")
        return GatewayEvent("Normal", "Programmed", programmed.message)
    if programmed.status == "False":
        return GatewayEvent(
            "Warning", "ProgrammingFailed", f"{programmed.reason}: {programmed.message}"
        )
    return None


class EventRecorder:
    """Posts Events as `reporting_controller` / `reporting_instance` (this replica)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        reporting_controller: str,
        reporting_instance: str,
        clock: Clock,
    ) -> None:
        self._api = api
        self._controller = reporting_controller
        self._instance = reporting_instance
        self._clock = clock
        self._backlog: asyncio.Queue[tuple[dict[str, Any], Resource, GatewayEvent, str]] = (
            asyncio.Queue(maxsize=BACKLOG)
        )

    def record_soon(
        self, regarding: dict[str, Any], resource: Resource, event: GatewayEvent, *, action: str
    ) -> None:
        """Queue `event` on `regarding` for `run` to post."""
        try:
            self._backlog.put_nowait((regarding, resource, event, action))
        except asyncio.QueueFull:
            log.warning("event_dropped", reason=event.reason, backlog=BACKLOG)

    async def run(self) -> None:
        """Post what `record_soon` queued, SENDERS at a time, until cancelled."""

        async def sender() -> None:
            while True:
                regarding, resource, event, action = await self._backlog.get()
                await self.record(regarding, resource, event, action=action)

        await asyncio.gather(*(sender() for _ in range(SENDERS)))

    async def gateway_event(self, gateway: dict[str, Any], event: GatewayEvent) -> None:
        """Record `event` on `gateway` (the object as cached)."""
        await self.record(gateway, GATEWAY, event, action="Program")

    async def record(
        self, regarding: dict[str, Any], resource: Resource, event: GatewayEvent, *, action: str
    ) -> None:
        """Record `event` on `regarding`, an object of `resource` (as cached)."""
        meta = regarding["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        now = self._clock.wall()
        body = {
            "apiVersion": EVENT.api_version,
            "kind": EVENT.kind,
            "metadata": {
                # client-go's naming: unique per object and nanosecond
                "name": f"{name}.{int(now * 1e9):x}",
                "namespace": namespace,
            },
            "eventTime": micro_time(now),
            "reportingController": self._controller,
            "reportingInstance": self._instance,
            "action": action,
            "reason": event.reason,
            "note": event.note[:_MAX_NOTE],
            "type": event.type,
            "regarding": {
                "apiVersion": resource.api_version,
                "kind": resource.kind,
                "namespace": namespace,
                "name": name,
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
        }
        try:
            async with asyncio.timeout(POST_TIMEOUT):
                await self._api.call_api(
                    EVENT.collection_path(namespace),
                    "POST",
                    header_params={
                        "Accept": "application/json",
                        "Content-Type": "application/json",
                    },
                    body=body,
                    response_types_map={201: "object"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                )
        except (ApiException, aiohttp.ClientError, TimeoutError) as error:
            detail = f"{error.status} {error.reason}" if isinstance(error, ApiException) else error
            log.warning("event_not_recorded", reason=event.reason, error=str(detail))
        else:
            log.info("event_recorded", reason=event.reason, type=event.type)
