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

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Generator, Hashable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from agc_controller.core.keys import namespaced_name, object_key
from agc_controller.core.resources import GATEWAY_GROUP
from agc_controller.translate.hostnames import intersect
from agc_controller.translate.ingress.annotations import (
    APP_ROOT,
    Affinity,
    Annotations,
    BackendProtocol,
    Canary,
    Note,
    capture_template,
    in_namespace,
    parse_annotations,
)
from agc_controller.translate.snapshot import Obj
from agc_controller.translate.steps import run_to_end

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

HTTP_PORT = 80
HTTPS_PORT = 443
HTTP_LISTENER = "http"
# the name suffix of a route redirecting plain HTTP to https
_REDIRECT = "-https-redirect"
_POLICY_GROUP = "agc-controller.io"
_POLICY_API_VERSION = f"{_POLICY_GROUP}/v1alpha1"
_GATEWAY_API_VERSION = f"{GATEWAY_GROUP}/v1"
# a route name longer than this gets a digest instead of its tail
_MAX_NAME = 253


@attrs.frozen
class GatewayTarget:
    """Where the class's Gateway lives and whose it is."""

    namespace: str
    name: str
    gateway_class: str
    controller_name: str
    # the redirect status codes the provider serves: an HTTPS redirect it cannot send
    # as 308 goes out as 301 (as AGIC's does)
    redirect_codes: frozenset[int] = frozenset({301, 302, 303, 307, 308})
    # whether the provider takes a WAF policy of its own by id (Application Gateway's)
    waf_policy_reference: bool = True
    # the Gateway's annotations: the IngressClass's provider settings (e.g. which
    # Application Gateway, which frontend), as a Gateway's annotations carry them
    annotations: tuple[tuple[str, str], ...] = ()
    # whether the provider's rate limits take a burst (Application Gateway's do not)
    rate_limit_burst: bool = True


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


# (host, path type, path value): a path as Ingresses merge them
_PathKey = tuple[str, str, str]


@attrs.frozen
class _Path:
    host: str  # "" for every host
    match: tuple[tuple[str, str], ...]  # the Gateway API path match, as items
    backend: tuple[tuple[str, Any], ...] | None  # the backendRef, as items; None: none
    field: str  # where it is in the Ingress, for messages
    # the HTTPRouteFilter of its rules (a capture rewrite, a body limit), by name
    filter_name: str | None = None
    # (host, path type, path value): what two Ingresses' paths are compared by
    key: _PathKey = attrs.field(init=False)

    @key.default
    def _key(self) -> _PathKey:
        match = dict(self.match)
        return (self.host, match["type"], match["value"])


@attrs.frozen(eq=False)
class _Plan:
    """One Ingress read on its own: everything that does not depend on the others."""

    key: str
    ingress: Obj
    order: tuple[str, str]  # creation time, store key: older first
    annotations: Annotations
    notes: tuple[Note, ...]
    paths: tuple[_Path, ...]
    default_backend: tuple[tuple[str, Any], ...] | None
    # (hosts, Secret name or None); hosts empty: every host
    tls: tuple[tuple[tuple[str, ...], str | None], ...]
    # the Services read (by port name), as they were: reused while the same objects
    services: tuple[tuple[str, Obj | None], ...]
    # (namespace, name) of each route it makes, before collisions are settled
    route_names: tuple[tuple[str, str], ...] = attrs.field(init=False)

    @route_names.default
    def _route_names(self) -> tuple[tuple[str, str], ...]:
        namespace = self.ingress["metadata"].get("namespace", "")
        bases = {_base_name(self, path.host) for path in self.paths}
        if self.default_backend is not None:
            bases.add(_default_name(self))
        return tuple((namespace, base) for base in sorted(bases))

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(path.host for path in self.paths)


@attrs.frozen
class _Context:
    """What the other Ingresses decide for one Ingress's routes."""

    # its paths served by an older Ingress
    dropped: frozenset[_PathKey]
    # path -> (canary backendRef items, canary settings) from the canary shadowing it
    canaries: tuple[tuple[_PathKey, tuple[tuple[str, Any], ...], Canary], ...]
    # HTTPS listeners: (name, hostname or "")
    https_listeners: tuple[tuple[str, str], ...]
    # hosts with TLS
    tls_hosts: frozenset[str]
    # it serves the class's default backend
    default_backend: bool
    # route base name -> name, where two Ingresses' names would collide
    renamed: tuple[tuple[str, str], ...]
    # not served, for what the provider cannot do (its own annotations aside)
    refused: bool = False


@attrs.frozen
class _Route:
    obj: Obj
    # the Ingress field each of its rules comes from, by rule index
    fields: tuple[str, ...]
    # the Ingress's access annotations govern it (not an HTTPS redirect)
    governed: bool = True


@attrs.frozen
class _Built:
    """An Ingress's objects: its routes and the policies its annotations make."""

    routes: Mapping[str, _Route]
    # policy kind -> store key -> policy
    policies: Mapping[str, Mapping[str, Obj]]


