"""Translation: snapshot → graph → ALB model + desired status. PURE.

No awaits, no clock, no I/O; output is sorted and deterministic, so the same
snapshot always yields an equal result. One call translates one Gateway (the
unit of work); `translate_gateway_class` decides a GatewayClass's status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import TypeVar

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import (
    ApplyResult,
    GatewayClassStatus,
    GatewayStatus,
    ListenerSetStatus,
    ListenerStatus,
    ParentReference,
    PolicyAncestorStatus,
    PolicyStatus,
    RouteStatus,
)
from agc_controller.translate.build import RulePolicies, build_load_balancer
from agc_controller.translate.capabilities import Capabilities
from agc_controller.translate.graph.attach import Attachment
from agc_controller.translate.graph.auth import build_auth
from agc_controller.translate.graph.backends import EndpointSource, endpoint_sources
from agc_controller.translate.graph.backendtlspolicy import Policies, build_policies
from agc_controller.translate.graph.gateway import GatewayNode, build_gateway
from agc_controller.translate.graph.gatewayclass import (
    gateway_class_status,
    is_accepted,
    is_ours,
)
from agc_controller.translate.graph.healthcheck import build_health_checks
from agc_controller.translate.graph.listenersets import (
    GatewayParents,
    ListenerSetNode,
    attach_to_parents,
    build_gateway_parents,
    listener_set_status,
    owned_listener_sets,
)
from agc_controller.translate.graph.loadbalancing import build_load_balancing
from agc_controller.translate.graph.policies import (
    AttachedPolicies,
    Reach,
    Target,
    ancestor_conditions,
    reach_of,
    reached_policies,
)
from agc_controller.translate.graph.ratelimit import build_rate_limits
from agc_controller.translate.graph.routes import STREAM_KINDS, RouteKind, build_route
from agc_controller.translate.graph.waf import build_wafs
from agc_controller.translate.memo import Memo, RouteEntry, changed_inputs, recording
from agc_controller.translate.model import (
    BackendHealth,
    LoadBalancer,
    LoadBalancing,
    WafRuleSet,
)
from agc_controller.translate.programmed import listener_programmed, with_programmed
from agc_controller.translate.refgrants import ReferenceGrants
from agc_controller.translate.settings import TranslateSettings
from agc_controller.translate.snapshot import Obj, Snapshot
from agc_controller.translate.steps import run_to_end

T = TypeVar("T")

__all__ = [
    "GatewayTranslation",
    "Memo",
    "Snapshot",
    "TranslateSettings",
    "translate_gateway",
    "translate_gateway_class",
    "translation_steps",
]


@attrs.frozen
class GatewayTranslation:
    gateway: ObjectKey
    # None when the Gateway is gone, not ours, or its class is not accepted
    node: GatewayNode | None
    # what to program; None means: remove this Gateway from the data plane
    load_balancer: LoadBalancer | None
    # listener name -> number of routes attached (Accepted=True)
    attached_routes: Mapping[str, int]
    route_statuses: tuple[RouteStatus, ...]
    policy_statuses: tuple[PolicyStatus, ...]
    # every ListenerSet naming the Gateway (graph/listenersets.py)
    listener_sets: tuple[ListenerSetNode, ...] = ()
    # status.attachedListenerSets; None: left out
    attached_listener_sets: int | None = None

    def gateway_status(self, result: ApplyResult | None) -> GatewayStatus | None:
        """The Gateway's full status once the provider said how `apply` went."""
        node = self.node
        if node is None:
            return None
        g = node.generation
        listeners = []
        for ls in node.listeners:
            listeners.append(
                ListenerStatus(
                    name=ls.name,
                    supported_kinds=ls.supported_kinds,
                    attached_routes=self.attached_routes.get(ls.name, 0),
                    conditions=with_programmed(ls.conditions, listener_programmed(ls, result, g)),
                )
            )
        if result is None:
            programmed = c.false(c.PROGRAMMED, c.R_INVALID, "The Gateway is not accepted", g)
        elif result.programmed:
            programmed = c.true(c.PROGRAMMED, c.R_PROGRAMMED, result.message, g)
        else:
            programmed = c.false(c.PROGRAMMED, result.reason, result.message, g)
        own = tuple(
            c.condition(pc.type, "True" if pc.status else "False", pc.reason, pc.message, g)
            for pc in (result.conditions if result else ())
        )
        return GatewayStatus(
            namespace=node.key.namespace,
            name=node.key.name,
            conditions=(*with_programmed(node.conditions, programmed), *own),
            listeners=tuple(listeners),
            addresses=result.addresses if result else (),
            attached_listener_sets=self.attached_listener_sets,
        )

    def listener_set_statuses(self, result: ApplyResult | None) -> tuple[ListenerSetStatus, ...]:
        """The status of every ListenerSet naming the Gateway, once `apply` went as `result`."""
        return tuple(
            listener_set_status(ls, self.attached_routes, result) for ls in self.listener_sets
        )


