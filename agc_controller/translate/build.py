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

Streams (TLS passthrough, TCP, UDP): one per (port, SNI hostname) a listener's
routes serve. Where routes compete for one, the most specific listener wins,
then the oldest route, then route namespace/name; the others stay attached
(Accepted) but take no connections. A stream's data plane forwards bytes and
originates no TLS, so a backend that a BackendTLSPolicy asks to be reached over
TLS is invalid there (its share of connections is closed), never sent plaintext;
TLS passthrough is exempt (the client's own TLS reaches the backend).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import cast

import attrs

from agc_controller.core.keys import ObjectKey
from agc_controller.translate.graph import auth, ratelimit, waf
from agc_controller.translate.graph.attach import Attachment
from agc_controller.translate.graph.backends import ResolvedBackend
from agc_controller.translate.graph.backendtlspolicy import Policies
from agc_controller.translate.graph.gateway import GatewayNode, Listener
from agc_controller.translate.graph.policies import AttachedPolicies
from agc_controller.translate.graph.routes import STREAM_KINDS, GrpcRank, RouteNode, RuleNode
from agc_controller.translate.hostnames import matches, specificity
from agc_controller.translate.model import (
    Auth,
    Backend,
    BackendHealth,
    BackendTLS,
    Endpoint,
    ErrorPages,
    Frontend,
    Host,
    LoadBalancer,
    LoadBalancing,
    Mirror,
    Protocol,
    RateLimit,
    Rule,
    Stream,
    StreamProtocol,
    Waf,
    WafRuleSet,
)

_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}

# the order routes of different kinds are listed in (it breaks ties of equal precedence)
_KIND_ORDER = {"HTTPRoute": 0, "GRPCRoute": 1}

# a route's rules, each with its precedence key within a host (without the hostname rank)
KeyedRules = tuple[tuple[tuple[object, ...], Rule], ...]
# listener name -> a route's keyed rules there (listeners whose policies agree share one)
_ListenerRules = dict[str, KeyedRules]


@attrs.frozen
class RulePolicies:
    """Our policy kinds about requests: each rule carries the one of each kind in
    force on it (graph/policies.py decides which)."""

    rate_limits: AttachedPolicies[RateLimit]
    auth: AttachedPolicies[Auth]
    wafs: AttachedPolicies[Waf]

    def for_rule(
        self, gateway: ObjectKey, listener: str, route: ObjectKey, rule_name: str | None
    ) -> InForce:
        limit = self.rate_limits.for_rule(gateway, listener, route, rule_name)
        guard = self.auth.for_rule(gateway, listener, route, rule_name)
        firewall = (
            self.wafs.for_rule(gateway, listener, route, rule_name)
            if route.kind == "HTTPRoute"
            else None
        )
        return InForce(
            rate_limit=ratelimit.in_force(limit[1], limit[0]) if limit is not None else None,
            auth=auth.in_force(guard[1], guard[0]) if guard is not None else None,
            waf=waf.in_force(firewall[1], firewall[0]) if firewall is not None else None,
        )


