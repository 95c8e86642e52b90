"""Attach routes to one Gateway's listeners and decide each parent entry's conditions.

Per (route, parentRef to this Gateway), stop at the first failure (Gateway API):
listeners matching sectionName/port → allowed by namespace and kind →
hostname intersects → the route has at least one servable rule. ResolvedRefs
is always written, even on a rejected parent.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.status import Condition, ParentReference, RouteParentStatus
from agc_controller.translate.graph.gateway import GatewayNode, Listener
from agc_controller.translate.graph.routes import RouteNode
from agc_controller.translate.graph.selectors import selector_matches
from agc_controller.translate.hostnames import intersect
from agc_controller.translate.snapshot import Snapshot


@attrs.frozen
class Attachment:
    """A route attached to a listener, with the hostnames it serves there."""

    route: RouteNode
    listener: Listener
    hostnames: tuple[str, ...]


def attach_route(
    route: RouteNode, gateway: GatewayNode, snapshot: Snapshot
) -> tuple[list[RouteParentStatus], list[Attachment]]:
    statuses: list[RouteParentStatus] = []
    attachments: list[Attachment] = []
    generation = route.generation
    resolved = _resolved_refs(route, generation)
    partially = _partially_invalid(route, generation)
    namespace_labels = _namespace_labels(snapshot, route.key.namespace)
    for ref in route.parent_refs:
        if not ref.names(gateway.key):
            continue
        candidates = [
            ls
            for ls in gateway.listeners
            if (ref.section_name is None or ls.name == ref.section_name)
            and (ref.port is None or ls.port == ref.port)
        ]
        accepted: Condition
        found: list[Attachment] = []
        if not candidates:
            accepted = c.false(
                c.ACCEPTED,
                c.R_NO_MATCHING_PARENT,
                f"No listener of {gateway.key.kind} {gateway.key.namespace}/{gateway.key.name} "
                f"matches "
                f"{_selection(ref)}",
                generation,
            )
        else:
            allowed = [
                ls
                for ls in candidates
                if _namespace_allowed(ls, route, gateway, namespace_labels)
                and any(k.kind == route.kind for k in ls.supported_kinds)
            ]
            for ls in allowed:
                hostnames = _intersections(ls, route)
                if hostnames:
                    found.append(Attachment(route=route, listener=ls, hostnames=hostnames))
            if not allowed:
                accepted = c.false(
                    c.ACCEPTED,
                    c.R_NOT_ALLOWED_BY_LISTENERS,
                    f"No listener matching {_selection(ref)} allows {route.kind} routes from "
                    f"namespace {route.key.namespace}",
                    generation,
                )
            elif not found:
                accepted = c.false(
                    c.ACCEPTED,
                    c.R_NO_MATCHING_LISTENER_HOSTNAME,
                    "No hostname of the route intersects a listener hostname",
                    generation,
                )
            elif problem := route.accepted_problem:
                accepted = c.false(c.ACCEPTED, *problem, generation)
                found = []
            else:
                accepted = c.true(c.ACCEPTED, c.R_ACCEPTED, "The route is accepted", generation)
        attachments.extend(found)
        conds = [accepted, resolved]
        if partially and accepted.status == "True":
            conds.append(partially)
        statuses.append(RouteParentStatus(parent_ref=ref, conditions=tuple(conds)))
    return statuses, attachments


def _selection(ref: ParentReference) -> str:
    parts = []
    if ref.section_name is not None:
        parts.append(f"sectionName {ref.section_name!r}")
    if ref.port is not None:
        parts.append(f"port {ref.port}")
    return " and ".join(parts) or "the parentRef"


def _namespace_labels(snapshot: Snapshot, namespace: str) -> Mapping[str, str]:
    obj = snapshot.namespaces.get(namespace)
    labels = dict((obj or {}).get("metadata", {}).get("labels") or {})
    # the API server sets this label on every Namespace; fixtures may omit it
    labels.setdefault("kubernetes.io/metadata.name", namespace)
    return labels


def _namespace_allowed(
    listener: Listener, route: RouteNode, gateway: GatewayNode, labels: Mapping[str, str]
) -> bool:
    if listener.allowed_from == "All":
        return True
    if listener.allowed_from == "Same":
        return route.key.namespace == gateway.key.namespace
    if listener.allowed_from == "Selector":
        return selector_matches(listener.selector, labels)
    return False


def _intersections(listener: Listener, route: RouteNode) -> tuple[str, ...]:
    names = route.hostnames or (None,)
    found = {h for h in (intersect(listener.hostname, n) for n in names) if h is not None}
    return tuple(sorted(found))


def _resolved_refs(route: RouteNode, generation: int) -> Condition:
    if not route.unresolved:
        return c.true(c.RESOLVED_REFS, c.R_RESOLVED_REFS, "All references are resolved", generation)
    return c.false(
        c.RESOLVED_REFS,
        route.unresolved[0].reason,
        c.join_problems([p.message for p in route.unresolved]),
        generation,
    )


def _partially_invalid(route: RouteNode, generation: int) -> Condition | None:
    if not route.dropped or not route.rules or route.spec_problem:
        return None
    return c.true(
        c.PARTIALLY_INVALID,
        route.dropped[0][1],
        c.join_problems([m for _, _, m in route.dropped]),
        generation,
    )
