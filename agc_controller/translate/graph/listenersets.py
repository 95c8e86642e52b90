"""ListenerSets: listeners that other objects (often other namespaces) add to a Gateway.

Joining. A ListenerSet joins the Gateway its spec.parentRef names when the
Gateway's spec.allowedListeners admits its namespace: None (the default) admits
none, Same the Gateway's own namespace, All every one, Selector the namespaces
whose labels match. A ListenerSet that does not join is Accepted=False and
Programmed=False, reason NotAllowed, and none of its listeners is looked at.

Merging, in the API's precedence: the Gateway's own listeners, then the joined
ListenerSets oldest first (metadata.creationTimestamp), then by
"namespace/name", each in spec order. The merged list is validated as one
Gateway's would be (graph.gateway does each listener), except that a conflict
has a winner: a listener that conflicts with an earlier one loses
(Conflicted=True, Accepted=False, Programmed=False, reason ProtocolConflict for
the same port with another protocol, HostnameConflict for the same port,
protocol and hostname) and the earlier one is untouched. The Gateway's own
listeners are decided by graph.gateway alone, so a ListenerSet can never take
one away; they only learn of an OverlappingTLSConfig with a ListenerSet's.

Names. A listener name is unique within its ListenerSet only. Routes reach it
by the ListenerSet's parentRef and sectionName; the model calls it
"<namespace>/<listenerset>/<listener>", which no Gateway listener name can be
(a SectionName has no "/"), so frontends, hosts, attachment counts and provider
problems keyed by listener name never mix two listeners.

Routes. A parentRef of kind ListenerSet reaches that ListenerSet's listeners
only (a Gateway parentRef, the Gateway's own only), and a listener's
allowedRoutes "Same" means the ListenerSet's namespace. So each joined
ListenerSet is also a GatewayNode keyed by the ListenerSet, its listeners under
their own names (`ListenerSetNode.parent`): graph.attach attaches routes to it
as to a Gateway, and `attach_to_parents` moves the attachments onto the
model-named listeners. A route naming a ListenerSet that did not join is not
accepted there (NotAllowedByListeners).

References. Certificates resolve in the ListenerSet's namespace, granted by
ReferenceGrants from kind ListenerSet: the Gateway's grants do not extend to
its ListenerSets, nor theirs to it. The Gateway's spec.tls.frontend applies to
their HTTPS listeners as to its own.

Status. A ListenerSet's status is ours entirely, decided by the translation of
the Gateway it names. Accepted: False/ParentNotAccepted when that Gateway is
not accepted; otherwise True when at least one of its listeners can be
programmed (reason Accepted, or ListenersNotValid when some cannot), else
False/ListenersNotValid. The Gateway counts the accepted ones in
status.attachedListenerSets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey, object_key
from agc_controller.core.resources import GATEWAY_GROUP, LISTENER_SET
from agc_controller.core.status import (
    ApplyResult,
    Condition,
    ListenerSetStatus,
    ListenerStatus,
    RouteParentStatus,
)
from agc_controller.translate.graph.attach import Attachment, attach_route
from agc_controller.translate.graph.gateway import GatewayNode, Listener, build_listener_entries
from agc_controller.translate.graph.routes import RouteNode
from agc_controller.translate.graph.selectors import selector_matches
from agc_controller.translate.hostnames import intersect
from agc_controller.translate.programmed import listener_programmed, with_programmed
from agc_controller.translate.refgrants import ReferenceGrants
from agc_controller.translate.settings import TranslateSettings
from agc_controller.translate.snapshot import Obj, Snapshot

_TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
_CONFLICTS = frozenset({c.R_HOSTNAME_CONFLICT, c.R_PROTOCOL_CONFLICT})


@attrs.frozen
class ListenerSetNode:
    key: ObjectKey  # kind ListenerSet
    generation: int
    # the Gateway admits it (spec.allowedListeners); False: nothing else was looked at
    joined: bool
    # Accepted (Programmed comes after apply)
    accepted: Condition
    # its listeners under their model names, in spec order (none when it did not join);
    # `index` is the position in the Gateway's merged list
    listeners: tuple[Listener, ...]
    # the ListenerSet as a route parent: its listeners under their own names, in the
    # same order as `listeners`
    parent: GatewayNode

    @property
    def is_accepted(self) -> bool:
        return self.accepted.status == "True"


@attrs.frozen
class GatewayParents:
    """A Gateway and the ListenerSets naming it: every parent its routes can name."""

    # the Gateway and its own listeners (the ones a Gateway parentRef reaches)
    gateway: GatewayNode
    # every ListenerSet naming the Gateway, in precedence order (those not joined last)
    listener_sets: tuple[ListenerSetNode, ...]
    # the Gateway with the joined ListenerSets' listeners after its own: what is programmed
    merged: GatewayNode
    # status.attachedListenerSets; None when the Gateway has no spec.allowedListeners
    attached: int | None

    def named_by(self, route: RouteNode) -> bool:
        """Whether one of the route's parentRefs is the Gateway or one of these ListenerSets."""
        return any(
            ref.names(self.gateway.key) or any(ref.names(ls.key) for ls in self.listener_sets)
            for ref in route.parent_refs
        )