@attrs.frozen
class InForce:
    """The policies of our kinds about requests in force on one rule."""

    rate_limit: RateLimit | None = None
    auth: Auth | None = None
    waf: Waf | None = None


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
    attachments: Mapping[ObjectKey, tuple[Attachment, ...]],
    policies: Policies,
    rule_policies: RulePolicies,
    *,
    tables: HostTables | None = None,
    endpoints: Mapping[str, tuple[Endpoint, ...]] | None = None,
    health_checks: Mapping[str, BackendHealth] | None = None,
    load_balancing: Mapping[str, LoadBalancing] | None = None,
    waf_rule_sets: tuple[WafRuleSet, ...] = (),
) -> LoadBalancer:
    """The model of `gateway` with the routes attached as `attachments` (route ->
    its attachments). `tables` carries the host tables of the previous build of
    this Gateway; only what changed since is built again."""
    programmable = {ls.name: ls for ls in gateway.listeners if ls.programmable}
    requests = {k: a for k, a in attachments.items() if k.kind not in STREAM_KINDS}
    connections = {k: a for k, a in attachments.items() if k.kind in STREAM_KINDS}
    frontends = tuple(
        Frontend(
            name=ls.name,
            port=ls.port,
            # a programmable listener's protocol is one the provider serves
            protocol=cast(Protocol, ls.protocol),
            hostname=ls.hostname,
            certificates=ls.certificates,
            gateway_certificates=ls.gateway_certificates,
            key_vault_certificate=ls.key_vault_certificate,
            client_validation=ls.client_validation,
        )
        for ls in sorted(programmable.values(), key=lambda ls: (ls.port, ls.index))
    )
    tables = tables or HostTables()
    return LoadBalancer(
        gateway=gateway.key,
        gateway_class=gateway.class_name,
        generation=gateway.generation,
        addresses=gateway.addresses,
        frontends=frontends,
        hosts=tables.update(gateway, policies, rule_policies, requests),
        streams=_streams(connections, programmable, policies),
        endpoints=endpoints or {},
        health_checks=health_checks or {},
        load_balancing=load_balancing or {},
        waf_rule_sets=waf_rule_sets,
        infrastructure_labels=gateway.infrastructure_labels,
        infrastructure_annotations=gateway.infrastructure_annotations,
        annotations=gateway.annotations,
    )


# where a host sorts in the model: port, hostname specificity, (listener, hostname)
_HostOrder = tuple[int, tuple[int, int], tuple[str, str]]

# listener name -> the hostnames a route serves there (a route attached twice to one
# listener, through two parentRefs, is served once)
_Serving = dict[str, frozenset[str]]


def _serving(attachments: tuple[Attachment, ...], programmable: Mapping[str, Listener]) -> _Serving:
    found: dict[str, set[str]] = defaultdict(set)
    for attachment in attachments:
        if attachment.listener.name in programmable:
            found[attachment.listener.name].update(attachment.hostnames)
    return {name: frozenset(hostnames) for name, hostnames in found.items()}


