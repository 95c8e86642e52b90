"""The Gateway API objects an Ingress class is served as: the Gateway, each
Ingress's routes, rules and filters, the policies its annotations make."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from agc_controller.core.keys import namespaced_name, object_key
from agc_controller.core.resources import (
    APPGW_GROUP,
    APPGW_REWRITE_RULE_SET,
    APPGW_TRUSTED_ROOT_CERTIFICATE,
    GATEWAY_GROUP,
)
from agc_controller.translate.hostnames import intersect
from agc_controller.translate.ingress.plan import (
    HTTP_LISTENER,
    HTTP_PORT,
    HTTPS_PORT,
    MAX_NAME,
    GatewayTarget,
    Path,
    PathKey,
    Plan,
    base_name,
    default_name,
    https_listener_name,
    tls_listener_name,
)
from agc_controller.translate.ingress.together import (
    Passthrough,
    PortListener,
    TlsCertificate,
)
from agc_controller.translate.ingress.values import (
    APP_ROOT,
    Affinity,
    Annotations,
    BackendProtocol,
    Canary,
    capture_template,
)
from agc_controller.translate.snapshot import Obj

# the name suffix of a route redirecting plain HTTP to https
_REDIRECT = "-https-redirect"


_POLICY_GROUP = "agc-controller.io"


_POLICY_API_VERSION = f"{_POLICY_GROUP}/v1alpha1"


_GATEWAY_API_VERSION = f"{GATEWAY_GROUP}/v1"


@attrs.frozen
class Context:
    """What the other Ingresses decide for one Ingress's routes."""

    # its paths served by an older Ingress
    dropped: frozenset[PathKey]
    # path -> (canary backendRef items, canary settings) from the canary shadowing it
    canaries: tuple[tuple[PathKey, tuple[tuple[str, Any], ...], Canary], ...]
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
    # the listeners (name, hostname or "") its routes attach to by name; None: every
    # listener, by naming none (no Ingress of the class has a frontend port of its own)
    parents: tuple[tuple[str, str], ...] | None = None


@attrs.frozen
class Route:
    obj: Obj
    # the Ingress field each of its rules comes from, by rule index
    fields: tuple[str, ...]
    # the Ingress's access annotations govern it (not an HTTPS redirect)
    governed: bool = True


@attrs.frozen
class Built:
    """An Ingress's objects: its routes and the policies its annotations make."""

    routes: Mapping[str, Route]
    # policy kind -> store key -> policy
    policies: Mapping[str, Mapping[str, Obj]]


@attrs.frozen
class ServicePolicy:
    """A policy of ours made per Service from a per-Service setting (together.py)."""

    kind: str
    # its name is the Service's with this suffix
    suffix: str
    # the spec field holding the setting's block
    field: str

    def key(self, service: str) -> str:
        """The store key of the policy of a Service ("namespace/name")."""
        return f"{service}-{self.suffix}"

    def build(self, settings: Mapping[str, tuple[str, Mapping[str, object]]]) -> dict[str, Obj]:
        """One policy per Service of `settings` (Service -> (origin, block))."""
        policies = {}
        for service, (_, block) in sorted(settings.items()):
            namespace, _, name = service.partition("/")
            policies[self.key(service)] = {
                "apiVersion": _POLICY_API_VERSION,
                "kind": self.kind,
                "metadata": {
                    "name": f"{name}-{self.suffix}",
                    "namespace": namespace,
                    "generation": 1,
                },
                "spec": {
                    "targetRefs": [{"group": "", "kind": "Service", "name": name}],
                    self.field: dict(block),
                },
            }
        return policies


HEALTH_CHECK_POLICIES = ServicePolicy("HealthCheckPolicy", "health", "default")
DRAINING_POLICIES = ServicePolicy("BackendLoadBalancingPolicy", "draining", "connectionDraining")


def backend_tls_policy_key(service: str) -> str:
    """The store key of the BackendTLSPolicy for a Service ("namespace/name")."""
    return f"{service}-backend-tls"


