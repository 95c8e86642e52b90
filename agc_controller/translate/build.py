"""Graph → ALB model (pure). Orders every host's rules by Gateway API precedence.

Precedence within one host (hostname and listener are already decided):
path kind (Exact, then RegularExpression, then PathPrefix) and length → has a
method → number of header matches → number of query matches → oldest route →
route namespace/name → rule order → match order. RegularExpression paths are
ours to place: before prefixes, because a regex states more intent than a
prefix, and longest pattern first.
"""

from __future__ import annotations

from collections import defaultdict

from agc_controller.status.model import ObjectKey
from agc_controller.translate.graph.attach import Attachment
from agc_controller.translate.graph.backends import ResolvedBackend
from agc_controller.translate.graph.backendtlspolicy import Policies
from agc_controller.translate.graph.gateway import GatewayNode
from agc_controller.translate.graph.routes import RuleNode
from agc_controller.translate.hostnames import specificity
from agc_controller.translate.model import (
    Backend,
    BackendTLS,
    Frontend,
    Host,
    LoadBalancer,
    Mirror,
    Rule,
)

_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


def precedence(rule: Rule, created: str) -> tuple[object, ...]:
    m = rule.match
    return (
        _PATH_RANK[m.path.type],
        -len(m.path.value),
        m.method is None,
        -len(m.headers),
        -len(m.query_params),
        created,
        rule.route.namespace,
        rule.route.name,
        rule.rule_index,
        rule.match_index,
    )


def build_load_balancer(
    gateway: GatewayNode, attachments: list[Attachment], policies: Policies
) -> LoadBalancer:
    programmable = {ls.name: ls for ls in gateway.listeners if ls.programmable}
    frontends = tuple(
        Frontend(
            name=ls.name,
            port=ls.port,
            protocol="HTTPS" if ls.protocol == "HTTPS" else "HTTP",
            hostname=ls.hostname,
            certificates=ls.certificates,
            client_validation=ls.client_validation,
        )
        for ls in sorted(programmable.values(), key=lambda ls: (ls.port, ls.index))
    )
    # (listener, hostname) -> [(precedence key, rule)]
    tables: dict[tuple[str, str], list[tuple[tuple[object, ...], Rule]]] = defaultdict(list)
    seen: set[tuple[str, str, object]] = set()
    for attachment in attachments:
        listener = attachment.listener
        if listener.name not in programmable:
            continue
        route = attachment.route
        for hostname in attachment.hostnames:
            # a route attached twice to one listener (two parentRefs) is served once
            if (listener.name, hostname, route.key) in seen:
                continue
            seen.add((listener.name, hostname, route.key))
            for rule_node in route.rules:
                for rule in _rules(
                    route.key, rule_node, gateway, policies, grpc=route.kind == "GRPCRoute"
                ):
                    tables[(listener.name, hostname)].append(
                        (precedence(rule, route.created), rule)
                    )
    hosts = tuple(
        Host(
            port=programmable[listener].port,
            hostname=hostname,
            listener=listener,
            rules=tuple(rule for _, rule in sorted(entries, key=lambda e: e[0])),
        )
        for (listener, hostname), entries in sorted(
            tables.items(),
            key=lambda item: (programmable[item[0][0]].port, specificity(item[0][1]), item[0]),
        )
    )
    return LoadBalancer(
        gateway=gateway.key,
        gateway_class=gateway.class_name,
        generation=gateway.generation,
        addresses=gateway.addresses,
        frontends=frontends,
        hosts=hosts,
        infrastructure_labels=gateway.infrastructure_labels,
        infrastructure_annotations=gateway.infrastructure_annotations,
    )


def _rules(
    route_key: ObjectKey, rule: RuleNode, gateway: GatewayNode, policies: Policies, *, grpc: bool
) -> list[Rule]:
    backends = tuple(_backend(b, gateway, policies) for b in rule.backends)
    mirrors = tuple(
        Mirror(backend=_backend(m.backend, gateway, policies), percent=m.percent)
        for m in rule.mirrors
    )
    return [
        Rule(
            route=route_key,
            rule_index=rule.index,
            match_index=j,
            rule_name=rule.name,
            match=match,
            backends=backends,
            request_headers=rule.request_headers,
            response_headers=rule.response_headers,
            redirect=rule.redirect,
            rewrite=rule.rewrite,
            mirrors=mirrors,
            cors=rule.cors,
            request_timeout_ms=rule.request_timeout_ms,
            backend_timeout_ms=rule.backend_timeout_ms,
            retry=rule.retry,
            session_persistence=rule.session_persistence,
            grpc=grpc,
        )
        for j, match in enumerate(rule.matches)
    ]


def _backend(backend: ResolvedBackend, gateway: GatewayNode, policies: Policies) -> Backend:
    tls = None
    valid = backend.valid
    if backend.service is not None:
        policy = policies.for_backend(backend.service, backend.port_name)
        if policy is not None:
            # a policy that cannot be satisfied fails the requests; never fall back to plaintext
            valid = valid and policy.accepted_problem is None
            tls = BackendTLS(
                sni=policy.sni,
                ca_pem=policy.ca_pem,
                subject_alt_names=policy.subject_alt_names,
                client_certificate=gateway.backend_client_certificate,
            )
    return Backend(
        name=backend.name,
        weight=backend.weight,
        valid=valid,
        protocol=backend.protocol,
        endpoints=backend.endpoints if valid else (),
        tls=tls,
        request_headers=backend.request_headers,
        response_headers=backend.response_headers,
    )