class HostTables:
    """The host tables of one Gateway, kept between builds and updated by difference.

    A host's table is the rules of every route covering it, in precedence order.
    A route's change (new, gone, or another attachment object: translation keeps
    the object while the route is unchanged) dirties the hosts its hostnames
    cover: one host for an exact name, every host below a wildcard, every host of
    the listener for a route without hostnames. Only dirty hosts are built again;
    the host order is sorted again only when hosts come or go. Another Gateway
    node or other policies (BackendTLSPolicies or our own kinds, compared by
    identity) start from scratch. The result
    equals a build from scratch (tests/unit/test_translate_incremental.py).

    Invariants, between builds: `_routes` holds exactly the routes of the last
    build with their attachments; `_hostnames[l][h]` the routes serving hostname
    `h` on listener `l`; `_tables` one Host per (listener, hostname) served and
    not claimed by a more specific listener; `_order` the keys of `_tables` in
    model order.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # what the tables were built against (identity)
        self._gateway: GatewayNode | None = None
        self._policies: Policies | None = None
        self._rule_policies: RulePolicies | None = None
        # route -> (its attachments as last seen, where it serves, its keyed rules there)
        self._routes: dict[ObjectKey, tuple[tuple[Attachment, ...], _Serving, _ListenerRules]] = {}
        # listener -> hostname -> the routes serving it there
        self._hostnames: dict[str, dict[str, set[ObjectKey]]] = defaultdict(dict)
        # (listener, hostname) -> its table
        self._tables: dict[tuple[str, str], Host] = {}
        # the keys of `_tables` in model order (port, hostname specificity, listener, name)
        self._order: list[tuple[_HostOrder, tuple[str, str]]] = []

    def update(
        self,
        gateway: GatewayNode,
        policies: Policies,
        rule_policies: RulePolicies,
        attachments: Mapping[ObjectKey, tuple[Attachment, ...]],
    ) -> tuple[Host, ...]:
        if (
            gateway is not self._gateway
            or policies is not self._policies
            or rule_policies is not self._rule_policies
        ):
            self._reset()
            self._gateway, self._policies, self._rule_policies = gateway, policies, rule_policies
        programmable = {ls.name: ls for ls in gateway.listeners if ls.programmable}
        dirty: dict[str, set[str]] = defaultdict(set)  # listener -> covering names changed
        for key in [k for k in self._routes if k not in attachments]:
            self._forget(key, dirty)
        for key, attached in attachments.items():
            known = self._routes.get(key)
            if known is not None and known[0] is attached:
                continue
            if known is not None:
                self._forget(key, dirty)
            serving = _serving(attached, programmable)
            route = attached[0].route if attached else None
            keyed = (
                _keyed_rules_by_listener(route, serving, gateway, policies, rule_policies)
                if route is not None
                else {}
            )
            self._routes[key] = (attached, serving, keyed)
            for listener, hostnames in serving.items():
                for hostname in hostnames:
                    self._hostnames[listener].setdefault(hostname, set()).add(key)
                dirty[listener].update(hostnames)
        if dirty:
            self._rebuild(dirty, programmable)
        return tuple(self._tables[key] for _, key in self._order)

    def _forget(self, key: ObjectKey, dirty: dict[str, set[str]]) -> None:
        _, serving, _ = self._routes.pop(key)
        for listener, hostnames in serving.items():
            by_hostname = self._hostnames[listener]
            for hostname in hostnames:
                routes = by_hostname[hostname]
                routes.discard(key)
                if not routes:
                    del by_hostname[hostname]
            dirty[listener].update(hostnames)

    def _rebuild(self, dirty: Mapping[str, set[str]], programmable: Mapping[str, Listener]) -> None:
        for name, changed in dirty.items():
            listener = programmable[name]
            by_hostname = self._hostnames[name]
            if any(hostname == "*" or hostname.startswith("*.") for hostname in changed):
                hosts = _covered(changed, by_hostname.keys() | _hosts_of(self._tables, name))
            else:
                hosts = changed  # an exact name covers no host but its own
            for host in hosts:
                key = (name, host)
                position = ((listener.port, specificity(host), key), key)
                if host not in by_hostname or _claimed_elsewhere(
                    listener, host, programmable.values()
                ):
                    if self._tables.pop(key, None) is not None:
                        del self._order[bisect.bisect_left(self._order, position)]
                    continue
                if key not in self._tables:
                    bisect.insort(self._order, position)
                self._tables[key] = _host(listener, host, self._covering_rules(name, host))

    def _covering_rules(self, listener: str, host: str) -> list[tuple[tuple[int, int], KeyedRules]]:
        """(rank, a route's ordered rules) of every route covering `host`; most specific
        covering name first, so a route's first one is its best rank."""
        by_hostname = self._hostnames[listener]
        found: list[tuple[tuple[int, int], KeyedRules]] = []
        seen: set[ObjectKey] = set()
        for covering in _covering_names(host):
            rank = hostname_rank(covering)
            for key in sorted(by_hostname.get(covering, ()), key=_route_order):
                if key not in seen:
                    seen.add(key)
                    found.append((rank, self._routes[key][2][listener]))
        return found


def _streams(
    attachments: Mapping[ObjectKey, tuple[Attachment, ...]],
    programmable: Mapping[str, Listener],
    policies: Policies,
) -> tuple[Stream, ...]:
    """The streams of the stream routes' attachments; see the module docstring for
    which route a stream takes when several serve its (port, hostname)."""
    best: dict[tuple[int, str, str], tuple[tuple[object, ...], Stream]] = {}
    for key, attached in attachments.items():
        for attachment in attached:
            listener = programmable.get(attachment.listener.name)
            route = attachment.route
            if listener is None or not route.rules:
                continue
            rule = route.rules[0]  # stream routes have exactly one rule
            passthrough = listener.protocol == "TLS" and not listener.certificates
            backends = tuple(
                Backend(
                    name=b.name,
                    weight=b.weight,
                    valid=b.valid
                    and (
                        passthrough
                        or b.service is None
                        or policies.for_backend(b.service, b.port_name) is None
                    ),
                )
                for b in rule.backends
            )
            order = (specificity(listener.hostname), route.created, key.namespace, key.name)
            for hostname in attachment.hostnames:
                slot = (listener.port, listener.protocol, hostname)
                known = best.get(slot)
                if known is None or order < known[0]:
                    stream = Stream(
                        port=listener.port,
                        protocol=cast(StreamProtocol, listener.protocol),
                        hostname=hostname,
                        listener=listener.name,
                        route=key,
                        backends=backends,
                    )
                    best[slot] = (order, stream)
    return tuple(
        stream
        for _, (_, stream) in sorted(
            best.items(), key=lambda kv: (kv[0][0], kv[0][1], specificity(kv[0][2]), kv[0][2])
        )
    )


def _route_order(key: ObjectKey) -> tuple[int, str, str]:
    return (_KIND_ORDER.get(key.kind, len(_KIND_ORDER)), key.namespace, key.name)


def _hosts_of(tables: Mapping[tuple[str, str], Host], listener: str) -> set[str]:
    return {hostname for name, hostname in tables if name == listener}


def _covered(changed: set[str], hosts: set[str]) -> set[str]:
    """The hosts whose tables include routes serving one of the `changed` names."""
    if "*" in changed:
        return hosts
    wildcards = [name[1:] for name in changed if name.startswith("*.")]
    return {
        host
        for host in hosts
        if host in changed or any(host.endswith(suffix) for suffix in wildcards)
    }


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


def _keyed_rules_by_listener(
    route: RouteNode,
    serving: _Serving,
    gateway: GatewayNode,
    policies: Policies,
    rule_policies: RulePolicies,
) -> _ListenerRules:
    """The route's keyed rules on each listener it serves; a listener-wide policy
    can make them differ, but listeners whose policies agree share one tuple."""
    by_policies: dict[tuple[InForce, ...], KeyedRules] = {}
    found: _ListenerRules = {}
    for listener in serving:
        in_force = tuple(
            rule_policies.for_rule(gateway.key, listener, route.key, rule.name)
            for rule in route.rules
        )
        if in_force not in by_policies:
            by_policies[in_force] = _keyed_rules(route, gateway, policies, in_force)
        found[listener] = by_policies[in_force]
    return found


def _keyed_rules(
    route: RouteNode,
    gateway: GatewayNode,
    policies: Policies,
    in_force: tuple[InForce, ...],
) -> KeyedRules:
    grpc = route.kind == "GRPCRoute"
    keyed = []
    for rule_node, governing in zip(route.rules, in_force, strict=True):
        for rule in _rules(route.key, rule_node, gateway, policies, governing, grpc=grpc):
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
    route_key: ObjectKey,
    rule: RuleNode,
    gateway: GatewayNode,
    policies: Policies,
    governing: InForce,
    *,
    grpc: bool,
) -> list[Rule]:
    backends = tuple(_backend(b, gateway, policies) for b in rule.backends)
    mirrors = tuple(
        Mirror(backend=_backend(m.backend, gateway, policies), percent=m.percent)
        for m in rule.mirrors
    )
    pages = rule.error_pages
    error_pages = (
        None
        if pages is None
        else ErrorPages(codes=pages.codes, backend=_backend(pages.backend, gateway, policies))
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
            max_body_bytes=rule.max_body_bytes,
            rewrite_rule_set=rule.rewrite_rule_set,
            error_pages=error_pages,
            rate_limit=governing.rate_limit,
            auth=governing.auth,
            waf=governing.waf,
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
                gateway_roots=policy.gateway_roots,
                client_certificate=gateway.backend_client_certificate,
            )
    return Backend(
        name=backend.name,
        weight=backend.weight,
        valid=valid,
        protocol=backend.protocol,
        tls=tls,
        # a BackendTLSPolicy is the Service owner's explicit choice: it wins over the mesh
        mesh=backend.mesh and tls is None,
        request_headers=backend.request_headers,
        response_headers=backend.response_headers,
    )