@attrs.define
class ConversionMemo:
    """Plans and routes of the last conversion, reused while their inputs are the same."""

    plans: dict[str, _Plan] = attrs.field(factory=dict)
    routes: dict[str, tuple[_Plan, _Context, GatewayTarget, _Built]] = attrs.field(factory=dict)
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
    owners: dict[_PathKey, str] = {}
    dropped: dict[str, set[_PathKey]] = {}
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
    canaries = _canaries(plans, owners, notes)
    passthrough = _passthrough(plans, notes)
    speaking = _backend_protocols(plans, notes)
    certificates, tls_origins, grants = _tls(plans, target, notes, passthrough)
    listeners = tuple((_https_listener_name(host), host) for host in sorted(certificates))
    tls_hosts = frozenset(h for h in certificates if h)
    default_owner = _default_backend_owner(plans, notes)
    unserved = _beyond_the_provider(plans, target, notes)
    checked = _health_checks(plans, notes)
    renamed = _renamed(plans)

    routes: dict[str, Obj] = {}
    origins: dict[str, str] = {}
    rule_fields: dict[str, tuple[str, ...]] = {}
    policies: dict[str, dict[str, Obj]] = {}
    policy_origins: dict[tuple[str, str], str] = {}
    yield
    for i, plan in enumerate(primaries, start=1):
        if i % INGRESSES_PER_STEP == 0:
            yield
        redirects = plan.annotations.ssl_redirect or plan.annotations.force_ssl_redirect
        context = _Context(
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
        gateway_class=memo.stable(
            "gateway_class",
            {
                "apiVersion": _GATEWAY_API_VERSION,
                "kind": "GatewayClass",
                "metadata": {"name": target.gateway_class},
                "spec": {"controllerName": target.controller_name},
            },
        ),
        gateway=memo.stable("gateway", _gateway(target, certificates, passthrough)),
        http_routes=routes,
        tls_routes=memo.stable("tls_routes", _tls_routes(passthrough, plans, target)),
        h2c_ports=memo.stable(
            "h2c",
            frozenset(
                (service, port)
                for (service, port), (_, protocol) in speaking.items()
                if protocol.h2c
            ),
        ),
        backend_tls_policies=memo.stable("backend_tls", _backend_tls_policies(speaking)),
        health_check_policies=memo.stable("health", _health_check_policies(checked)),
        policies=policies,
        policy_origins=policy_origins,
        reference_grants=memo.stable("grants", {**grants, **_policy_grants(policies, target)}),
        origins={
            **origins,
            **{f"{p.namespace}/{p.route_name}": p.origin for p in passthrough.values()},
        },
        rule_fields=rule_fields,
        listener_origins={_https_listener_name(h): k for h, k in tls_origins.items()},
        notes={
            p.key: (*p.notes, *notes.get(p.key, ())) for p in plans if p.notes or p.key in notes
        },
    )


def _reused_plan(
    memo: ConversionMemo, key: str, ingress: Obj, services: Mapping[str, Obj]
) -> _Plan:
    plan = memo.plans.get(key)
    if (
        plan is not None
        and plan.ingress is ingress
        and all(services.get(name) is seen for name, seen in plan.services)
    ):
        return plan
    return _plan(key, ingress, services)


def _reused_routes(
    memo: ConversionMemo, plan: _Plan, context: _Context, target: GatewayTarget
) -> _Built:
    known = memo.routes.get(plan.key)
    if known is not None and known[0] is plan and known[1] == context and known[2] == target:
        return known[3]
    routes = _routes(plan, context, target)
    built = _Built(
        routes=routes,
        policies={} if context.refused else _policies(plan, routes, target),
    )
    memo.routes[plan.key] = (plan, context, target, built)
    return built


# --- one Ingress on its own -------------------------------------------------------


def _plan(key: str, ingress: Obj, services: Mapping[str, Obj]) -> _Plan:
    meta = ingress["metadata"]
    namespace = meta.get("namespace", "")
    spec = ingress.get("spec") or {}
    annotations, parse_notes = parse_annotations(meta.get("annotations") or {})
    notes = list(parse_notes)
    read: dict[str, Obj | None] = {}

    def backend_ref(backend: Obj, field: str) -> tuple[tuple[str, Any], ...]:
        ref, problem = _backend_ref(backend, namespace, services, read, field)
        if problem:
            notes.append(Note("Warning", "BackendNotFound", problem))
        return tuple(ref.items())

    paths: list[_Path] = []
    captures = capture_template(annotations.rewrite_target) if annotations.rewrite_target else None
    filtered = captures is not None or annotations.max_body_bytes is not None
    for i, rule in enumerate(spec.get("rules") or []):
        host = str(rule.get("host") or "").lower()
        for j, path in enumerate((rule.get("http") or {}).get("paths") or []):
            field = f"spec.rules[{i}].http.paths[{j}]"
            paths.append(
                _Path(
                    host=host,
                    match=tuple(_path_match(path, annotations).items()),
                    backend=backend_ref(path.get("backend") or {}, f"{field}.backend"),
                    field=field,
                    filter_name=f"{meta['name']}-filter-{i}-{j}" if filtered else None,
                )
            )
    default = spec.get("defaultBackend")
    return _Plan(
        key=key,
        ingress=ingress,
        order=(str(meta.get("creationTimestamp") or ""), key),
        annotations=annotations,
        notes=tuple(notes),
        paths=tuple(paths),
        default_backend=backend_ref(default, "spec.defaultBackend") if default else None,
        tls=tuple(
            (
                tuple(str(h).lower() for h in entry.get("hosts") or ()),
                entry.get("secretName") or None,
            )
            for entry in spec.get("tls") or []
        ),
        services=tuple(sorted(read.items(), key=lambda item: item[0])),
    )