def build_backend_tls_policies(
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
        if protocol.gateway_roots:
            validation["caCertificateRefs"] = [
                {"group": APPGW_GROUP, "kind": APPGW_TRUSTED_ROOT_CERTIFICATE, "name": name}
                for name in protocol.gateway_roots
            ]
        elif protocol.ca_secret:
            # in the Service's namespace (others are refused in backend_protocols)
            ca_name = protocol.ca_secret.rpartition("/")[2]
            validation["caCertificateRefs"] = [{"group": "", "kind": "Secret", "name": ca_name}]
        else:
            validation["wellKnownCACertificates"] = "System"
        policies.setdefault(
            backend_tls_policy_key(service),
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


def build_tls_routes(
    passthrough: Mapping[str, Passthrough], plans: Iterable[Plan], target: GatewayTarget
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
                "parentRefs": [_parent(target, tls_listener_name(host))],
                "hostnames": [host],
                "rules": [{"backendRefs": [dict(p.backend)]}],
            },
        }
        for host, p in sorted(passthrough.items())
    }


def build_gateway_class(target: GatewayTarget) -> Obj:
    """The GatewayClass the derived Gateway names (ours: translation accepts it)."""
    return {
        "apiVersion": _GATEWAY_API_VERSION,
        "kind": "GatewayClass",
        "metadata": {"name": target.gateway_class},
        "spec": {"controllerName": target.controller_name},
    }


def build_gateway(
    target: GatewayTarget,
    certificates: Mapping[str, TlsCertificate],
    passthrough: Mapping[str, Passthrough],
    port_listeners: Iterable[PortListener] = (),
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
                    _https_listener(host, certificate, every_namespace)
                    for host, certificate in sorted(certificates.items())
                ),
                *(
                    {
                        "name": tls_listener_name(host),
                        "port": HTTPS_PORT,
                        "protocol": "TLS",
                        "hostname": host,
                        "tls": {"mode": "Passthrough"},
                        "allowedRoutes": {**every_namespace, "kinds": [{"kind": "TLSRoute"}]},
                    }
                    for host in sorted(passthrough)
                ),
                *(_port_listener(listener, every_namespace) for listener in port_listeners),
            ],
        },
    }


def _port_listener(port_listener: PortListener, allowed: Obj) -> Obj:
    """A listener on a frontend port an Ingress asks for (override-frontend-port)."""
    listener: Obj = {
        "name": port_listener.name,
        "port": port_listener.port,
        "protocol": port_listener.protocol,
    }
    if port_listener.hostname:
        listener["hostname"] = port_listener.hostname
    if port_listener.certificate is not None:
        listener["tls"] = {
            "mode": "Terminate",
            "certificateRefs": [port_listener.certificate.ref()],
        }
    listener["allowedRoutes"] = allowed
    return listener


def _https_listener(host: str, certificate: TlsCertificate, allowed: Obj) -> Obj:
    listener: Obj = {"name": https_listener_name(host), "port": HTTPS_PORT, "protocol": "HTTPS"}
    if host:
        listener["hostname"] = host
    listener["tls"] = {"mode": "Terminate", "certificateRefs": [certificate.ref()]}
    listener["allowedRoutes"] = allowed
    return listener


def build_routes(plan: Plan, context: Context, target: GatewayTarget) -> dict[str, Route]:
    """The Ingress's HTTPRoutes, by store key, each with the Ingress field of every rule."""
    meta = plan.ingress["metadata"]
    namespace = meta.get("namespace", "")
    names = dict(context.renamed)
    canaries = {key: (ref, canary) for key, ref, canary in context.canaries}
    by_host: dict[str, list[Path]] = {}
    for path in plan.paths:
        if path.key not in context.dropped:
            by_host.setdefault(path.host, []).append(path)
    routes: dict[str, Route] = {}

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
        routes[object_key(route)] = Route(
            route, tuple(field for field, _ in rules), governed=not name.endswith(_REDIRECT)
        )

    annotations = plan.annotations
    refused = annotations.refused or context.refused
    for host, paths in sorted(by_host.items()):
        base = base_name(plan, host)
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
                f"{name[: MAX_NAME - len(_REDIRECT)]}{_REDIRECT}",
                [_parent(target, HTTP_LISTENER)],
                hostnames,
                [(path.field, _https_redirect_rule(path, https_status)) for path in paths],
            )
        else:
            add(name, _parents(target, context, host), hostnames, rules)
    if context.default_backend and plan.default_backend is not None:
        base = default_name(plan)
        default_path = Path(
            host="",
            match=(("type", "PathPrefix"), ("value", "/")),
            backend=plan.default_backend,
            field="spec.defaultBackend",
        )
        add(
            names.get(base, base),
            _parents(target, context, ""),
            [],
            [
                (default_path.field, rule)
                for rule in _rules(default_path, annotations, None, refused=refused)
            ],
        )
    return routes


