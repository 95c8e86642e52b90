"""Say clearly when RBAC denies the controller a list or watch, and remember it.

A missing permission is an installation problem, not a crash: the informer
keeps backing off and retrying (a fixed ClusterRole takes effect without a
restart), and the process stays up but not ready. What the informer's own
retry log lacks is the diagnosis, so `PermissionReportingListWatcher` wraps
each informer's ListWatcher and, on HTTP 403, logs `permission_denied` naming
the verb, the resource and its API group, then re-raises unchanged.

Invariant: `PermissionProblems.denied` holds exactly the (verb, resource)
pairs whose last attempt was refused; a later success of the same verb on the
same resource removes its entry, so readiness recovers by itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import attrs
import structlog

from agc_controller.core.resources import Resource
from agc_controller.informers.reflector import ApiStatusError, ListPage, ListWatcher, WatchEvent

log = structlog.get_logger(__name__)

_FORBIDDEN = 403


@attrs.define
class PermissionProblems:
    # "verb resource.group" entries whose last attempt got 403, e.g. "list services"
    denied: set[str] = attrs.field(factory=set)

    def refused(self, verb: str, resource: Resource, error: ApiStatusError) -> None:
        self.denied.add(_name(verb, resource))
        log.error(
            "permission_denied",
            verb=verb,
            resource=resource.plural,
            api_group=resource.group or "core",
            message=error.message,
            fix=f"grant '{verb}' on '{_qualified(resource)}' to the controller's ServiceAccount "
            "(the chart's ClusterRole does); the controller retries and is not ready until then",
        )

    def allowed(self, verb: str, resource: Resource) -> None:
        self.denied.discard(_name(verb, resource))


def _qualified(resource: Resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def _name(verb: str, resource: Resource) -> str:
    return f"{verb} {_qualified(resource)}"


class PermissionReportingListWatcher:
    """A ListWatcher that reports 403s to `problems` and otherwise changes nothing."""

    def __init__(self, inner: ListWatcher, resource: Resource, problems: PermissionProblems):
        self._inner = inner
        self._resource = resource
        self._problems = problems

    async def list_page(self, continue_token: str | None) -> ListPage:
        try:
            page = await self._inner.list_page(continue_token)
        except ApiStatusError as error:
            if error.status == _FORBIDDEN:
                self._problems.refused("list", self._resource, error)
            raise
        self._problems.allowed("list", self._resource)
        return page

    async def watch(
        self, resource_version: str, *, timeout_seconds: int
    ) -> AsyncGenerator[WatchEvent, None]:
        stream = self._inner.watch(resource_version, timeout_seconds=timeout_seconds)
        async with contextlib.aclosing(stream):
            try:
                first = await anext(stream, None)
            except ApiStatusError as error:
                if error.status == _FORBIDDEN:
                    self._problems.refused("watch", self._resource, error)
                raise
            # the server accepted the watch: whatever it streams, the permission is there
            self._problems.allowed("watch", self._resource)
            if first is None:
                return
            yield first
            async for event in stream:
                yield event