def _path_match(path: Obj, annotations: Annotations) -> dict[str, str]:
    value = str(path.get("path") or "/")
    path_type = path.get("pathType") or "ImplementationSpecific"
    if path_type == "Exact":
        return {"type": "Exact", "value": value}
    if annotations.use_regex:
        # ingress-nginx's `location ~*`: case-insensitive, anchored at the start only
        return {"type": "RegularExpression", "value": f"(?i)(?:{value}).*"}
    if path_type == "ImplementationSpecific" and value.endswith("/*"):
        # AGIC's wildcard form
        value = value[:-2]
    return {"type": "PathPrefix", "value": value.rstrip("/") or "/"}


def _backend_ref(
    backend: Obj,
    namespace: str,
    services: Mapping[str, Obj],
    read: dict[str, Obj | None],
    field: str,
) -> tuple[dict[str, Any], str | None]:
    """The backendRef of an Ingress backend, and what is wrong with it (None: nothing).

    A Resource backend keeps its kind: translation refuses it (500), as it does an
    unknown backendRef kind. A port given by name is looked up in the Service.
    """
    resource = backend.get("resource")
    if resource:
        return {
            "group": resource.get("apiGroup") or "",
            "kind": resource.get("kind", ""),
            "name": resource.get("name", ""),
        }, None
    service = backend.get("service") or {}
    name = str(service.get("name", ""))
    port = service.get("port") or {}
    ref: dict[str, Any] = {"name": name}
    if port.get("number") is not None:
        ref["port"] = int(port["number"])
        return ref, None
    port_name = port.get("name")
    key = namespaced_name(namespace, name)
    found = read[key] = services.get(key)
    if found is None:
        # translation reports the missing Service
        return ref, None
    number = next(
        (
            p.get("port")
            for p in (found.get("spec") or {}).get("ports") or []
            if p.get("name") == port_name
        ),
        None,
    )
    if number is None:
        return ref, f"{field}: Service {key} has no port named {port_name!r}"
    ref["port"] = int(number)
    return ref, None


# --- what Ingresses decide together -------------------------------------------------


def _canaries(
    plans: Iterable[_Plan], owners: Mapping[_PathKey, str], notes: dict[str, list[Note]]
) -> dict[str, dict[_PathKey, tuple[tuple[tuple[str, Any], ...], Canary]]]:
    """Primary Ingress -> its paths shadowed by a canary -> (canary backend, settings)."""
    found: dict[str, dict[_PathKey, tuple[tuple[tuple[str, Any], ...], Canary]]] = {}
    for plan in plans:
        canary = plan.annotations.canary
        if canary is None or plan.annotations.refused:
            # a refused canary shadows nothing: its share stays with the primary
            continue
        for path in plan.paths:
            primary = owners.get(path.key)
            if primary is None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "CanaryWithoutPrimary",
                        f"{path.field}: no Ingress serves host {path.host or '*'} path "
                        f"{path.key[2]} for this canary to shadow",
                    )
                )
                continue
            taken = found.setdefault(primary, {})
            if path.key in taken or path.backend is None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "PathConflict",
                        f"{path.field}: an older canary already shadows host "
                        f"{path.host or '*'} path {path.key[2]}",
                    )
                )
                continue
            taken[path.key] = (path.backend, canary)
    return found


def _beyond_the_provider(
    plans: Iterable[_Plan], target: GatewayTarget, notes: defaultdict[str, list[Note]]
) -> frozenset[str]:
    """The Ingresses whose access guards the provider cannot honour: not served."""
    unserved = set()
    for plan in plans:
        if plan.annotations.waf_policy_id and not target.waf_policy_reference:
            unserved.add(plan.key)
            notes[plan.key].append(
                Note(
                    "Warning",
                    "UnsupportedAnnotation",
                    "appgw.ingress.kubernetes.io/waf-policy-for-path: a WAF policy by id is "
                    "Application Gateway's; this data plane cannot apply it, so the Ingress is "
                    "not served (its paths answer 500) rather than served unprotected",
                )
            )
    return frozenset(unserved)


def _backend_refs(plan: _Plan) -> set[tuple[str, int]]:
    """(Service "namespace/name", port) of every Service backend the Ingress names."""
    namespace = plan.ingress["metadata"].get("namespace", "")
    refs = [p.backend for p in plan.paths if p.backend is not None]
    if plan.default_backend is not None:
        refs.append(plan.default_backend)
    found = set()
    for items in refs:
        ref = dict(items)
        if not ref.get("kind") and "port" in ref:
            found.add((f"{namespace}/{ref['name']}", int(ref["port"])))
    return found


def _oldest_claims(
    claims: Iterable[tuple[str, K, V]],
    notes: defaultdict[str, list[Note]],
    conflict: Callable[[K, str], Note],
) -> dict[K, tuple[str, V]]:
    """Key -> (the Ingress holding it, its value), for claims (Ingress, key, value) in
    age order: the first claim of a key holds it; a later, different one is told
    `conflict(key, holder)`."""
    found: dict[K, tuple[str, V]] = {}
    for ingress, key, value in claims:
        held = found.setdefault(key, (ingress, value))
        if held[1] != value:
            notes[ingress].append(conflict(key, held[0]))
    return found