def build_gateway_parents(
    node: GatewayNode,
    gateway: Obj,
    snapshot: Snapshot,
    grants: ReferenceGrants,
    settings: TranslateSettings,
) -> GatewayParents:
    """`node` (the Gateway `gateway` as graph.gateway built it) with its ListenerSets."""
    spec = gateway.get("spec") or {}
    allowed_listeners = spec.get("allowedListeners")
    admits = _admission(node.key, allowed_listeners, snapshot)
    naming = sorted(
        (ls for ls in snapshot.listener_sets.values() if names_gateway(ls, node.key)),
        key=lambda ls: (str(ls["metadata"].get("creationTimestamp", "")), object_key(ls)),
    )
    claims = _Claims()
    for listener in node.listeners:
        accepted = listener.conditions[0]
        # a Gateway listener that conflicts with another of the Gateway's still holds its
        # port and hostname against every ListenerSet
        if accepted.status == "True" or accepted.reason in _CONFLICTS:
            claims.add(listener.port, listener.protocol, listener.hostname)
    frontend_tls = (spec.get("tls") or {}).get("frontend") or {}
    joined: list[ListenerSetNode] = []
    refused: list[ListenerSetNode] = []
    for ls in naming:
        if not admits(ls["metadata"]["namespace"]):
            refused.append(_not_allowed(ls, node.key))
            continue
        first_index = len(node.listeners) + sum(len(j.listeners) for j in joined)
        joined.append(
            _joined(
                ls,
                node,
                claims,
                frontend_tls,
                first_index=first_index,
                snapshot=snapshot,
                grants=grants,
                settings=settings,
            )
        )
    own, joined = _mark_overlapping_tls(node.listeners, joined)
    gateway_node = node if own == node.listeners else attrs.evolve(node, listeners=own)
    merged_listeners = (*own, *(listener for ls in joined for listener in ls.listeners))
    return GatewayParents(
        gateway=gateway_node,
        listener_sets=(*joined, *refused),
        merged=attrs.evolve(gateway_node, listeners=merged_listeners),
        attached=(sum(ls.is_accepted for ls in joined) if allowed_listeners is not None else None),
    )


def names_gateway(listener_set: Obj, gateway: ObjectKey) -> bool:
    """Whether the ListenerSet's spec.parentRef is `gateway`."""
    ref = (listener_set.get("spec") or {}).get("parentRef") or {}
    return (
        ref.get("group", GATEWAY_GROUP) == GATEWAY_GROUP
        and ref.get("kind", "Gateway") == gateway.kind
        and (ref.get("namespace") or listener_set["metadata"]["namespace"]) == gateway.namespace
        and ref.get("name") == gateway.name
    )