def _parents(target: GatewayTarget, context: Context, host: str) -> list[Obj]:
    """A route's parentRefs: every listener (naming none), or the Ingress's listeners
    that serve `host` by name."""
    if context.parents is None:
        return [_parent(target, None)]
    return [
        _parent(target, name)
        for name, listener_host in context.parents
        if intersect(listener_host or None, host or None) is not None
    ]


def _parent(target: GatewayTarget, section: str | None) -> Obj:
    parent: Obj = {"name": target.name, "namespace": target.namespace}
    if section is not None:
        parent["sectionName"] = section
    return parent


def _rules(
    path: Path,
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
            out["sessionPersistence"] = _session_persistence(annotations.affinity, path)
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


def _filters(match: Obj, annotations: Annotations, path: Path) -> tuple[list[Obj], Obj | None]:
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
    if annotations.rewrite_rule_set is not None:
        filters.append(
            {
                "type": "ExtensionRef",
                "extensionRef": {
                    "group": APPGW_GROUP,
                    "kind": APPGW_REWRITE_RULE_SET,
                    "name": annotations.rewrite_rule_set,
                },
            }
        )
    timeouts = (
        {"backendRequest": annotations.backend_timeout} if annotations.backend_timeout else None
    )
    return filters, timeouts


def _session_persistence(affinity: Affinity, path: Path) -> Obj:
    name = affinity.cookie
    if affinity.distinct:
        # AGIC's distinct names: one per path (a host and path belong to one Ingress)
        name += "-" + hashlib.sha256(f"{path.host}{path.key[2]}".encode()).hexdigest()[:8]
    persistence: Obj = {"sessionName": name, "type": "Cookie"}
    if affinity.max_age is not None:
        persistence["absoluteTimeout"] = f"{affinity.max_age}s"
        persistence["cookieConfig"] = {"lifetimeType": "Permanent"}
    return persistence


def build_policies(
    plan: Plan, routes: Mapping[str, Route], target: GatewayTarget
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
    limits: Obj = {}
    if annotations.rate_limit is not None:
        limit = annotations.rate_limit
        budget: Obj = {"requests": limit.requests, "unit": limit.unit}
        if target.rate_limit_burst:
            budget["burst"] = limit.burst
        limits["limit"] = budget
    if annotations.concurrency is not None and target.rate_limit_concurrency:
        limits["concurrency"] = {"requests": annotations.concurrency}
    if limits:
        specs.append(("RateLimitPolicy", {**limits, "key": {"type": "ClientIP"}}))
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


def _path_filters(plan: Plan) -> dict[str, Obj]:
    """The HTTPRouteFilters of the Ingress's paths, one each: rewrite-target with
    capture groups (the path's regular expression matched from the start of the path,
    which, as nginx's rewrite does, it replaces whole), proxy-body-size and
    custom-http-errors."""
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
        if plan.error_backend is not None and annotations.error_pages is not None:
            name, port = plan.error_backend
            spec["errorPages"] = {
                "statusCodes": list(annotations.error_pages.codes),
                "backendRef": {"name": name, "port": port},
            }
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


def policy_grants(
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


def _https_redirect_rule(path: Path, status: int) -> Obj:
    return {
        "matches": [{"path": dict(path.match)}],
        "filters": [
            {
                "type": "RequestRedirect",
                "requestRedirect": {"scheme": "https", "statusCode": status},
            }
        ],
    }