def _health_checks(
    plans: Iterable[_Plan], notes: defaultdict[str, list[Note]]
) -> dict[str, Mapping[str, object]]:
    """Service -> its probe (`default` block), from the oldest Ingress with probe
    annotations sending to it."""
    found = _oldest_claims(
        (
            (plan.key, service, probe)
            for plan in plans
            if (probe := plan.annotations.health_probe) is not None and not plan.annotations.refused
            for service in sorted({s for s, _ in _backend_refs(plan)})
        ),
        notes,
        lambda service, holder: Note(
            "Warning",
            "HealthProbeConflict",
            f"Service {service} is probed as the older Ingress {holder} says; this "
            "Ingress's health-probe annotations are not used for it",
        ),
    )
    return {service: probe for service, (_, probe) in found.items()}


def _health_check_policies(probes: Mapping[str, Mapping[str, object]]) -> dict[str, Obj]:
    policies = {}
    for service, probe in sorted(probes.items()):
        namespace, _, name = service.partition("/")
        policies[f"{namespace}/{name}-health"] = {
            "apiVersion": _POLICY_API_VERSION,
            "kind": "HealthCheckPolicy",
            "metadata": {"name": f"{name}-health", "namespace": namespace, "generation": 1},
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": name}],
                "default": dict(probe),
            },
        }
    return policies


def _backend_protocols(
    plans: Iterable[_Plan], notes: defaultdict[str, list[Note]]
) -> dict[tuple[str, int], tuple[str, BackendProtocol]]:
    """(Service, port) -> (the Ingress deciding it, how it is spoken to), for the
    backends of Ingresses with backend-protocol: the oldest decides a Service port."""
    claims = []
    for plan in plans:
        protocol = plan.annotations.backend_protocol
        if protocol is None or plan.annotations.refused:
            continue
        namespace = plan.ingress["metadata"].get("namespace", "")
        if protocol.ca_secret and not in_namespace(protocol.ca_secret, namespace).startswith(
            f"{namespace}/"
        ):
            notes[plan.key].append(
                Note(
                    "Warning",
                    "InvalidAnnotation",
                    f"proxy-ssl-secret {protocol.ca_secret}: a backend's CA must be in the "
                    "Service's namespace (a BackendTLSPolicy's CA references are local); "
                    "backend-protocol is not used",
                )
            )
            continue
        claims += [(plan.key, key, protocol) for key in sorted(_backend_refs(plan))]
    return _oldest_claims(
        claims,
        notes,
        lambda key, holder: Note(
            "Warning",
            "BackendProtocolConflict",
            f"Service {key[0]} port {key[1]} is spoken to as the older Ingress {holder} "
            "says; this Ingress's backend-protocol is not used for it",
        ),
    )


def _backend_tls_policies(
    speaking: Mapping[tuple[str, int], tuple[str, BackendProtocol]],
) -> dict[str, Obj]:
    """A BackendTLSPolicy per Service spoken to over TLS (all its ports: Gateway API's
    port sections name ports, which Ingress backends need not)."""
    policies: dict[str, Obj] = {}
    for (service, _), (_, protocol) in sorted(speaking.items()):
        if not protocol.tls:
            continue
        namespace, _, name = service.partition("/")
        validation: Obj = {"hostname": protocol.hostname}
        if protocol.ca_secret:
            # in the Service's namespace (others are refused in _backend_protocols)
            ca_name = protocol.ca_secret.rpartition("/")[2]
            validation["caCertificateRefs"] = [{"group": "", "kind": "Secret", "name": ca_name}]
        else:
            validation["wellKnownCACertificates"] = "System"
        policies.setdefault(
            f"{namespace}/{name}-backend-tls",
            {
                "apiVersion": _GATEWAY_API_VERSION,
                "kind": "BackendTLSPolicy",
                "metadata": {
                    "name": f"{name}-backend-tls",
                    "namespace": namespace,
                    "generation": 1,
                },
                "spec": {
                    "targetRefs": [{"group": "", "kind": "Service", "name": name}],
                    "validation": validation,
                },
            },
        )
    return policies


@attrs.frozen
class _Passthrough:
    """One host whose TLS goes through to a backend (ssl-passthrough)."""

    origin: str  # the Ingress
    namespace: str
    route_name: str
    backend: tuple[tuple[str, Any], ...]


def _passthrough(
    plans: Iterable[_Plan], notes: defaultdict[str, list[Note]]
) -> dict[str, _Passthrough]:
    """Host -> where its TLS goes, for the oldest ssl-passthrough Ingress naming it: the
    backend of its path "/" (or its first path)."""
    found: dict[str, _Passthrough] = {}
    for plan in plans:
        annotations = plan.annotations
        if not annotations.ssl_passthrough or annotations.refused or annotations.canary:
            continue
        by_host: dict[str, list[_Path]] = {}
        for path in plan.paths:
            by_host.setdefault(path.host, []).append(path)
        for host, paths in sorted(by_host.items()):
            root = next((p for p in paths if dict(p.match)["value"] == "/"), paths[0])
            if not host or root.backend is None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "InvalidAnnotation",
                        f"{root.field}: ssl-passthrough needs a host and a Service backend",
                    )
                )
                continue
            held = found.get(host)
            if held is not None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "PathConflict",
                        f"host {host}: its TLS already goes through to the older Ingress "
                        f"{held.origin}",
                    )
                )
                continue
            found[host] = _Passthrough(
                origin=plan.key,
                namespace=plan.ingress["metadata"].get("namespace", ""),
                route_name=f"{_base_name(plan, host)[: _MAX_NAME - 12]}-passthrough",
                backend=root.backend,
            )
    return found


