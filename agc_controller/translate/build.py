"""Graph → ALB model (pure). Orders every host's rules by Gateway API precedence.

Hosts: one per (port, hostname) a listener serves. Listener isolation is
resolved here: a hostname that a more specific listener on the same port also
covers is served by that listener only. A host's table holds the rules of every
route on its listener whose hostname covers it (a request to `foo.example.com`
may match a rule of a `*.example.com` route when no `foo.example.com` rule does).

Precedence within one host: the route hostname that covers it (most characters
in a non-wildcard hostname, then most characters) → path kind (Exact, then
RegularExpression, then PathPrefix) and length → has a method → number of
header matches → number of query matches → oldest route → route namespace/name
→ rule order → match order. RegularExpression paths are ours to place: before
prefixes, because a regex states more intent than a prefix, and longest
pattern first. GRPCRoute matches rank by their own rule instead of path length:
most characters in the matched service, then in the matched method.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable

from agc_controller.core.keys import ObjectKey
from agc_controller.translate.graph.attach import Attachment
from agc_controller.translate.graph.backends import ResolvedBackend
from agc_controller.translate.graph.backendtlspolicy import Policies
from agc_controller.translate.graph.gateway import GatewayNode, Listener
from agc_controller.translate.graph.routes import GrpcRank, RouteNode, RuleNode
from agc_controller.translate.hostnames import matches, specificity
from agc_controller.translate.memo import Memo
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

# a route's rules, each with its precedence key within a host (without the hostname rank)
KeyedRules = tuple[tuple[tuple[object, ...], Rule], ...]


def hostname_rank(hostname: str) -> tuple[int, int]:
    """Route hostname precedence (most characters in a matching non-wildcard
    hostname, then in the matching hostname); smaller sorts first. `*` = none."""
    if hostname == "*":
        return (0, 0)
    return (0 if hostname.startswith("*.") else -len(hostname), -len(hostname))


def precedence(rule: Rule, created: str, grpc_rank: GrpcRank | None = None) -> tuple[object, ...]:
    """Sort key of one rule among the rules of one host (smaller first)."""
    m = rule.match
    path: tuple[int, tuple[int, ...]]
    if grpc_rank is None:
        path = (_PATH_RANK[m.path.type], (-len(m.path.value),))
    else:
        rank, service, method = grpc_rank
        path = (rank, (-service, -method))
    return (
        *path,
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
    gateway: GatewayNode,
    attachments: list[Attachment],
    policies: Policies,
    *,
    memo: Memo | None = None,
) -> LoadBalancer:
    """The model; with `memo`, a route's ordered rules and a host's table are reused
    while what they are made of is the same (memo.py)."""
    memo = memo or Memo()
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
    # listener -> route -> the hostnames it serves there (a route attached twice to one
    # listener, through two parentRefs, is served once)
    served: dict[str, dict[ObjectKey, tuple[RouteNode, set[str]]]] = defaultdict(dict)
    for attachment in attachments:
        if attachment.listener.name in programmable:
            route = attachment.route
            served[attachment.listener.name].setdefault(route.key, (route, set()))[1].update(
                attachment.hostnames
            )
    # (listener, hostname) -> [(precedence key, rule)]
    tables: dict[tuple[str, str], Host] = {}
    for name, routes in served.items():
        listener = programmable[name]
        # each route's rules with their precedence keys, built once per listener
        keyed: dict[ObjectKey, KeyedRules] = {}
        by_hostname: dict[str, list[ObjectKey]] = defaultdict(list)
        for route, hostnames in routes.values():
            keyed[route.key] = memo.derived(
                ("rules", route.key),
                (route, gateway, policies),
                functools.partial(_keyed_rules, route, gateway, policies),
            )
            for hostname in hostnames:
                by_hostname[hostname].append(route.key)
        for host in sorted(by_hostname):
            if _claimed_elsewhere(listener, host, programmable.values()):
                continue
            # (rank, a route's ordered rules) of every route covering the host; most
            # specific covering name first, so a route's first one is its best rank
            covering_rules: list[tuple[tuple[int, int], KeyedRules]] = []
            seen: set[ObjectKey] = set()
            for covering in _covering_names(host):
                rank = hostname_rank(covering)
                for key in by_hostname.get(covering, ()):
                    if key not in seen:
                        seen.add(key)
                        covering_rules.append((rank, keyed[key]))
            inputs = (listener.port, *covering_rules)
            tables[(name, host)] = memo.derived(
                ("host", name, host),
                inputs,
                functools.partial(_host, listener, host, covering_rules),
            )
    hosts = tuple(
        host
        for (listener, hostname), host in sorted(
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
        annotations=gateway.annotations,
    )


def _host(
    listener: Listener, hostname: str, covering_rules: list[tuple[tuple[int, int], KeyedRules]]
) -> Host:
    entries = [((rank, *order), rule) for rank, keyed in covering_rules for order, rule in keyed]
    return Host(
        port=listener.port,
        hostname=hostname,
        listener=listener.name,
        rules=tuple(rule for _, rule in sorted(entries, key=lambda e: e[0])),
    )


def _covering_names(host: str) -> list[str]:
    """The route hostnames whose requests include every request for `host`, most
    specific first: the name itself, its wildcard ancestors, then `*`.

    `a.b.c` -> [a.b.c, *.b.c, *.c, *]; `*.b.c` -> [*.b.c, *.c, *].
    """
    if host == "*":
        return ["*"]
    labels = host.removeprefix("*.").split(".")
    first = 0 if host.startswith("*.") else 1
    wildcards = ["*." + ".".join(labels[i:]) for i in range(first, len(labels))]
    return ([] if host.startswith("*.") else [host]) + wildcards + ["*"]


def _keyed_rules(route: RouteNode, gateway: GatewayNode, policies: Policies) -> KeyedRules:
    grpc = route.kind == "GRPCRoute"
    keyed = []
    for rule_node in route.rules:
        for rule in _rules(route.key, rule_node, gateway, policies, grpc=grpc):
            grpc_rank = rule_node.grpc_ranks[rule.match_index] if grpc else None
            keyed.append((precedence(rule, route.created, grpc_rank), rule))
    return tuple(keyed)


def _claimed_elsewhere(listener: Listener, host: str, listeners: Iterable[Listener]) -> bool:
    """Whether a more specific listener on the same port serves every request for
    `host`: listener isolation sends them there, never to `listener`."""
    return any(
        other.port == listener.port
        and other.hostname is not None
        and specificity(other.hostname) < specificity(listener.hostname)
        and matches(other.hostname, host)
        for other in listeners
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