# route entries translation_steps rebuilds between two pauses (~0.1 ms each)
REBUILDS_PER_STEP = 32


def translate_gateway_class(
    snapshot: Snapshot, name: str, settings: TranslateSettings
) -> GatewayClassStatus | None:
    gateway_class = snapshot.gateway_classes.get(name)
    if gateway_class is None or not is_ours(gateway_class, settings):
        return None
    return gateway_class_status(gateway_class, settings)


def translate_gateway(
    snapshot: Snapshot, key: str, settings: TranslateSettings, *, memo: Memo | None = None
) -> GatewayTranslation:
    """Translate the Gateway `namespace/name` (which may be gone) and everything attached.

    `memo` carries sub-results from this Gateway's previous translation (memo.py):
    the result is the same with or without it, only cheaper with it.
    """
    return run_to_end(translation_steps(snapshot, key, settings, memo=memo or Memo()))


def translation_steps(
    snapshot: Snapshot, key: str, settings: TranslateSettings, *, memo: Memo
) -> Generator[None, None, GatewayTranslation]:
    """`translate_gateway` in steps: it pauses (yields None) after every
    REBUILDS_PER_STEP route entries it rebuilds and once all are there, and returns
    the translation. A caller on an event loop lets other work run at each
    pause, so a bulk of new routes or a first pass never holds the loop for long.
    After the last pause it runs to the end: steps abandoned at a pause leave
    `memo` consistent (its route entries are only replaced after it)."""
    if memo.settings != settings:
        memo.reset(settings)
    gateway_key = ObjectKey.parse("Gateway", key)
    gateway = snapshot.gateways.get(key)
    gateway_class = (
        snapshot.gateway_classes.get((gateway.get("spec") or {}).get("gatewayClassName", ""))
        if gateway
        else None
    )
    if gateway is None or gateway_class is None or not is_accepted(gateway_class, settings):
        return GatewayTranslation(
            gateway=gateway_key,
            node=None,
            load_balancer=None,
            attached_routes={},
            route_statuses=tuple(
                _clear_routes(_all_routes(snapshot), gateway_key, settings, snapshot)
            ),
            policy_statuses=tuple(_clear_policies(snapshot, gateway_key, settings, keep=set())),
        )

    grants = memo.stable("grants", ReferenceGrants.from_grants(snapshot.reference_grants))
    node = memo.stable(
        "gateway",
        build_gateway(
            gateway,
            snapshot,
            grants,
            settings,
            class_annotations=gateway_class["metadata"].get("annotations") or {},
        ),
    )
    # the Gateway with its ListenerSets: every parent its routes can name
    parents = memo.stable(
        "parents", build_gateway_parents(node, gateway, snapshot, grants, settings)
    )
    attachments: dict[ObjectKey, tuple[Attachment, ...]] = {}
    route_statuses: list[RouteStatus] = []
    unattached: list[tuple[RouteKind, Obj]] = []
    # backend name -> where its endpoints come from, for every backend an attached rule uses
    wanted: dict[str, EndpointSource] = {}
    entries: dict[tuple[str, str], RouteEntry] = {}
    changed = changed_inputs(memo.previous, snapshot) if memo.previous is not None else None
    rebuilt = 0
    for kind, routes in _route_tables(snapshot):
        for store_key, route in routes.items():
            entry = memo.routes.get((kind, store_key))
            if (
                entry is None
                or changed is None
                or entry.route is not route
                or entry.grants is not grants
                or entry.gateway is not parents
                or (changed and not changed.isdisjoint(entry.reads))
            ):
                entry = _route_entry(
                    route,
                    kind,
                    snapshot=snapshot,
                    grants=grants,
                    parents=parents,
                    settings=settings,
                )
                rebuilt += 1
                if rebuilt % REBUILDS_PER_STEP == 0:
                    yield
            entries[(kind, store_key)] = entry
            if entry.result is None:
                unattached.append((kind, route))
                continue
            attached, status, sources = entry.result
            attachments[entry.key] = attached
            route_statuses.append(status)
            for source in sources:
                wanted[source.name] = source
    yield
    memo.routes, memo.previous = entries, snapshot
    route_statuses.extend(_clear_routes(unattached, gateway_key, settings, snapshot))

    policies = memo.stable("policies", build_policies(snapshot, settings.capabilities))
    policy_statuses = _policy_statuses(policies, attachments, gateway_key)
    ours = _our_policies(
        snapshot,
        settings,
        memo,
        grants=grants,
        reach=lambda: reach_of(
            gateway_key,
            (ls.name for ls in node.listeners),
            attachments,
            {source.service for source in wanted.values()},
            snapshot,
        ),
        attachments=attachments,
    )
    policy_statuses.extend(ours.statuses)
    for source in ours.auth_sources:
        wanted[source.name] = source
    kept_policies = {(s.kind, s.namespace, s.name) for s in policy_statuses}
    policy_statuses.extend(_clear_policies(snapshot, gateway_key, settings, keep=kept_policies))

    load_balancer = (
        build_load_balancer(
            parents.merged,
            attachments,
            policies,
            ours.rules,
            tables=memo.hosts,
            endpoints=memo.endpoints(snapshot, wanted),
            health_checks=_health_checks(
                ours.health_checks,
                wanted=wanted,
                snapshot=snapshot,
                memo=memo,
                capabilities=settings.capabilities,
                tls=policies,
            ),
            load_balancing=_by_backend(ours.load_balancing, wanted),
            waf_rule_sets=ours.waf_rule_sets,
        )
        if node.accepted
        else None
    )
    counts: dict[str, set[ObjectKey]] = defaultdict(set)
    for route_key, attached in attachments.items():
        for attachment in attached:
            counts[attachment.listener.name].add(route_key)
    return GatewayTranslation(
        gateway=gateway_key,
        node=parents.gateway,
        load_balancer=load_balancer,
        attached_routes={name: len(routes) for name, routes in sorted(counts.items())},
        route_statuses=tuple(sorted(route_statuses, key=lambda s: (s.kind, s.namespace, s.name))),
        policy_statuses=tuple(sorted(policy_statuses, key=lambda s: (s.kind, s.namespace, s.name))),
        listener_sets=parents.listener_sets,
        attached_listener_sets=parents.attached,
    )