def _admission(
    gateway: ObjectKey, allowed_listeners: Obj | None, snapshot: Snapshot
) -> Callable[[str], bool]:
    """Whether spec.allowedListeners admits ListenerSets of a namespace."""
    namespaces = (allowed_listeners or {}).get("namespaces") or {}
    allowed_from = namespaces.get("from", "None")
    if allowed_from == "All":
        return lambda _namespace: True
    if allowed_from == "Same":
        return lambda namespace: namespace == gateway.namespace
    if allowed_from == "Selector":
        selector = namespaces.get("selector")
        return lambda namespace: selector_matches(selector, _namespace_labels(snapshot, namespace))
    return lambda _namespace: False


def _namespace_labels(snapshot: Snapshot, namespace: str) -> Mapping[str, str]:
    obj = snapshot.namespaces.get(namespace)
    labels = dict((obj or {}).get("metadata", {}).get("labels") or {})
    # the API server sets this label on every Namespace; fixtures may omit it
    labels.setdefault("kubernetes.io/metadata.name", namespace)
    return labels


@attrs.define
class _Claims:
    """The (port, protocol, hostname) of every listener so far that holds its place."""

    held: list[tuple[int, str, str | None]] = attrs.field(factory=list)

    def add(self, port: int, protocol: str, hostname: str | None) -> None:
        self.held.append((port, protocol, hostname))

    def conflict(self, port: int, protocol: str, hostname: str | None) -> tuple[str, str] | None:
        """Why a listener loses to an earlier one, if it does (the rules of
        graph.gateway: one protocol per port, one listener per port and hostname)."""
        for held_port, held_protocol, held_hostname in self.held:
            if held_port != port:
                continue
            if held_protocol != protocol:
                return (
                    c.R_PROTOCOL_CONFLICT,
                    f"Port {port} is already used with protocol {held_protocol} by a listener "
                    "that takes precedence (the Gateway's own, or an older ListenerSet's)",
                )
            if held_hostname == hostname:
                return (
                    c.R_HOSTNAME_CONFLICT,
                    f"Port {port} and hostname {hostname or '(none)'} are already used by a "
                    "listener that takes precedence (the Gateway's own, or an older "
                    "ListenerSet's)",
                )
        return None


def _joined(
    listener_set: Obj,
    gateway: GatewayNode,
    claims: _Claims,
    frontend_tls: Obj,
    *,
    first_index: int,
    snapshot: Snapshot,
    grants: ReferenceGrants,
    settings: TranslateSettings,
) -> ListenerSetNode:
    meta = listener_set["metadata"]
    key = ObjectKey(LISTENER_SET.kind, meta["namespace"], meta["name"])
    generation = int(meta.get("generation", 1))

    def claim(
        port: int, protocol: str, hostname: str | None, accepted: bool
    ) -> tuple[str, str] | None:
        conflict = claims.conflict(port, protocol, hostname)
        if conflict is None and accepted:
            claims.add(port, protocol, hostname)
        return conflict

    own_names = build_listener_entries(
        (listener_set.get("spec") or {}).get("listeners") or [],
        namespace=key.namespace,
        from_kind=LISTENER_SET.kind,
        gateway_namespace=gateway.key.namespace,
        frontend_tls=frontend_tls,
        snapshot=snapshot,
        grants=grants,
        settings=settings,
        generation=generation,
        conflict_with_earlier=claim,
    )
    listeners = tuple(
        attrs.evolve(ls, name=model_name(key, ls.name), index=first_index + i)
        for i, ls in enumerate(own_names)
    )
    programmable = [ls for ls in listeners if ls.programmable]
    if not gateway.accepted:
        accepted = c.false(
            c.ACCEPTED,
            c.R_PARENT_NOT_ACCEPTED,
            f"Gateway {gateway.key.namespace}/{gateway.key.name} is not accepted",
            generation,
        )
    elif not programmable:
        accepted = c.false(
            c.ACCEPTED,
            c.R_LISTENERS_NOT_VALID,
            f"No listener is valid: {', '.join(ls.name for ls in own_names)}",
            generation,
        )
    elif len(programmable) < len(listeners):
        invalid = [
            own.name for own, ls in zip(own_names, listeners, strict=True) if not ls.programmable
        ]
        accepted = c.true(
            c.ACCEPTED,
            c.R_LISTENERS_NOT_VALID,
            f"Some listeners are not valid: {', '.join(invalid)}",
            generation,
        )
    else:
        accepted = c.true(c.ACCEPTED, c.R_ACCEPTED, "The ListenerSet is accepted", generation)
    return ListenerSetNode(
        key=key,
        generation=generation,
        joined=True,
        accepted=accepted,
        listeners=listeners,
        parent=_as_parent(gateway, key, own_names),
    )