def _tls_routes(
    passthrough: Mapping[str, _Passthrough], plans: Iterable[_Plan], target: GatewayTarget
) -> dict[str, Obj]:
    created = {p.key: p.ingress["metadata"].get("creationTimestamp") for p in plans}
    return {
        f"{p.namespace}/{p.route_name}": {
            "apiVersion": _GATEWAY_API_VERSION,
            "kind": "TLSRoute",
            "metadata": {
                "name": p.route_name,
                "namespace": p.namespace,
                "generation": 1,
                "creationTimestamp": created.get(p.origin),
            },
            "spec": {
                "parentRefs": [_parent(target, _tls_listener_name(host))],
                "hostnames": [host],
                "rules": [{"backendRefs": [dict(p.backend)]}],
            },
        }
        for host, p in sorted(passthrough.items())
    }


def _tls(
    plans: Iterable[_Plan],
    target: GatewayTarget,
    notes: dict[str, list[Note]],
    passthrough: Mapping[str, _Passthrough],
) -> tuple[dict[str, tuple[str, str]], dict[str, str], dict[str, Obj]]:
    """TLS host ("" every host) -> its Secret (namespace, name); TLS host -> the Ingress
    giving it; and the ReferenceGrants the Gateway needs to use them. A host whose TLS
    goes through to a backend has no certificate here."""
    certificates: dict[str, tuple[str, str]] = {}  # host -> (Secret namespace, name)
    origins: dict[str, str] = {}  # host -> the Ingress giving its certificate
    for plan in plans:
        if plan.annotations.canary is not None:
            continue
        namespace = plan.ingress["metadata"].get("namespace", "")
        for i, (hosts, secret) in enumerate(plan.tls):
            if secret is None:
                notes[plan.key].append(
                    Note(
                        "Warning",
                        "TLSSecretMissing",
                        f"spec.tls[{i}] names no secretName: its hosts are not served over HTTPS",
                    )
                )
                continue
            for host in hosts or ("",):
                if host in passthrough:
                    notes[plan.key].append(
                        Note(
                            "Warning",
                            "TLSConflict",
                            f"spec.tls[{i}]: host {host}'s TLS goes through to a backend "
                            f"(ssl-passthrough of {passthrough[host].origin}); {namespace}/"
                            f"{secret} is not used",
                        )
                    )
                    continue
                held = certificates.setdefault(host, (namespace, secret))
                origins.setdefault(host, plan.key)
                if held != (namespace, secret):
                    notes[plan.key].append(
                        Note(
                            "Warning",
                            "TLSConflict",
                            f"spec.tls[{i}]: host {host or '*'} already has Secret "
                            f"{held[0]}/{held[1]} from an older Ingress; {namespace}/{secret} "
                            "is not used",
                        )
                    )
    by_namespace: dict[str, set[str]] = {}
    for namespace, secret in certificates.values():
        if namespace != target.namespace:
            by_namespace.setdefault(namespace, set()).add(secret)
    grants = {
        namespaced_name(namespace, target.name): {
            "apiVersion": "gateway.networking.k8s.io/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": target.name, "namespace": namespace},
            "spec": {
                "from": [
                    {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": target.namespace}
                ],
                "to": [{"group": "", "kind": "Secret", "name": s} for s in sorted(secrets)],
            },
        }
        for namespace, secrets in sorted(by_namespace.items())
    }
    return certificates, origins, grants


def _default_backend_owner(plans: Iterable[_Plan], notes: dict[str, list[Note]]) -> str | None:
    owner: str | None = None
    for plan in plans:
        if plan.default_backend is None or plan.annotations.canary is not None:
            continue
        if owner is None:
            owner = plan.key
            continue
        notes[plan.key].append(
            Note(
                "Warning",
                "DefaultBackendConflict",
                f"spec.defaultBackend is not used: the older Ingress {owner} gives the "
                "class's default backend",
            )
        )
    return owner


def _renamed(plans: Iterable[_Plan]) -> dict[str, dict[str, str]]:
    """Route names that two Ingresses would share get a digest of the Ingress and host."""
    claimed: dict[tuple[str, str], str] = {}
    renamed: dict[str, dict[str, str]] = {}
    for plan in plans:
        for name in plan.route_names:
            base = name[1]
            owner = claimed.setdefault(name, plan.key)
            if owner != plan.key or len(base) > _MAX_NAME:
                digest = hashlib.sha256(f"{plan.key}|{base}".encode()).hexdigest()[:10]
                renamed.setdefault(plan.key, {})[base] = f"{base[: _MAX_NAME - 11]}-{digest}"
    return renamed


# --- building the objects ------------------------------------------------------------


def _gateway(
    target: GatewayTarget,
    certificates: Mapping[str, tuple[str, str]],
    passthrough: Mapping[str, _Passthrough],
) -> Obj:
    every_namespace = {"namespaces": {"from": "All"}}
    listeners: list[Obj] = [
        {
            "name": HTTP_LISTENER,
            "port": HTTP_PORT,
            "protocol": "HTTP",
            "allowedRoutes": every_namespace,
        }
    ]
    return {
        "apiVersion": _GATEWAY_API_VERSION,
        "kind": "Gateway",
        "metadata": {
            "name": target.name,
            "namespace": target.namespace,
            "generation": 1,
            **({"annotations": dict(target.annotations)} if target.annotations else {}),
        },
        "spec": {
            "gatewayClassName": target.gateway_class,
            "listeners": [
                *listeners,
                *(
                    _https_listener(host, secret, every_namespace)
                    for host, secret in sorted(certificates.items())
                ),
                *(
                    {
                        "name": _tls_listener_name(host),
                        "port": HTTPS_PORT,
                        "protocol": "TLS",
                        "hostname": host,
                        "tls": {"mode": "Passthrough"},
                        "allowedRoutes": {**every_namespace, "kinds": [{"kind": "TLSRoute"}]},
                    }
                    for host in sorted(passthrough)
                ),
            ],
        },
    }