def _route_entry(
    route: Obj,
    kind: RouteKind,
    *,
    snapshot: Snapshot,
    grants: ReferenceGrants,
    parents: GatewayParents,
    settings: TranslateSettings,
) -> RouteEntry:
    """A route's node, attachments and status for the Gateway of `parents` (None: it
    names neither the Gateway nor one of its ListenerSets)."""
    view, reads = recording(snapshot)
    route_node = build_route(route, kind, view, grants, settings.capabilities)
    result: tuple[tuple[Attachment, ...], RouteStatus, tuple[EndpointSource, ...]] | None = None
    if parents.named_by(route_node):
        entries, attached = attach_to_parents(route_node, parents, view)
        status = RouteStatus(
            kind=kind,
            namespace=route_node.key.namespace,
            name=route_node.key.name,
            gateway=parents.gateway.key,
            parents=tuple(entries),
            listener_sets=owned_listener_sets(route, parents.gateway.key, view),
        )
        used = (b for rule in route_node.rules for b in rule.used_backends())
        result = (tuple(attached), status, endpoint_sources(used) if attached else ())
    return RouteEntry(
        route=route,
        key=route_node.key,
        grants=grants,
        gateway=parents,
        reads=reads(),
        result=result,
    )


def _route_tables(snapshot: Snapshot) -> Iterable[tuple[RouteKind, Mapping[str, Obj]]]:
    yield "HTTPRoute", snapshot.http_routes
    yield "GRPCRoute", snapshot.grpc_routes
    yield "TLSRoute", snapshot.tls_routes
    yield "TCPRoute", snapshot.tcp_routes
    yield "UDPRoute", snapshot.udp_routes


def _policy_statuses(
    policies: Policies, attachments: Mapping[ObjectKey, tuple[Attachment, ...]], gateway: ObjectKey
) -> list[PolicyStatus]:
    if not policies.by_service:
        return []
    services = {
        backend.service
        for attached in attachments.values()
        for a in attached
        for rule in a.route.rules
        for backend in rule.used_backends()
        if backend.service is not None
    }
    ancestor = ParentReference(name=gateway.name, namespace=gateway.namespace)
    found = {p.key: p for s in services for p in policies.by_service.get(s, ())}
    return [
        PolicyStatus(
            kind="BackendTLSPolicy",
            namespace=key.namespace,
            name=key.name,
            gateway=gateway,
            ancestors=(
                PolicyAncestorStatus(
                    ancestor_ref=ancestor,
                    conditions=policy.conditions(conflicted_with=policies.losers.get(key)),
                ),
            ),
        )
        for key, policy in sorted(found.items(), key=lambda kv: (kv[0].namespace, kv[0].name))
    ]


