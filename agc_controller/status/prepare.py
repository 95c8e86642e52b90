"""Merge a desired status into an object's stored status (PURE: no I/O, no clock).

`prepare_status(current_obj, desired, controller_name=..., now=...)` returns the
object's complete new `status`, or None when the stored status already says
what `desired` says (no write is needed). Invariants of the result:

- Conditions are keyed by `type`. A condition keeps the stored
  `lastTransitionTime` when its `status` did not change, even if reason,
  message or observedGeneration did; a new condition or a status flip gets
  `now`. The CRD's "Pending" default carries the epoch as its time; that is
  not a real transition, so it never survives a write.
- Gateway, ListenerSet and GatewayClass: conditions, listeners, addresses,
  attachedListenerSets and supportedFeatures are exactly the desired ones (each
  listener's conditions merged against the stored listener of the same name).
  Status fields the model does not decide are kept as stored.
- Ingress: `status.loadBalancer.ingress` is exactly the desired addresses (an
  IP or a hostname each); the rest as stored. Ingress has no conditions, so its
  status is never stale.
- Route `status.parents` / policy `status.ancestors`: entries of other
  controllers, and ours whose parent/ancestor is a Gateway other than
  `desired.gateway` (or, for a route, a ListenerSet outside
  `desired.listener_sets`), are kept unchanged and in order. Ours for
  `desired.gateway` (and those ListenerSets) are replaced by the desired
  entries, which take the place
  of the first one they replace (so repeated writes from different Gateways'
  work items never reorder the list back and forth). The list never exceeds
  its CRD maxItems: the excess of the desired entries is left out, see
  `dropped_entries`.
- Nothing here reads the clock: `now` is passed in, formatted by `core.timefmt.rfc3339`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from agc_controller.core.status import (
    Condition,
    DesiredStatus,
    GatewayClassStatus,
    GatewayStatus,
    IngressStatus,
    ListenerSetStatus,
    ListenerStatus,
    ParentReference,
    PolicyStatus,
    RouteStatus,
)

MAX_ROUTE_PARENTS = 32  # every route kind's status.parents maxItems
MAX_POLICY_ANCESTORS = 16  # BackendTLSPolicy status.ancestors maxItems

# The time the CRDs default their "Pending" conditions to: a placeholder, not a transition.
_EPOCH = "1970-01-01T00:00:00Z"


def merge_conditions(
    stored: Iterable[Any] | None, desired: Sequence[Condition], *, now: str
) -> list[dict[str, Any]]:
    """The desired conditions in API form, transition times carried over by type."""
    previous = {c.get("type"): c for c in stored or () if isinstance(c, Mapping)}
    merged = []
    for condition in desired:
        before = previous.get(condition.type)
        kept_time = before.get("lastTransitionTime") if before is not None else None
        unchanged = before is not None and before.get("status") == condition.status
        transition_time = kept_time if unchanged and kept_time and kept_time != _EPOCH else now
        merged.append(condition.to_api(last_transition_time=transition_time))
    return merged


def is_stale(current_obj: Mapping[str, Any], desired: DesiredStatus) -> bool:
    """True when the object is at a newer generation than `desired` was computed from.

    Every desired condition carries the generation of the object it is written
    to, so one older than the stored `metadata.generation` means translation
    saw an outdated cache: writing would report on a spec that is gone.
    """
    generation = current_obj.get("metadata", {}).get("generation")
    observed = [c.observed_generation for c in _desired_conditions(desired)]
    return generation is not None and bool(observed) and min(observed) < generation


def dropped_entries(
    current_obj: Mapping[str, Any], desired: DesiredStatus, *, controller_name: str
) -> tuple[ParentReference, ...]:
    """The desired parent/ancestor refs `prepare_status` leaves out to respect maxItems."""
    if isinstance(desired, GatewayClassStatus | GatewayStatus | ListenerSetStatus | IngressStatus):
        return ()
    shape = _EntryList.for_desired(desired)
    stored = _stored_entries(current_obj.get("status"), shape.list_key)
    kept = [e for e in stored if shape.owned_ref(e, desired, controller_name) is None]
    room = max(shape.limit - len(kept), 0)
    return tuple(ref for ref, _ in shape.desired_entries(desired)[room:])


def prepare_status(
    current_obj: Mapping[str, Any], desired: DesiredStatus, *, controller_name: str, now: str
) -> dict[str, Any] | None:
    """The complete new status of `current_obj`, or None when nothing would change.

    `current_obj` is the object as stored (its `status` may be absent);
    `controller_name` identifies our entries in route and policy status.
    """
    stored: Mapping[str, Any] = current_obj.get("status") or {}
    new: dict[str, Any]
    if isinstance(desired, GatewayClassStatus):
        new = _gateway_class_status(stored, desired, now=now)
    elif isinstance(desired, GatewayStatus | ListenerSetStatus):
        new = _gateway_status(stored, desired, now=now)
    elif isinstance(desired, IngressStatus):
        new = _ingress_status(stored, desired)
    else:
        return _entry_list_status(stored, desired, controller_name=controller_name, now=now)
    return None if new == stored else new


def _entry_list_status(
    stored: Mapping[str, Any],
    desired: RouteStatus | PolicyStatus,
    *,
    controller_name: str,
    now: str,
) -> dict[str, Any] | None:
    shape = _EntryList.for_desired(desired)
    entries = shape.merge(stored, desired, controller_name=controller_name, now=now)
    # comparing the lists (not the statuses) also makes "nothing stored, nothing
    # desired" a no-op instead of a write of an empty list
    if entries == _stored_entries(stored, shape.list_key):
        return None
    return {**stored, shape.list_key: entries}


def _gateway_class_status(
    stored: Mapping[str, Any], desired: GatewayClassStatus, *, now: str
) -> dict[str, Any]:
    new = {k: v for k, v in stored.items() if k not in ("conditions", "supportedFeatures")}
    new["conditions"] = merge_conditions(stored.get("conditions"), desired.conditions, now=now)
    if desired.supported_features:
        # a list-map keyed by name: duplicates would be rejected, order is by name
        names = sorted(set(desired.supported_features))
        new["supportedFeatures"] = [{"name": name} for name in names]
    return new


def _gateway_status(
    stored: Mapping[str, Any], desired: GatewayStatus | ListenerSetStatus, *, now: str
) -> dict[str, Any]:
    """A Gateway's status, or a ListenerSet's (the same shape without addresses)."""
    decided = ("conditions", "listeners", "addresses", "attachedListenerSets")
    new = {k: v for k, v in stored.items() if k not in decided}
    new["conditions"] = merge_conditions(stored.get("conditions"), desired.conditions, now=now)
    stored_listeners = {
        listener.get("name"): listener
        for listener in stored.get("listeners") or ()
        if isinstance(listener, Mapping)
    }
    # empty lists are left out, as the Go types' omitempty does, so a Gateway
    # whose status never had them compares equal on the next write
    if desired.listeners:
        new["listeners"] = [
            _listener(listener, stored_listeners.get(listener.name), now=now)
            for listener in desired.listeners
        ]
    if isinstance(desired, GatewayStatus):
        if desired.addresses:
            new["addresses"] = [{"type": a.type, "value": a.value} for a in desired.addresses]
        if desired.attached_listener_sets is not None:
            new["attachedListenerSets"] = desired.attached_listener_sets
    return new


def _listener(
    desired: ListenerStatus, stored: Mapping[str, Any] | None, *, now: str
) -> dict[str, Any]:
    stored_conditions = stored.get("conditions") if stored is not None else None
    return {
        "name": desired.name,
        "supportedKinds": [{"group": k.group, "kind": k.kind} for k in desired.supported_kinds],
        "attachedRoutes": desired.attached_routes,
        "conditions": merge_conditions(stored_conditions, desired.conditions, now=now),
    }


@attrs.frozen
class _EntryList:
    """The shape of an atomic list of per-controller entries (route parents, policy ancestors)."""

    list_key: str  # "parents" or "ancestors"
    ref_key: str  # "parentRef" or "ancestorRef"
    limit: int  # the CRD's maxItems for the list

    @staticmethod
    def for_desired(desired: RouteStatus | PolicyStatus) -> _EntryList:
        return _ROUTE_PARENTS if isinstance(desired, RouteStatus) else _POLICY_ANCESTORS

    @staticmethod
    def desired_entries(
        desired: RouteStatus | PolicyStatus,
    ) -> list[tuple[ParentReference, tuple[Condition, ...]]]:
        if isinstance(desired, RouteStatus):
            return [(p.parent_ref, p.conditions) for p in desired.parents]
        return [(a.ancestor_ref, a.conditions) for a in desired.ancestors]

    def owned_ref(
        self, entry: Mapping[str, Any], desired: RouteStatus | PolicyStatus, controller_name: str
    ) -> ParentReference | None:
        """The entry's ref when the entry is ours and for `desired.gateway`, else None."""
        ref = entry.get(self.ref_key)
        if entry.get("controllerName") != controller_name or not isinstance(ref, Mapping):
            return None
        # a stored ref without namespace means the namespace of the route/policy itself
        parsed = ParentReference.from_api(dict(ref), default_namespace=desired.namespace)
        if isinstance(desired, RouteStatus):
            return parsed if desired.owns(parsed) else None
        return parsed if parsed.names(desired.gateway) else None

    def merge(
        self,
        stored: Mapping[str, Any],
        desired: RouteStatus | PolicyStatus,
        *,
        controller_name: str,
        now: str,
    ) -> list[dict[str, Any]]:
        kept: list[Any] = []
        replaced: dict[ParentReference, Mapping[str, Any]] = {}
        insert_at: int | None = None
        for entry in _stored_entries(stored, self.list_key):
            ref = self.owned_ref(entry, desired, controller_name)
            if ref is None:
                kept.append(entry)
                continue
            replaced.setdefault(ref, entry)
            if insert_at is None:
                insert_at = len(kept)
        room = max(self.limit - len(kept), 0)
        fresh = []
        for ref, conditions in self.desired_entries(desired)[:room]:
            before = replaced.get(ref)
            fresh.append(
                {
                    self.ref_key: ref.to_api(),
                    "controllerName": controller_name,
                    "conditions": merge_conditions(
                        before.get("conditions") if before is not None else None,
                        conditions,
                        now=now,
                    ),
                }
            )
        at = len(kept) if insert_at is None else insert_at
        return [*kept[:at], *fresh, *kept[at:]]