def _https_listener(host: str, secret: tuple[str, str], allowed: Obj) -> Obj:
    listener: Obj = {"name": _https_listener_name(host), "port": HTTPS_PORT, "protocol": "HTTPS"}
    if host:
        listener["hostname"] = host
    listener["tls"] = {
        "mode": "Terminate",
        "certificateRefs": [{"kind": "Secret", "namespace": secret[0], "name": secret[1]}],
    }
    listener["allowedRoutes"] = allowed
    return listener


def _tls_listener_name(host: str) -> str:
    return _https_listener_name(host).replace("https", "tls", 1)


def _https_listener_name(host: str) -> str:
    if not host:
        return "https"
    name = "https-" + host.replace("*", "wildcard")
    if len(name) > _MAX_NAME:
        name = name[: _MAX_NAME - 11] + "-" + hashlib.sha256(host.encode()).hexdigest()[:10]
    return name


def _base_name(plan: _Plan, host: str) -> str:
    name = plan.ingress["metadata"]["name"]
    return f"{name}-{host.replace('*', 'wildcard')}" if host else f"{name}-any-host"


def _default_name(plan: _Plan) -> str:
    return f"{plan.ingress['metadata']['name']}-default-backend"


def _routes(plan: _Plan, context: _Context, target: GatewayTarget) -> dict[str, _Route]:
    """The Ingress's HTTPRoutes, by store key, each with the Ingress field of every rule."""
    meta = plan.ingress["metadata"]
    namespace = meta.get("namespace", "")
    names = dict(context.renamed)
    canaries = {key: (ref, canary) for key, ref, canary in context.canaries}
    by_host: dict[str, list[_Path]] = {}
    for path in plan.paths:
        if path.key not in context.dropped:
            by_host.setdefault(path.host, []).append(path)
    routes: dict[str, _Route] = {}

    def add(
        name: str,
        parents: list[Obj],
        hostnames: list[str],
        rules: list[tuple[str, Obj]],
    ) -> None:
        route: Obj = {
            "apiVersion": _GATEWAY_API_VERSION,
            "kind": "HTTPRoute",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "generation": meta.get("generation", 1),
                "creationTimestamp": meta.get("creationTimestamp"),
            },
            "spec": {
                "parentRefs": parents,
                **({"hostnames": hostnames} if hostnames else {}),
                "rules": [rule for _, rule in rules],
            },
        }
        routes[object_key(route)] = _Route(
            route, tuple(field for field, _ in rules), governed=not name.endswith(_REDIRECT)
        )

    annotations = plan.annotations
    refused = annotations.refused or context.refused
    for host, paths in sorted(by_host.items()):
        base = _base_name(plan, host)
        name = names.get(base, base)
        rules: list[tuple[str, Obj]] = []
        for path in paths:
            rules.extend(
                (path.field, rule)
                for rule in _rules(path, annotations, canaries.get(path.key), refused=refused)
            )
        if annotations.app_root and not refused:
            rules.insert(0, (f"{APP_ROOT} annotation", _app_root_rule(annotations.app_root)))
        redirect = annotations.force_ssl_redirect or (
            annotations.ssl_redirect and host in context.tls_hosts
        )
        hostnames = [host] if host else []
        https_status = annotations.ssl_redirect_status
        if https_status not in target.redirect_codes:
            https_status = 301
        if redirect:
            https = [
                _parent(target, listener)
                for listener, listener_host in context.https_listeners
                if intersect(listener_host or None, host or None) is not None
            ]
            if https:
                add(name, https, hostnames, rules)
            add(
                f"{name[: _MAX_NAME - len(_REDIRECT)]}{_REDIRECT}",
                [_parent(target, HTTP_LISTENER)],
                hostnames,
                [(path.field, _https_redirect_rule(path, https_status)) for path in paths],
            )
        else:
            add(name, [_parent(target, None)], hostnames, rules)
    if context.default_backend and plan.default_backend is not None:
        base = _default_name(plan)
        default_path = _Path(
            host="",
            match=(("type", "PathPrefix"), ("value", "/")),
            backend=plan.default_backend,
            field="spec.defaultBackend",
        )
        add(
            names.get(base, base),
            [_parent(target, None)],
            [],
            [
                (default_path.field, rule)
                for rule in _rules(default_path, annotations, None, refused=refused)
            ],
        )
    return routes


def _parent(target: GatewayTarget, section: str | None) -> Obj:
    parent: Obj = {"name": target.name, "namespace": target.namespace}
    if section is not None:
        parent["sectionName"] = section
    return parent