@attrs.frozen
class _OurPolicies:
    """Our policy kinds (group agc-controller.io) in one Gateway's translation."""

    # about requests: rules carry them
    rules: RulePolicies
    # about backends: the model has them per backend
    health_checks: AttachedPolicies[BackendHealth]
    load_balancing: AttachedPolicies[LoadBalancing]
    # their ancestor entries for the Gateway
    statuses: list[PolicyStatus]
    # the external authorization Services of the AuthPolicies reaching the Gateway
    auth_sources: tuple[EndpointSource, ...] = ()
    # the rule sets of the valid WebApplicationFirewallPolicies reaching it
    waf_rule_sets: tuple[WafRuleSet, ...] = ()


def _our_policies(
    snapshot: Snapshot,
    settings: TranslateSettings,
    memo: Memo,
    *,
    grants: ReferenceGrants,
    reach: Callable[[], Reach],
    attachments: Mapping[ObjectKey, tuple[Attachment, ...]],
) -> _OurPolicies:
    """Every kind of ours parsed (kept as the previous object while equal, so the host
    tables built on them hold), and their statuses for the Gateway `reach()` tells
    about. Without a policy of ours (most changes of most Gateways), nothing walks
    the routes: `reach` is not called."""
    capabilities = settings.capabilities
    rate_limits = memo.stable("rate_limits", build_rate_limits(snapshot, capabilities))
    auth = memo.stable(
        "auth",
        build_auth(snapshot, grants, provider_problem=capabilities.auth_problem),
    )
    health_checks = memo.stable("health_checks", build_health_checks(snapshot, capabilities))
    load_balancing = memo.stable("load_balancing", build_load_balancing(snapshot, capabilities))
    wafs = memo.stable("wafs", build_wafs(snapshot, capabilities.waf_problem))
    rules = memo.stable(
        "rule_policies", RulePolicies(rate_limits=rate_limits, auth=auth, wafs=wafs)
    )
    if not (
        rate_limits.nodes or auth.nodes or wafs.nodes or health_checks.nodes or load_balancing.nodes
    ):
        return _OurPolicies(
            rules=rules, health_checks=health_checks, load_balancing=load_balancing, statuses=[]
        )
    where = reach()
    streamed = {
        backend.service
        for key, attached in attachments.items()
        if key.kind in STREAM_KINDS
        for a in attached
        for rule in a.route.rules
        for backend in rule.backends
        if backend.service is not None
    }

    def stream_caveat(i: int, target: Target) -> str | None:
        if target.object not in streamed:
            return None
        return (
            f"spec.targetRefs[{i}]: connections of TCPRoutes, TLSRoutes and UDPRoutes to "
            f"Service {target.object.name} are not steered by its probes"
        )

    # only a Gateway-wide firewall policy asks (its status notes gRPC is not inspected)
    grpc_routes = bool(wafs.winners) and any(key.kind == "GRPCRoute" for key in attachments)

    def grpc_caveat(i: int, target: Target) -> str | None:
        if not grpc_routes or target.object.kind != "Gateway":
            return None
        return f"spec.targetRefs[{i}]: requests of GRPCRoutes are not inspected"

    return _OurPolicies(
        rules=rules,
        health_checks=health_checks,
        load_balancing=load_balancing,
        auth_sources=tuple(
            EndpointSource(name=ext.backend.name, service=ext.service, port_name=ext.port_name)
            for node in reached_policies(auth, where)
            if node.value is not None and (ext := node.value.external) is not None
        ),
        waf_rule_sets=tuple(
            node.value.rules
            for node in reached_policies(wafs, where)
            if node.value is not None and node.value.rules is not None
        ),
        statuses=[
            *_attached_policy_statuses(rate_limits, where),
            *_attached_policy_statuses(auth, where),
            *_attached_policy_statuses(wafs, where, grpc_caveat),
            *_attached_policy_statuses(load_balancing, where),
            *_attached_policy_statuses(health_checks, where, stream_caveat),
        ],
    )