def _not_allowed(listener_set: Obj, gateway: ObjectKey) -> ListenerSetNode:
    meta = listener_set["metadata"]
    key = ObjectKey(LISTENER_SET.kind, meta["namespace"], meta["name"])
    generation = int(meta.get("generation", 1))
    accepted = c.false(
        c.ACCEPTED,
        c.R_NOT_ALLOWED,
        f"Gateway {gateway.namespace}/{gateway.name} does not allow ListenerSets from namespace "
        f"{key.namespace} (its spec.allowedListeners)",
        generation,
    )
    return ListenerSetNode(
        key=key,
        generation=generation,
        joined=False,
        accepted=accepted,
        listeners=(),
        parent=GatewayNode(
            key=key,
            generation=generation,
            class_name="",
            listeners=(),
            conditions=(accepted,),
            accepted=False,
            addresses=(),
            backend_client_certificate=None,
            infrastructure_labels=(),
            infrastructure_annotations=(),
        ),
    )


def _as_parent(
    gateway: GatewayNode, key: ObjectKey, listeners: tuple[Listener, ...]
) -> GatewayNode:
    """The ListenerSet as graph.attach sees a parent: a node keyed by the ListenerSet."""
    return attrs.evolve(gateway, key=key, listeners=listeners)


def model_name(listener_set: ObjectKey, listener: str) -> str:
    """The name of a ListenerSet's listener in the model (unique within the Gateway)."""
    return f"{listener_set.namespace}/{listener_set.name}/{listener}"


def _mark_overlapping_tls(
    own: tuple[Listener, ...], joined: list[ListenerSetNode]
) -> tuple[tuple[Listener, ...], list[ListenerSetNode]]:
    """OverlappingTLSConfig on every TLS listener whose hostname overlaps another's on
    the same port, across the merged list (graph.gateway already marked the
    Gateway's own among themselves)."""
    tls = [
        ls
        for ls in (*own, *(listener for node in joined for listener in node.listeners))
        if ls.protocol in _TLS_PROTOCOLS and ls.conditions[0].status == "True"
    ]
    overlapping = {
        a.name
        for a in tls
        for b in tls
        if a is not b and a.port == b.port and intersect(a.hostname, b.hostname) is not None
    }
    if not overlapping:
        return own, joined

    def marked(ls: Listener) -> Listener:
        if ls.name not in overlapping or any(
            cond.type == c.OVERLAPPING_TLS_CONFIG for cond in ls.conditions
        ):
            return ls
        condition = c.true(
            c.OVERLAPPING_TLS_CONFIG,
            c.R_OVERLAPPING_HOSTNAMES,
            f"Another TLS listener on port {ls.port} has an overlapping hostname",
            ls.conditions[0].observed_generation,
        )
        return attrs.evolve(ls, conditions=(*ls.conditions, condition))

    nodes = []
    for node in joined:
        listeners = tuple(marked(ls) for ls in node.listeners)
        if listeners == node.listeners:
            nodes.append(node)
            continue
        parent = tuple(
            attrs.evolve(ls, name=own_name.name)
            for ls, own_name in zip(listeners, node.parent.listeners, strict=True)
        )
        nodes.append(
            attrs.evolve(
                node, listeners=listeners, parent=attrs.evolve(node.parent, listeners=parent)
            )
        )
    return tuple(marked(ls) for ls in own), nodes


