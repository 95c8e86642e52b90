"""Ingress → Gateway API: the Ingresses of one IngressClass become one Gateway and its routes.

The same objects serve two ends: the controller translates them like any
Gateway's (so both providers, status and every later feature apply to Ingress
unchanged), and `agc-controller translate -o gateway-api` prints them for a
migration. What the conversion builds:

- one Gateway for the class: listener `http` (port 80, every host) and an HTTPS
  listener (443) per TLS host, certificates from the Ingresses' Secrets (with a
  ReferenceGrant in each Secret's namespace);
- one HTTPRoute per Ingress and host (`<ingress>-<host>`), a rule per path, in
  the Ingress's namespace, created when the Ingress was (route precedence ties
  go to the oldest, as they do between Ingresses in ingress-nginx);
- `spec.defaultBackend` as a route for every host that matches only what no other
  rule matches (`<ingress>-default-backend`).

Merging follows ingress-nginx: the paths of every Ingress for one host are
served together; a path (same host, type and value) defined twice is served by
the oldest Ingress (creation time, then namespace/name), and the other is told
so; the first TLS entry for a host (same order) gives its certificate; the oldest
default backend wins. A canary Ingress (`nginx.ingress.kubernetes.io/canary`)
adds its backend to the matching paths of the Ingress it shadows.

Pure and per change cheap: each Ingress's plan and routes are reused (the same
objects) while the Ingress, the Services it names by port name and what other
Ingresses decide for it are unchanged, so the translation's own memo sees
unchanged routes as unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator, Mapping
from typing import TypeVar

import attrs

from agc_controller.translate.ingress.objects import (
    DRAINING_POLICIES,
    HEALTH_CHECK_POLICIES,
    Built,
    Context,
    backend_tls_policy_key,
    build_backend_tls_policies,
    build_gateway,
    build_gateway_class,
    build_policies,
    build_routes,
    build_tls_routes,
    policy_grants,
)
from agc_controller.translate.ingress.plan import (
    GatewayTarget,
    PathKey,
    Plan,
    https_listener_name,
    plan_ingress,
)
from agc_controller.translate.ingress.together import (
    CONNECTION_DRAINING,
    HEALTH_PROBE,
    backend_protocols,
    beyond_the_provider,
    default_backend_owner,
    frontend_ports,
    passthrough_hosts,
    per_service,
    renamed_routes,
    shadowing_canaries,
    tls_certificates,
)
from agc_controller.translate.ingress.values import Note
from agc_controller.translate.snapshot import Obj
from agc_controller.translate.steps import run_to_end

T = TypeVar("T")


@attrs.frozen
class Conversion:
    gateway_class: Obj
    gateway: Obj
    # store key -> object
    http_routes: Mapping[str, Obj]
    reference_grants: Mapping[str, Obj]
    # TLSRoutes of ssl-passthrough hosts, by store key
    tls_routes: Mapping[str, Obj]
    # (Service "namespace/name", port) that speak h2c (backend-protocol GRPC): the
    # Service port's appProtocol, as `-o gateway-api` notes
    h2c_ports: frozenset[tuple[str, int]]
    # BackendTLSPolicies of backends spoken to over TLS, by store key
    backend_tls_policies: Mapping[str, Obj]
    # HealthCheckPolicies of backends an Ingress has probe annotations for, by store key
    health_check_policies: Mapping[str, Obj]
    # route store key -> the Ingress (store key) it comes from
    origins: Mapping[str, str]
    # policy kind (ours) -> store key -> the policies the Ingresses' annotations make
    policies: Mapping[str, Mapping[str, Obj]]
    # (policy kind, store key) -> the Ingress it comes from
    policy_origins: Mapping[tuple[str, str], str]
    # route store key -> the Ingress field each of its rules comes from, by index
    rule_fields: Mapping[str, tuple[str, ...]]
    # HTTPS listener name -> the Ingress whose TLS entry gives its certificate
    listener_origins: Mapping[str, str]
    # Ingress store key -> what its owner should hear about (Events); only Ingresses
    # with something to hear about
    notes: Mapping[str, tuple[Note, ...]]


@attrs.define
class ConversionMemo:
    """Plans and routes of the last conversion, reused while their inputs are the same."""

    plans: dict[str, Plan] = attrs.field(factory=dict)
    routes: dict[str, tuple[Plan, Context, GatewayTarget, Built]] = attrs.field(factory=dict)
    # the class-wide objects (Gateway, grants) by name, kept while equal
    shared: dict[str, object] = attrs.field(factory=dict)

    def stable(self, name: str, value: T) -> T:
        """`value`, or the previous one of that name when equal: the translation's
        memo takes an unchanged object by its identity."""
        previous = self.shared.get(name)
        if previous is not None and type(previous) is type(value) and previous == value:
            return previous
        self.shared[name] = value
        return value


# Ingresses conversion_steps goes through between two pauses (~5 us each when reused)
INGRESSES_PER_STEP = 500


def convert_ingresses(
    ingresses: Mapping[str, Obj],
    services: Mapping[str, Obj],
    target: GatewayTarget,
    *,
    memo: ConversionMemo | None = None,
) -> Conversion:
    """The Gateway API objects serving `ingresses` (all of one class)."""
    return run_to_end(conversion_steps(ingresses, services, target, memo=memo or ConversionMemo()))


def conversion_steps(
    ingresses: Mapping[str, Obj],
    services: Mapping[str, Obj],
    target: GatewayTarget,
    *,
    memo: ConversionMemo,
) -> Generator[None, None, Conversion]:
    """`convert_ingresses` in steps: it pauses (yields None) after every
    INGRESSES_PER_STEP Ingresses of each pass over them, so a caller on an event
    loop lets other work run meanwhile."""
    plans = []
    for i, (key, ingress) in enumerate(ingresses.items(), start=1):
        plans.append(_reused_plan(memo, key, ingress, services))
        if i % INGRESSES_PER_STEP == 0:
            yield
    plans.sort(key=lambda p: p.order)
    memo.plans = {p.key: p for p in plans}
    # what the Ingresses decide about each other, by Ingress
    notes: defaultdict[str, list[Note]] = defaultdict(list)

    primaries = [p for p in plans if p.annotations.canary is None]
    owners: dict[PathKey, str] = {}
    dropped: dict[str, set[PathKey]] = {}
    for plan in primaries:
        for path in plan.paths:
            owner = owners.setdefault(path.key, plan.key)
            if owner != plan.key:
                dropped.setdefault(plan.key, set()).add(path.key)
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "PathConflict",
                        f"{path.field}: host {path.host or '*'} path {path.key[2]} "
                        f"({path.key[1]}) is served by the older Ingress {owner}",
                    )
                )
    canaries = shadowing_canaries(plans, owners, notes)
    passthrough = passthrough_hosts(plans, notes)
    speaking = backend_protocols(plans, notes)
    certificates, tls_origins, grants = tls_certificates(plans, target, notes, passthrough)
    listeners = tuple((https_listener_name(host), host) for host in sorted(certificates))
    tls_hosts = frozenset(h for h in certificates if h)
    ports = frontend_ports(primaries, certificates)
    default_owner = default_backend_owner(plans, notes)
    unserved = beyond_the_provider(plans, target, notes)
    checked = per_service(HEALTH_PROBE, plans, notes)
    draining = per_service(CONNECTION_DRAINING, plans, notes)
    renamed = renamed_routes(plans)

    routes: dict[str, Obj] = {}
    origins: dict[str, str] = {}
    rule_fields: dict[str, tuple[str, ...]] = {}
    policies: dict[str, dict[str, Obj]] = {}
    # the BackendTLSPolicy of a Service is the oldest Ingress's speaking TLS to it
    policy_origins: dict[tuple[str, str], str] = {}
    for (service, _), (origin, protocol) in sorted(speaking.items()):
        if protocol.tls:
            policy_origins.setdefault(("BackendTLSPolicy", backend_tls_policy_key(service)), origin)
    drained = memo.stable("draining", DRAINING_POLICIES.build(draining))
    if drained:
        policies[DRAINING_POLICIES.kind] = drained
        for service, (origin, _) in draining.items():
            policy_origins[(DRAINING_POLICIES.kind, DRAINING_POLICIES.key(service))] = origin
    yield
    for i, plan in enumerate(primaries, start=1):
        if i % INGRESSES_PER_STEP == 0:
            yield
        redirects = plan.annotations.ssl_redirect or plan.annotations.force_ssl_redirect
        context = Context(
            dropped=frozenset(dropped.get(plan.key, ())),
            canaries=tuple(
                sorted(
                    ((k, ref, canary) for k, (ref, canary) in canaries.get(plan.key, {}).items()),
                    key=lambda item: item[0],
                )
            ),
            # only what the routes read: another host's new certificate changes none
            https_listeners=listeners if redirects else (),
            tls_hosts=tls_hosts.intersection(plan.hosts) if redirects else frozenset(),
            parents=ports.parents(plan, listeners),
            default_backend=plan.key == default_owner,
            renamed=tuple(sorted(renamed.get(plan.key, {}).items())),
            refused=plan.key in unserved,
        )
        built = _reused_routes(memo, plan, context, target)
        for key, route in built.routes.items():
            routes[key] = route.obj
            origins[key] = plan.key
            rule_fields[key] = route.fields
        for kind, objects in built.policies.items():
            for key, policy in objects.items():
                policies.setdefault(kind, {})[key] = policy
                policy_origins[(kind, key)] = plan.key
    memo.routes = {k: v for k, v in memo.routes.items() if k in memo.plans}
    return Conversion(
        gateway_class=memo.stable("gateway_class", build_gateway_class(target)),
        gateway=memo.stable(
            "gateway", build_gateway(target, certificates, passthrough, ports.listeners)
        ),
        http_routes=routes,
        tls_routes=memo.stable("tls_routes", build_tls_routes(passthrough, plans, target)),
        h2c_ports=memo.stable(
            "h2c",
            frozenset(
                (service, port)
                for (service, port), (_, protocol) in speaking.items()
                if protocol.h2c
            ),
        ),
        backend_tls_policies=memo.stable("backend_tls", build_backend_tls_policies(speaking)),
        health_check_policies=memo.stable("health", HEALTH_CHECK_POLICIES.build(checked)),
        policies=policies,
        policy_origins=policy_origins,
        reference_grants=memo.stable("grants", {**grants, **policy_grants(policies, target)}),
        origins={
            **origins,
            **{f"{p.namespace}/{p.route_name}": p.origin for p in passthrough.values()},
        },
        rule_fields=rule_fields,
        listener_origins={https_listener_name(h): k for h, k in tls_origins.items()},
        notes={
            p.key: (*p.notes, *notes.get(p.key, ())) for p in plans if p.notes or p.key in notes
        },
    )


def _reused_plan(memo: ConversionMemo, key: str, ingress: Obj, services: Mapping[str, Obj]) -> Plan:
    plan = memo.plans.get(key)
    if (
        plan is not None
        and plan.ingress is ingress
        and all(services.get(name) is seen for name, seen in plan.services)
    ):
        return plan
    return plan_ingress(key, ingress, services)


def _reused_routes(
    memo: ConversionMemo, plan: Plan, context: Context, target: GatewayTarget
) -> Built:
    known = memo.routes.get(plan.key)
    if known is not None and known[0] is plan and known[1] == context and known[2] == target:
        return known[3]
    routes = build_routes(plan, context, target)
    built = Built(
        routes=routes,
        policies={} if context.refused else build_policies(plan, routes, target),
    )
    memo.routes[plan.key] = (plan, context, target, built)
    return built