def _health_checks(
    attached: AttachedPolicies[BackendHealth],
    *,
    wanted: Mapping[str, EndpointSource],
    snapshot: Snapshot,
    memo: Memo,
    capabilities: Capabilities,
    tls: Policies,
) -> dict[str, BackendHealth]:
    """Backend name -> its health checks: the HealthCheckPolicy governing it, else,
    where the provider asks, the probe its pods' readinessProbe describes if that
    speaks what the backend is spoken to in (HTTPS under a BackendTLSPolicy): one in
    the other scheme asks a port that speaks the other, and would fail on every pod."""
    found = _by_backend(attached, wanted)
    if capabilities.probes_from_readiness:
        derived = memo.readiness_checks(
            snapshot, {name: source for name, source in wanted.items() if name not in found}
        )
        for name, check in derived.items():
            source = wanted[name]
            speaks = (
                "HTTP" if tls.for_backend(source.service, source.port_name) is None else "HTTPS"
            )
            if check.protocol == speaks:
                found[name] = BackendHealth(probe=check)
    return dict(sorted(found.items()))


def _by_backend(
    attached: AttachedPolicies[T], wanted: Mapping[str, EndpointSource]
) -> dict[str, T]:
    """Backend name -> the value of the policy of a kind about backends governing it,
    for every backend one governs."""
    found = {}
    for name in sorted(wanted):
        source = wanted[name]
        node = attached.for_service(source.service, source.port_name)
        if node is not None and node.value is not None:
            found[name] = node.value
    return found


def _attached_policy_statuses(
    attached: AttachedPolicies[T],
    reach: Reach,
    caveat: Callable[[int, Target], str | None] = lambda _i, _t: None,
) -> list[PolicyStatus]:
    """The ancestor entry, for the Gateway of `reach`, of every policy of one of our
    kinds that reaches it (graph/policies.py)."""
    ancestor = ParentReference(name=reach.gateway.name, namespace=reach.gateway.namespace)
    return [
        PolicyStatus(
            kind=node.key.kind,
            namespace=node.key.namespace,
            name=node.key.name,
            gateway=reach.gateway,
            ancestors=(
                PolicyAncestorStatus(
                    ancestor_ref=ancestor,
                    conditions=ancestor_conditions(attached, node, reach, caveat),
                ),
            ),
        )
        for node in reached_policies(attached, reach)
    ]


def _ours_for(
    entries: list[Obj], gateway: ObjectKey, default_namespace: str, ref_field: str, controller: str
) -> bool:
    return any(
        entry.get("controllerName") == controller
        and ParentReference.from_api(
            entry.get(ref_field) or {}, default_namespace=default_namespace
        ).names(gateway)
        for entry in entries
    )


def _all_routes(snapshot: Snapshot) -> Iterable[tuple[RouteKind, Obj]]:
    for kind, routes in _route_tables(snapshot):
        for route in routes.values():
            yield kind, route


def _clear_routes(
    routes: Iterable[tuple[RouteKind, Obj]],
    gateway: ObjectKey,
    settings: TranslateSettings,
    snapshot: Snapshot,
) -> list[RouteStatus]:
    """Empty RouteStatus (remove ours) for `routes` still carrying our entry for `gateway`
    or for a ListenerSet whose entries its work item decides."""
    cleared = []
    for kind, route in routes:
        meta = route["metadata"]
        empty = RouteStatus(
            kind,
            meta["namespace"],
            meta["name"],
            gateway,
            (),
            listener_sets=owned_listener_sets(route, gateway, snapshot),
        )
        if any(
            entry.get("controllerName") == settings.controller_name
            and empty.owns(
                ParentReference.from_api(
                    entry.get("parentRef") or {}, default_namespace=meta["namespace"]
                )
            )
            for entry in (route.get("status") or {}).get("parents") or []
        ):
            cleared.append(empty)
    return cleared


def _clear_policies(
    snapshot: Snapshot,
    gateway: ObjectKey,
    settings: TranslateSettings,
    *,
    keep: set[tuple[str, str, str]],
) -> list[PolicyStatus]:
    cleared = []
    for kind, table in (
        ("BackendTLSPolicy", snapshot.backend_tls_policies),
        ("RateLimitPolicy", snapshot.rate_limit_policies),
        ("HealthCheckPolicy", snapshot.health_check_policies),
        ("BackendLoadBalancingPolicy", snapshot.load_balancing_policies),
        ("AuthPolicy", snapshot.auth_policies),
        ("WebApplicationFirewallPolicy", snapshot.waf_policies),
    ):
        for policy in table.values():
            meta = policy["metadata"]
            if (kind, meta["namespace"], meta["name"]) in keep:
                continue
            ancestors = (policy.get("status") or {}).get("ancestors") or []
            if _ours_for(
                ancestors, gateway, meta["namespace"], "ancestorRef", settings.controller_name
            ):
                cleared.append(PolicyStatus(kind, meta["namespace"], meta["name"], gateway, ()))
    return cleared
