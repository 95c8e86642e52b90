"""Policy attachment for our own policy kinds (group agc-controller.io).

One mechanism serves every kind (each kind only parses its spec and says what
it may target: `build_attached`):

Targets. `spec.targetRefs` names, in the policy's own namespace, what the kind
can govern (`FRONT_TARGETS` or `SERVICE_TARGETS`): a Gateway (optionally one
of its listeners by `sectionName`) or an HTTPRoute / GRPCRoute (optionally one
of its rules by name) for kinds about requests; a Service (optionally one of
its ports by name) for kinds about backends. The CRDs refuse other kinds.

Precedence. For one request exactly one policy of a kind is in force: the one
on the most specific target — route rule, then route, then listener, then
Gateway; Service port, then Service. Policies of a kind do not merge. Where
several valid policies of a kind name the same target, the oldest governs it
(then the first by namespace/name); the others are Conflicted on that target.
An invalid policy governs nothing and blocks nothing — except where the kind
fails closed (AuthPolicy: `fail_closed`): then an invalid policy still governs
its targets, with a value that refuses every request, so that a typo in a
policy meant to keep clients out never lets them all in.

Status. A policy has one `status.ancestors` entry per Gateway it reaches: the
Gateway it targets, each Gateway a targeted route is attached to, and each
Gateway with a route sending to a targeted Service. That Gateway's work item
decides the entry: Accepted=True when the policy governs one of its targets
there (the message says where the provider does otherwise than the spec says,
if it does); False with reason Invalid (the spec, or the provider, cannot
honour it: the field is named), TargetNotFound (every sectionName there names
no listener, rule or port) or Conflicted (another policy governs each target).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Generic, TypeVar

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey, namespaced_name
from agc_controller.core.resources import GATEWAY_GROUP
from agc_controller.core.status import Condition
from agc_controller.translate.snapshot import Obj, Snapshot

T = TypeVar("T")

# the route kinds a policy can target (a rule by its name)
ROUTE_TARGET_KINDS = frozenset({"HTTPRoute", "GRPCRoute"})
# (group, kind) a kind about requests can target, and one about backends
FRONT_TARGETS = frozenset(
    {(GATEWAY_GROUP, "Gateway"), *((GATEWAY_GROUP, kind) for kind in ROUTE_TARGET_KINDS)}
)
SERVICE_TARGETS = frozenset({("", "Service")})
# the web application firewall inspects HTTP requests: gRPC streams are not its
WAF_TARGETS = frozenset({(GATEWAY_GROUP, "Gateway"), (GATEWAY_GROUP, "HTTPRoute")})

# a policy object's parser: the value the data plane needs, or None and why not
# (the field named)
Parse = Callable[[Obj], "tuple[T | None, str | None]"]


@attrs.frozen(cache_hash=True)
class Target:
    """What a policy governs: a Gateway, route or Service, or one listener, rule or
    port of it."""

    object: ObjectKey  # Gateway, HTTPRoute, GRPCRoute or Service
    section: str | None


@attrs.frozen
class PolicyNode(Generic[T]):
    key: ObjectKey
    generation: int
    # RFC 3339 creation time; sorts like time
    created: str
    # spec.targetRefs, in order (a ref of a kind that cannot be targeted is None)
    targets: tuple[Target | None, ...]
    # what the data plane needs; None when the spec cannot be honoured (or the
    # kind's fail-closed value)
    value: T | None
    # why not (the field named), when it cannot
    problem: str | None
    # what the provider does otherwise than the valid spec says (the Accepted message
    # tells), if anything
    note: str | None = None


@attrs.frozen
class AttachedPolicies(Generic[T]):
    """The policies of one kind in a snapshot, and which governs each target."""

    kind: str
    nodes: tuple[PolicyNode[T], ...]
    # target -> the policy governing it (valid ones, and invalid ones failing closed)
    winners: Mapping[Target, PolicyNode[T]]

    def for_rule(
        self, gateway: ObjectKey, listener: str, route: ObjectKey, rule_name: str | None
    ) -> tuple[Target, PolicyNode[T]] | None:
        """The policy in force on one route rule served by `listener`, with the target
        it governs through (most specific first); None when none is."""
        if not self.winners:
            return None
        for target in (
            Target(route, rule_name) if rule_name is not None else None,
            Target(route, None),
            Target(gateway, listener),
            Target(gateway, None),
        ):
            if target is not None and (node := self.winners.get(target)) is not None:
                return target, node
        return None

    def for_service(self, service: ObjectKey, port_name: str | None) -> PolicyNode[T] | None:
        """The policy in force on one port of a Service (its own first)."""
        if not self.winners:
            return None
        if port_name is not None and (node := self.winners.get(Target(service, port_name))):
            return node
        return self.winners.get(Target(service, None))


def governing_name(policy: PolicyNode[T], target: Target) -> str:
    """The policy and the target it governs through, as data-plane state names them:
    rules governed through one target share what the name keys (a rate-limit
    budget), and a route change never renames it."""
    section = f"#{target.section}" if target.section is not None else ""
    return f"{policy.key.namespaced_name}|{target.object}{section}"


def build_attached(
    kind: str,
    objects: Iterable[Obj],
    parse: Parse[T],
    *,
    targets: frozenset[tuple[str, str]],
    provider_problem: Callable[[T], str | None],
    provider_note: Callable[[T], str | None] = lambda _value: None,
    fail_closed: T | None = None,
) -> AttachedPolicies[T]:
    """Parse every policy of `kind` and decide which governs each target.
    `targets` are the (group, kind) it may name; `provider_problem` says why the
    provider cannot honour a parsed spec, if it cannot: then the policy is
    invalid for that reason; `provider_note` what the provider does otherwise
    than a spec it accepts says, if anything. An invalid policy governs nothing,
    unless `fail_closed` is given: then it governs with that value."""
    nodes = sorted(
        (
            _node(
                kind,
                obj,
                parse,
                targets,
                provider_problem=provider_problem,
                provider_note=provider_note,
                fail_closed=fail_closed,
            )
            for obj in objects
        ),
        key=lambda p: (p.created, p.key.namespace, p.key.name),
    )
    winners: dict[Target, PolicyNode[T]] = {}
    for node in nodes:
        if node.value is None:
            continue
        for target in node.targets:
            if target is not None:
                winners.setdefault(target, node)
    return AttachedPolicies(kind=kind, nodes=tuple(nodes), winners=winners)


def _node(
    kind: str,
    obj: Obj,
    parse: Parse[T],
    allowed: frozenset[tuple[str, str]],
    *,
    provider_problem: Callable[[T], str | None],
    provider_note: Callable[[T], str | None],
    fail_closed: T | None,
) -> PolicyNode[T]:
    meta = obj["metadata"]
    namespace = meta["namespace"]
    spec = obj.get("spec") or {}
    targets = tuple(_target(ref, namespace, allowed) for ref in spec.get("targetRefs") or [])
    value, problem = parse(obj)
    if problem is None:
        for i, target in enumerate(targets):
            if target is None:
                value, problem = None, f"spec.targetRefs[{i}] must name {_kinds(allowed)}"
                break
    if value is not None and (refused := provider_problem(value)) is not None:
        value, problem = None, refused
    note = provider_note(value) if value is not None and problem is None else None
    if problem is not None and fail_closed is not None:
        value = fail_closed
        problem += "; requests to its targets are refused until it is fixed"
    return PolicyNode(
        key=ObjectKey(kind, namespace, str(meta["name"])),
        generation=int(meta.get("generation", 1)),
        created=str(meta.get("creationTimestamp", "")),
        targets=targets,
        value=value,
        problem=problem,
        note=note,
    )


def _kinds(allowed: frozenset[tuple[str, str]]) -> str:
    """`allowed` for people: "a Gateway, GRPCRoute or HTTPRoute of group g"."""
    groups = sorted({group for group, _ in allowed})
    parts = []
    for group in groups:
        kinds = sorted(kind for g, kind in allowed if g == group)
        named = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"
        parts.append(f"a {named} of group {group or 'core'}")
    return " or ".join(parts)


def _target(ref: Obj, namespace: str, allowed: frozenset[tuple[str, str]]) -> Target | None:
    kind = ref.get("kind")
    if (ref.get("group"), kind) not in allowed:
        return None
    section = ref.get("sectionName")
    return Target(ObjectKey(str(kind), namespace, str(ref.get("name"))), section or None)


@attrs.frozen
class Reach:
    """What one Gateway's translation knows of the targets policies can name."""

    gateway: ObjectKey
    # the Gateway's own listener names
    listeners: frozenset[str]
    # every route attached to the Gateway -> the names of its rules (as written)
    routes: Mapping[ObjectKey, frozenset[str]]
    # every Service an attached route sends to -> the names of its ports
    services: Mapping[ObjectKey, frozenset[str]] = attrs.field(factory=dict)

    def reaches(self, target: Target) -> bool:
        """Whether `target` is the Gateway, a route attached to it or a Service
        such a route sends to."""
        return (
            target.object == self.gateway
            or target.object in self.routes
            or target.object in self.services
        )

    def section_problem(self, index: int, target: Target) -> str | None:
        """Why `target`'s sectionName names nothing here, if it does not."""
        if target.section is None:
            return None
        if target.object == self.gateway:
            if target.section in self.listeners:
                return None
            return (
                f"spec.targetRefs[{index}].sectionName {target.section!r} is not a listener "
                f"of Gateway {target.object.name}"
            )
        if target.object.kind == "Service":
            if target.section in self.services[target.object]:
                return None
            return (
                f"spec.targetRefs[{index}].sectionName {target.section!r} is not a port name "
                f"of Service {target.object.name}"
            )
        if target.section in self.routes.get(target.object, frozenset()):
            return None
        return (
            f"spec.targetRefs[{index}].sectionName {target.section!r} is not a rule name of "
            f"{target.object.kind} {target.object.name}"
        )


