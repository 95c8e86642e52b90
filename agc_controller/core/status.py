"""Desired status, as translation decides it and the status writer writes it.

Translation never reads the clock, so conditions carry no lastTransitionTime:
the writer sets it, keeping the existing one when a condition's status did not
change. Every object here is frozen and compares by value, so "nothing changed"
is an equality test.

Scope of ownership: Gateway and GatewayClass status belong to us entirely; in
route and policy status we own only the entries carrying our controllerName,
and each work item (one Gateway) owns only our entries whose parent/ancestor is
that Gateway (`RouteStatus.gateway`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from agc_controller.core.keys import ObjectKey
from agc_controller.core.resources import GATEWAY_GROUP

ConditionStatus = Literal["True", "False", "Unknown"]


@attrs.frozen
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str
    observed_generation: int

    def to_api(self, *, last_transition_time: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": last_transition_time,
        }


@attrs.frozen
class ParentReference:
    """A route's parentRef (or a policy's ancestorRef) with defaults filled in.

    `to_api` echoes the reference the way the route stated it (Gateway API
    requires it): group and kind always, namespace only when the route wrote
    it, sectionName and port only when set.
    """

    name: str
    namespace: str
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    section_name: str | None = None
    port: int | None = None
    # False when the route left namespace out (it then means the route's own);
    # not part of equality: both spellings name the same parent
    namespace_written: bool = attrs.field(default=True, eq=False)

    def to_api(self) -> dict[str, Any]:
        ref: dict[str, Any] = {
            "group": self.group,
            "kind": self.kind,
            "name": self.name,
        }
        if self.namespace_written:
            ref["namespace"] = self.namespace
        if self.section_name is not None:
            ref["sectionName"] = self.section_name
        if self.port is not None:
            ref["port"] = self.port
        return ref

    def names(self, parent: ObjectKey) -> bool:
        """Whether this reference is to `parent` (a Gateway, or a ListenerSet: a
        Gateway API kind, compared by `parent.kind`)."""
        return (
            self.group == GATEWAY_GROUP
            and self.kind == parent.kind
            and self.namespace == parent.namespace
            and self.name == parent.name
        )

    @classmethod
    def from_api(cls, ref: dict[str, Any], *, default_namespace: str) -> ParentReference:
        return cls(
            name=str(ref["name"]),
            namespace=str(ref.get("namespace") or default_namespace),
            group=str(ref.get("group", GATEWAY_GROUP)),
            kind=str(ref.get("kind", "Gateway")),
            section_name=ref.get("sectionName"),
            port=ref.get("port"),
            namespace_written=bool(ref.get("namespace")),
        )


@attrs.frozen
class GatewayClassStatus:
    name: str
    conditions: tuple[Condition, ...]
    # feature names as in sigs.k8s.io/gateway-api/pkg/features, sorted
    supported_features: tuple[str, ...]


@attrs.frozen
class RouteGroupKind:
    kind: str
    group: str = GATEWAY_GROUP


@attrs.frozen
class ListenerStatus:
    name: str
    supported_kinds: tuple[RouteGroupKind, ...]
    attached_routes: int
    conditions: tuple[Condition, ...]


@attrs.frozen
class GatewayAddress:
    type: str  # "IPAddress" or "Hostname"
    value: str


@attrs.frozen
class GatewayStatus:
    namespace: str
    name: str
    conditions: tuple[Condition, ...]
    listeners: tuple[ListenerStatus, ...]
    addresses: tuple[GatewayAddress, ...]
    # status.attachedListenerSets: the ListenerSets attached (Accepted); None when the
    # Gateway allows none (spec.allowedListeners unset), and the field is left out
    attached_listener_sets: int | None = None


@attrs.frozen
class ListenerSetStatus:
    """A ListenerSet's whole status: ours, like a Gateway's (written by the work item
    of the Gateway its spec.parentRef names)."""

    namespace: str
    name: str
    conditions: tuple[Condition, ...]
    # by the names in its spec (unique within the ListenerSet only)
    listeners: tuple[ListenerStatus, ...]


@attrs.frozen
class RouteParentStatus:
    parent_ref: ParentReference
    conditions: tuple[Condition, ...]


@attrs.frozen
class RouteStatus:
    """Our `status.parents` entries of one route for the parents that are `gateway`.

    Empty `parents` means: remove our entries for `gateway` (the route no longer
    references it, or it is no longer ours).

    Entries for a ListenerSet belong to the work item of the Gateway it attaches
    to: `listener_sets` are the ListenerSets whose entries this status also
    stands for (desired ones in `parents`, the rest removed).
    """

    kind: str  # HTTPRoute, GRPCRoute, TLSRoute
    namespace: str
    name: str
    gateway: ObjectKey
    parents: tuple[RouteParentStatus, ...]
    # sorted; ObjectKeys of kind ListenerSet
    listener_sets: tuple[ObjectKey, ...] = ()

    def owns(self, ref: ParentReference) -> bool:
        """Whether an entry of ours with parentRef `ref` is this status's to decide."""
        return ref.names(self.gateway) or any(ref.names(ls) for ls in self.listener_sets)


@attrs.frozen
class PolicyAncestorStatus:
    ancestor_ref: ParentReference
    conditions: tuple[Condition, ...]


@attrs.frozen
class PolicyStatus:
    """Our `status.ancestors` entries of one policy for ancestor `gateway` (empty: remove)."""

    kind: str  # BackendTLSPolicy
    namespace: str
    name: str
    gateway: ObjectKey
    ancestors: tuple[PolicyAncestorStatus, ...]


@attrs.frozen
class IngressStatus:
    """An Ingress's `status.loadBalancer.ingress`: where its class's data plane is
    reachable (empty: not programmed)."""

    namespace: str
    name: str
    addresses: tuple[GatewayAddress, ...]


DesiredStatus = (
    GatewayClassStatus
    | GatewayStatus
    | ListenerSetStatus
    | RouteStatus
    | PolicyStatus
    | IngressStatus
)


@attrs.frozen
class ProviderCondition:
    """A Gateway condition only the provider can decide (beyond Programmed)."""

    type: str
    status: bool
    reason: str
    message: str


@attrs.frozen
class ApplyResult:
    """What a data plane reported after programming one Gateway.

    It decides the Gateway's and its listeners' `Programmed` conditions and
    the Gateway's `status.addresses`, and whether the Gateway is tried again.
    """

    programmed: bool
    # a Programmed reason: Programmed, Invalid, Pending, AddressNotAssigned, AddressNotUsable
    reason: str
    message: str
    # True when time may lift a refusal: with programmed=False (a port another process
    # holds), or a condition of `conditions` pending on something outside (Azure DNS
    # access): the status says so, and the work queue retries with its backoff
    temporary: bool = False
    # the addresses the Gateway is reachable at (status.addresses)
    addresses: tuple[GatewayAddress, ...] = ()
    # listener name -> why the provider could not program it
    listener_problems: Mapping[str, str] = attrs.field(factory=dict)
    # the Gateway's conditions of the provider's own (e.g. its mesh identity)
    conditions: tuple[ProviderCondition, ...] = ()