def _rules(
    path: _Path,
    annotations: Annotations,
    canary: tuple[tuple[tuple[str, Any], ...], Canary] | None,
    *,
    refused: bool,
) -> list[Obj]:
    """The HTTPRoute rules of one Ingress path (more than one when a canary shadows it)."""
    match: Obj = {"path": dict(path.match)}
    if refused:
        # no backend: every request it matches answers 500
        return [{"matches": [match]}]
    primary = dict(path.backend) if path.backend is not None else None
    filters, timeouts = _filters(match, annotations, path)
    redirect = annotations.redirect is not None

    def rule(matches: list[Obj], backends: list[Obj]) -> Obj:
        out: Obj = {"matches": matches}
        if filters:
            out["filters"] = filters
        if backends and not redirect:
            out["backendRefs"] = backends
        if timeouts and not redirect:
            out["timeouts"] = timeouts
        if annotations.affinity is not None and not redirect:
            out["sessionPersistence"] = _session_persistence(annotations.affinity)
        return out

    if canary is None or primary is None or redirect:
        return [rule([match], [primary] if primary is not None else [])]
    canary_ref, settings = dict(canary[0]), canary[1]
    rules: list[Obj] = []

    def routed(header: Obj, backend: Obj) -> None:
        rules.append(rule([{**match, "headers": [header]}], [backend]))

    if settings.header is not None:
        if settings.header_value is not None:
            routed({"name": settings.header, "value": settings.header_value}, canary_ref)
        elif settings.header_pattern is not None:
            routed(
                {
                    "type": "RegularExpression",
                    "name": settings.header,
                    "value": settings.header_pattern,
                },
                canary_ref,
            )
        else:
            routed({"name": settings.header, "value": "always"}, canary_ref)
            routed({"name": settings.header, "value": "never"}, primary)
    if settings.cookie is not None:
        cookie = re.escape(settings.cookie)
        for value, backend in (("always", canary_ref), ("never", primary)):
            routed(
                {
                    "type": "RegularExpression",
                    "name": "Cookie",
                    "value": f"(?:^|.*;\\s*){cookie}={value}(?:;.*|$)",
                },
                backend,
            )
    if settings.weight:
        weighted = [
            {**primary, "weight": settings.total - settings.weight},
            {**canary_ref, "weight": settings.weight},
        ]
        rules.append(rule([match], weighted))
    else:
        rules.append(rule([match], [primary]))
    return rules


def _filters(match: Obj, annotations: Annotations, path: _Path) -> tuple[list[Obj], Obj | None]:
    """The filters and timeouts an Ingress's annotations give each of its rules."""
    redirect = annotations.redirect
    if redirect is not None:
        spec: Obj = {
            "scheme": redirect.scheme,
            "hostname": redirect.hostname,
            "path": {"type": "ReplaceFullPath", "replaceFullPath": redirect.path},
            "statusCode": redirect.status,
        }
        if redirect.port is not None:
            spec["port"] = redirect.port
        return [{"type": "RequestRedirect", "requestRedirect": spec}], None
    filters: list[Obj] = []
    rewrite: Obj = {}
    if path.filter_name is not None:
        filters.append(
            {
                "type": "ExtensionRef",
                "extensionRef": {
                    "group": _POLICY_GROUP,
                    "kind": "HTTPRouteFilter",
                    "name": path.filter_name,
                },
            }
        )
    captures = annotations.rewrite_target and capture_template(annotations.rewrite_target)
    if annotations.rewrite_target is not None and not captures:
        rewrite["path"] = {"type": "ReplaceFullPath", "replaceFullPath": annotations.rewrite_target}
    elif annotations.backend_path_prefix is not None:
        if match["path"]["type"] == "PathPrefix":
            rewrite["path"] = {
                "type": "ReplacePrefixMatch",
                "replacePrefixMatch": annotations.backend_path_prefix,
            }
        else:
            rewrite["path"] = {
                "type": "ReplaceFullPath",
                "replaceFullPath": annotations.backend_path_prefix,
            }
    if annotations.upstream_host is not None:
        rewrite["hostname"] = annotations.upstream_host
    if rewrite:
        filters.append({"type": "URLRewrite", "urlRewrite": rewrite})
    if annotations.cors is not None:
        filters.append({"type": "CORS", "cors": dict(annotations.cors)})
    timeouts = (
        {"backendRequest": annotations.backend_timeout} if annotations.backend_timeout else None
    )
    return filters, timeouts


def _session_persistence(affinity: Affinity) -> Obj:
    persistence: Obj = {"sessionName": affinity.cookie, "type": "Cookie"}
    if affinity.max_age is not None:
        persistence["absoluteTimeout"] = f"{affinity.max_age}s"
        persistence["cookieConfig"] = {"lifetimeType": "Permanent"}
    return persistence


def _policies(
    plan: _Plan, routes: Mapping[str, _Route], target: GatewayTarget
) -> dict[str, dict[str, Obj]]:
    """The policies the Ingress's annotations make: one of each kind per route it
    governs (named as the route), so a policy never outgrows its targetRefs."""
    annotations = plan.annotations
    if annotations.refused:
        return {}
    specs: list[tuple[str, Obj]] = []
    auth = _auth_spec(annotations)
    if auth:
        specs.append(("AuthPolicy", auth))
    if annotations.rate_limit is not None:
        limit = annotations.rate_limit
        budget: Obj = {"requests": limit.requests, "unit": limit.unit}
        if target.rate_limit_burst:
            budget["burst"] = limit.burst
        specs.append(("RateLimitPolicy", {"limit": budget, "key": {"type": "ClientIP"}}))
    if annotations.waf_policy_id is not None:
        firewall: Obj = {"webApplicationFirewall": {"id": annotations.waf_policy_id}}
        specs.append(("WebApplicationFirewallPolicy", firewall))
    elif annotations.waf_detection:
        specs.append(("WebApplicationFirewallPolicy", {"mode": "Detection"}))
    found: dict[str, dict[str, Obj]] = {}
    filters = _path_filters(plan)
    if filters:
        found["HTTPRouteFilter"] = filters
    for key, route in sorted(routes.items()):
        if not route.governed:
            continue
        meta = route.obj["metadata"]
        for kind, spec in specs:
            found.setdefault(kind, {})[key] = {
                "apiVersion": _POLICY_API_VERSION,
                "kind": kind,
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "generation": meta["generation"],
                    "creationTimestamp": meta["creationTimestamp"],
                },
                "spec": {
                    "targetRefs": [
                        {"group": GATEWAY_GROUP, "kind": "HTTPRoute", "name": meta["name"]}
                    ],
                    **spec,
                },
            }
    return found