def reached_policies(attached: AttachedPolicies[T], reach: Reach) -> list[PolicyNode[T]]:
    """The policies with a target the Gateway of `reach` reaches, in name order."""
    found = [
        node
        for node in attached.nodes
        if any(t is not None and reach.reaches(t) for t in node.targets)
    ]
    return sorted(found, key=lambda p: (p.key.namespace, p.key.name))


def ancestor_conditions(
    attached: AttachedPolicies[T],
    node: PolicyNode[T],
    reach: Reach,
    caveat: Callable[[int, Target], str | None] = lambda _i, _t: None,
) -> tuple[Condition, ...]:
    """The Accepted condition of `node` for the Gateway of `reach` (see the module
    docstring). `caveat(i, target)` says what the policy cannot do for a target
    it governs there (the Accepted message lists it), if anything."""
    g = node.generation
    if node.problem is not None:
        return (c.false(c.ACCEPTED, c.R_INVALID, node.problem, g),)
    missing: list[str] = []
    lost: list[str] = []
    notes: list[str] = []
    governs = False
    for i, target in enumerate(node.targets):
        if target is None or not reach.reaches(target):
            continue
        if (section_problem := reach.section_problem(i, target)) is not None:
            missing.append(section_problem)
            continue
        winner = attached.winners[target]
        if winner.key == node.key:
            governs = True
            if (note := caveat(i, target)) is not None:
                notes.append(note)
        else:
            lost.append(
                f"spec.targetRefs[{i}] is governed by {attached.kind} "
                f"{namespaced_name(winner.key.namespace, winner.key.name)}, which takes "
                "precedence (older, or first by namespace/name)"
            )
    if governs:
        provider = [node.note] if node.note is not None else []
        return (
            c.true(
                c.ACCEPTED,
                c.R_ACCEPTED,
                c.join_problems(["The policy is accepted", *lost, *provider, *notes]),
                g,
            ),
        )
    if lost:
        return (c.false(c.ACCEPTED, c.R_CONFLICTED, c.join_problems(lost), g),)
    return (c.false(c.ACCEPTED, c.R_TARGET_NOT_FOUND, c.join_problems(missing), g),)


def reach_of(
    gateway: ObjectKey,
    listeners: Iterable[str],
    attached_routes: Iterable[ObjectKey],
    services: Iterable[ObjectKey],
    snapshot: Snapshot,
) -> Reach:
    """The Reach of one Gateway: its listeners, its attached routes' rule names (read
    from the routes as written, so a rule the provider dropped is still found) and
    the port names of the Services they send to."""
    routes: dict[ObjectKey, frozenset[str]] = {}
    for key in attached_routes:
        if key.kind not in ROUTE_TARGET_KINDS:
            continue
        table = snapshot.http_routes if key.kind == "HTTPRoute" else snapshot.grpc_routes
        route = table.get(key.namespaced_name) or {}
        routes[key] = frozenset(
            str(rule["name"])
            for rule in (route.get("spec") or {}).get("rules") or []
            if rule.get("name")
        )
    ports = {
        service: frozenset(
            str(p["name"])
            for p in ((snapshot.services.get(service.namespaced_name) or {}).get("spec") or {}).get(
                "ports"
            )
            or []
            if p.get("name")
        )
        for service in services
    }
    return Reach(gateway=gateway, listeners=frozenset(listeners), routes=routes, services=ports)