def attach_to_parents(
    route: RouteNode, parents: GatewayParents, snapshot: Snapshot
) -> tuple[list[RouteParentStatus], list[Attachment]]:
    """graph.attach's `attach_route` for every parent in `parents` the route names:
    the parent entries in the route's parentRef order, and the attachments, those to
    a ListenerSet's listeners moved onto their model-named listeners."""
    statuses, attachments = attach_route(route, parents.gateway, snapshot)
    for ls in parents.listener_sets:
        if not any(ref.names(ls.key) for ref in route.parent_refs):
            continue
        found, attached = attach_route(route, ls.parent, snapshot)
        if not ls.joined:
            statuses.extend(_not_allowed_entry(entry, ls) for entry in found)
            continue
        by_name = {
            own.name: model for own, model in zip(ls.parent.listeners, ls.listeners, strict=True)
        }
        statuses.extend(found)
        attachments.extend(attrs.evolve(a, listener=by_name[a.listener.name]) for a in attached)
    refs = list(route.parent_refs)
    statuses.sort(key=lambda entry: refs.index(entry.parent_ref))
    return statuses, attachments


def _not_allowed_entry(entry: RouteParentStatus, ls: ListenerSetNode) -> RouteParentStatus:
    """A parent entry for a ListenerSet that did not join its Gateway: not accepted."""
    accepted = c.false(
        c.ACCEPTED,
        c.R_NOT_ALLOWED_BY_LISTENERS,
        f"ListenerSet {ls.key.namespace}/{ls.key.name} is not attached to its Gateway: "
        f"{ls.accepted.message}",
        entry.conditions[0].observed_generation,
    )
    return attrs.evolve(entry, conditions=(accepted, *entry.conditions[1:]))


def owned_listener_sets(
    route: Obj, gateway: ObjectKey, snapshot: Snapshot
) -> tuple[ObjectKey, ...]:
    """The ListenerSets whose parent entries in `route`'s status the work item of
    `gateway` decides: those naming `gateway`, and those that no longer exist
    (whoever reconciles first removes our entries for them)."""
    namespace = route["metadata"]["namespace"]
    refs: list[Obj] = list((route.get("spec") or {}).get("parentRefs") or [])
    refs += [p.get("parentRef") or {} for p in (route.get("status") or {}).get("parents") or []]
    owned = set()
    for ref in refs:
        if ref.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or ref.get("kind") != LISTENER_SET.kind:
            continue
        key = ObjectKey(
            LISTENER_SET.kind, str(ref.get("namespace") or namespace), str(ref.get("name"))
        )
        listener_set = snapshot.listener_sets.get(key.namespaced_name)
        if listener_set is None or names_gateway(listener_set, gateway):
            owned.add(key)
    return tuple(sorted(owned, key=lambda k: (k.namespace, k.name)))


def listener_set_status(
    node: ListenerSetNode, attached_routes: Mapping[str, int], result: ApplyResult | None
) -> ListenerSetStatus:
    """The ListenerSet's full status once its Gateway's `apply` went as `result`
    (`attached_routes`: routes per model listener name)."""
    g = node.generation
    if not node.is_accepted:
        programmed = c.false(c.PROGRAMMED, node.accepted.reason, node.accepted.message, g)
    elif result is None:
        programmed = c.false(c.PROGRAMMED, c.R_INVALID, "The Gateway is not programmed", g)
    elif result.programmed:
        programmed = c.true(c.PROGRAMMED, c.R_PROGRAMMED, "The listeners are programmed", g)
    else:
        programmed = c.false(c.PROGRAMMED, c.R_PARENT_NOT_PROGRAMMED, result.message, g)
    return ListenerSetStatus(
        namespace=node.key.namespace,
        name=node.key.name,
        conditions=(node.accepted, programmed),
        listeners=tuple(
            ListenerStatus(
                name=own.name,
                supported_kinds=model.supported_kinds,
                attached_routes=attached_routes.get(model.name, 0),
                conditions=with_programmed(model.conditions, listener_programmed(model, result, g)),
            )
            for own, model in zip(node.parent.listeners, node.listeners, strict=True)
        ),
    )