_ROUTE_PARENTS = _EntryList(list_key="parents", ref_key="parentRef", limit=MAX_ROUTE_PARENTS)
_POLICY_ANCESTORS = _EntryList(
    list_key="ancestors", ref_key="ancestorRef", limit=MAX_POLICY_ANCESTORS
)


def _stored_entries(stored: Mapping[str, Any] | None, list_key: str) -> list[Any]:
    return list((stored or {}).get(list_key) or ())


def _ingress_status(stored: Mapping[str, Any], desired: IngressStatus) -> dict[str, Any]:
    """`status.loadBalancer.ingress` exactly as desired (an IP or a hostname each);
    the rest of the status as stored."""
    entries = [
        {"ip": a.value} if a.type == "IPAddress" else {"hostname": a.value}
        for a in desired.addresses
    ]
    return {**stored, "loadBalancer": {"ingress": entries} if entries else {}}


def _desired_conditions(desired: DesiredStatus) -> Iterable[Condition]:
    if isinstance(desired, IngressStatus):
        # Ingress has no conditions: its status is never stale
        return
    if isinstance(desired, GatewayClassStatus):
        yield from desired.conditions
    elif isinstance(desired, GatewayStatus | ListenerSetStatus):
        yield from desired.conditions
        for listener in desired.listeners:
            yield from listener.conditions
    elif isinstance(desired, RouteStatus):
        for parent in desired.parents:
            yield from parent.conditions
    else:
        for ancestor in desired.ancestors:
            yield from ancestor.conditions