def _path_filters(plan: _Plan) -> dict[str, Obj]:
    """The HTTPRouteFilters of the Ingress's paths, one each: rewrite-target with
    capture groups (the path's regular expression matched from the start of the path,
    which, as nginx's rewrite does, it replaces whole) and proxy-body-size."""
    annotations = plan.annotations
    substitution = (
        capture_template(annotations.rewrite_target) if annotations.rewrite_target else None
    )
    namespace = plan.ingress["metadata"].get("namespace", "")
    found = {}
    for path in plan.paths:
        if path.filter_name is None:
            continue
        spec: Obj = {}
        if substitution is not None:
            spec["urlRewrite"] = {
                "path": {
                    "type": "ReplaceRegexMatch",
                    "replaceRegexMatch": {
                        "pattern": f"(?i)^(?:{_unwrapped(path.key[2])}).*",
                        "substitution": substitution,
                    },
                }
            }
        if annotations.max_body_bytes is not None:
            spec["requestBody"] = {"maxBytes": annotations.max_body_bytes}
        found[f"{namespace}/{path.filter_name}"] = {
            "apiVersion": _POLICY_API_VERSION,
            "kind": "HTTPRouteFilter",
            "metadata": {"name": path.filter_name, "namespace": namespace},
            "spec": spec,
        }
    return found


def _unwrapped(regex: str) -> str:
    """The Ingress path inside `_path_match`'s RegularExpression form."""
    return regex.removeprefix("(?i)(?:").removesuffix(").*")


def _auth_spec(annotations: Annotations) -> Obj:
    """The AuthPolicy spec (without targets) of the Ingress's access annotations."""
    spec: Obj = {}
    if annotations.ip_allow or annotations.ip_deny:
        access: Obj = {}
        if annotations.ip_deny:
            access["deny"] = list(annotations.ip_deny)
        if annotations.ip_allow:
            access["allow"] = list(annotations.ip_allow)
        spec["ipAccess"] = access
    if annotations.basic is not None:
        ref: Obj = {"name": annotations.basic.secret_name}
        if annotations.basic.secret_namespace:
            ref["namespace"] = annotations.basic.secret_namespace
        spec["basic"] = {"secretRef": ref, "key": "auth", "realm": annotations.basic.realm}
    if annotations.external_auth is not None:
        external = annotations.external_auth
        backend: Obj = {"name": external.service, "port": external.port}
        if external.namespace:
            backend["namespace"] = external.namespace
        spec["externalAuth"] = {"backendRef": backend, "path": external.path}
        if external.headers:
            spec["externalAuth"]["headersToBackend"] = list(external.headers)
    return spec


def _policy_grants(
    policies: Mapping[str, Mapping[str, Obj]], target: GatewayTarget
) -> dict[str, Obj]:
    """ReferenceGrants for AuthPolicies naming a Secret or Service of another namespace."""
    wanted: dict[str, set[tuple[str, str, str]]] = {}
    for policy in policies.get("AuthPolicy", {}).values():
        namespace = policy["metadata"]["namespace"]
        spec = policy["spec"]
        refs = [("Secret", (spec.get("basic") or {}).get("secretRef"))]
        refs.append(("Service", (spec.get("externalAuth") or {}).get("backendRef")))
        for kind, ref in refs:
            if ref and ref.get("namespace", namespace) != namespace:
                wanted.setdefault(ref["namespace"], set()).add((namespace, kind, ref["name"]))
    return {
        namespaced_name(to_namespace, f"{target.name}-auth"): {
            "apiVersion": "gateway.networking.k8s.io/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": f"{target.name}-auth", "namespace": to_namespace},
            "spec": {
                "from": [
                    {"group": "agc-controller.io", "kind": "AuthPolicy", "namespace": ns}
                    for ns in sorted({f for f, _, _ in refs})
                ],
                "to": [
                    {"group": "", "kind": kind, "name": name}
                    for kind, name in sorted({(k, n) for _, k, n in refs})
                ],
            },
        }
        for to_namespace, refs in sorted(wanted.items())
    }


def _app_root_rule(app_root: str) -> Obj:
    return {
        "matches": [{"path": {"type": "Exact", "value": "/"}}],
        "filters": [
            {
                "type": "RequestRedirect",
                "requestRedirect": {
                    "path": {"type": "ReplaceFullPath", "replaceFullPath": app_root},
                    "statusCode": 302,
                },
            }
        ],
    }


def _https_redirect_rule(path: _Path, status: int) -> Obj:
    return {
        "matches": [{"path": dict(path.match)}],
        "filters": [
            {
                "type": "RequestRedirect",
                "requestRedirect": {"scheme": "https", "statusCode": status},
            }
        ],
    }
