"""ALB model → the dynamic state the Lua router reads (pure; its schema: state.py).

Everything a user wrote (hostnames, paths, header names and values, regexes,
redirect parts) travels here as JSON data, never as NGINX configuration text:
the router compares and copies values, it never interprets them as config.
Static pieces that NGINX must know at startup (listening ports, upstream TLS
settings) are collected separately into `StaticNeeds`. Streams (TLS passthrough,
TCP, UDP) are parts of the state too, read by NGINX's stream servers rather
than the Lua router (see state.RouterState.streams).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, cast

import attrs

from agc_controller.providers.local import state
from agc_controller.providers.local.waf import UnsafeWafValue, rule_set_id
from agc_controller.translate import model as alb
from agc_controller.translate.hostnames import specificity
from agc_controller.translate.model import Backend, BackendTLS, LoadBalancer, StreamProtocol

# status codes NGINX can retry on (besides connection errors and timeouts); the
# Gateway API requires 500, 502, 503 and 504 — other codes are not retried
RETRIABLE_CODES = frozenset({500, 502, 503, 504})


# A retry on a status code costs the request one internal redirect (error_page
# back into its retry location), and two more go to entering that location and
# to the last try; NGINX allows a request ten internal redirects in all.
RETRY_ATTEMPTS_MAX = 8


def retry_location(codes: tuple[int, ...]) -> str:
    return "@agc_retry_" + ("_".join(map(str, codes)) or "errors")


def error_pages_location(codes: tuple[int, ...], tls_index: int | None = None) -> str:
    """Where a rule's requests go when its answers with `codes` get custom error pages;
    the router appends `_tls_<index>` for a backend spoken to over that TLS setting."""
    return (
        "@agc_errors_"
        + "_".join(map(str, codes))
        + ("" if tls_index is None else f"_tls_{tls_index}")
    )


# every subset of RETRIABLE_CODES: the static config always has all 16 locations,
# so a retry policy never needs a reload
RETRY_CODE_SETS = tuple(
    tuple(c for i, c in enumerate(sorted(RETRIABLE_CODES)) if mask >> i & 1)
    for mask in range(2 ** len(RETRIABLE_CODES))
)


@attrs.frozen
class Listen:
    port: int  # the port NGINX binds (listener port + the configured offset)
    https: bool
    # a plain-text port that must also take gRPC (HTTP/2 without TLS, "h2c")
    h2c: bool = False
    # an HTTPS port that TLS listeners share: a stream server owns the port and
    # hands this server the connections whose SNI no TLS listener's route takes
    behind_tls: bool = False


@attrs.frozen
class StreamListen:
    """A port whose connections a stream server forwards (TLS: by the ClientHello's
    SNI; TCP and UDP: every connection)."""

    port: int  # the port NGINX binds
    protocol: StreamProtocol
    # TLS: whether a listener on the port is in mode Passthrough
    passthrough: bool = False
    # TLS: the certificate of each listener on the port in mode Terminate, by the
    # number of its terminating server (static.py's `tls-<port>-<n>` sockets)
    terminations: tuple[alb.Certificate, ...] = ()


_HTTP_PROTOCOLS = frozenset({"HTTP", "HTTPS"})


@attrs.frozen
class StaticNeeds:
    """What the static NGINX configuration of one Gateway must contain."""

    listens: tuple[Listen, ...]
    # one named location per distinct upstream TLS setting; index = position
    backend_tls: tuple[BackendTLS, ...]
    streams: tuple[StreamListen, ...] = ()
    # one inspection location per firewall rule set (lua/agc/waf.lua)
    waf: tuple[alb.WafRuleSet, ...] = ()
    # some backend is reached over Istio mesh mTLS (the @agc_mesh locations)
    mesh: bool = False
    # (status codes, upstream TLS index or None) of each error pages location
    error_pages: tuple[tuple[tuple[int, ...], int | None], ...] = ()


def _modifier(m: alb.HeaderModifier | None) -> state.HeaderModifier | None:
    if m is None:
        return None
    return state.HeaderModifier(
        set=tuple(state.HeaderValue(name=n, value=v) for n, v in m.set),
        add=tuple(state.HeaderValue(name=n, value=v) for n, v in m.add),
        remove=m.remove,
    )


def _matches(matches: tuple[alb.ValueMatch, ...]) -> tuple[state.ValueMatch, ...]:
    return tuple(state.ValueMatch(type=m.type, name=m.name, value=m.value) for m in matches)


def _retry(retry: alb.Retry | None) -> state.Retry | None:
    """Each set of retriable codes has its own location, whose error_page
    sends exactly those answers back to the router for another try."""
    if retry is None:
        return None
    codes = tuple(sorted(set(retry.codes) & RETRIABLE_CODES))
    return state.Retry(
        attempts=retry.attempts, location=retry_location(codes), backoff_ms=retry.backoff_ms
    )


def _redirect(r: alb.Redirect | None) -> state.Redirect | None:
    if r is None:
        return None
    return state.Redirect(
        status_code=r.status_code,
        scheme=r.scheme,
        hostname=r.hostname,
        port=r.port,
        path_type=r.path_type,
        path_value=r.path_value,
    )


def _rewrite(r: alb.UrlRewrite | None) -> state.Rewrite | None:
    if r is None:
        return None
    if r.path_type == "ReplaceRegexMatch" and r.path_value is not None:
        # the model's \1 groups as ngx.re.sub's ${1}; a literal $ as $$
        template = _GROUP.sub(r"${\1}", r.path_value.replace("$", "$$"))
        return state.Rewrite(
            hostname=r.hostname,
            path_type=r.path_type,
            path_value=template,
            path_pattern=r.path_pattern,
        )
    return state.Rewrite(hostname=r.hostname, path_type=r.path_type, path_value=r.path_value)


# \1 to \9 in a ReplaceRegexMatch substitution
_GROUP = re.compile(r"\\([1-9])")


def _cors(c: alb.Cors | None) -> state.Cors | None:
    if c is None:
        return None
    return state.Cors(
        allow_origins=c.allow_origins,
        allow_methods=c.allow_methods,
        allow_headers=c.allow_headers,
        expose_headers=c.expose_headers,
        allow_credentials=c.allow_credentials,
        max_age=c.max_age,
    )


def _session(p: alb.SessionPersistence | None) -> state.Session | None:
    if p is None:
        return None
    return state.Session(type=p.type, name=p.name, absolute_timeout_s=p.absolute_timeout_s)


def backend_id(b: Backend) -> str:
    """A backend's key in the state. One Service port can be an HTTP backend of one
    route and an h2c one of another (a GRPCRoute's default): each protocol is its own."""
    return b.name if b.protocol == "http" else f"{b.name}#{b.protocol}"


def rule_id(rule: alb.Rule) -> str:
    """The key of a rule in the router state: its route, rule and match index, and
    what governs it (a listener-wide policy makes one route rule two)."""
    key = f"{rule.route}#{rule.rule_index}.{rule.match_index}"
    governing = []
    if rule.rate_limit is not None:
        governing.append(rule.rate_limit.bucket)
    if rule.auth is not None:
        governing.append(rule.auth.source)
    if rule.waf is not None:
        governing.append(rule.waf.source)
    return f"{key}@{'+'.join(governing)}" if governing else key


def _backend_ref(b: Backend) -> state.BackendRef:
    return state.BackendRef(
        id=backend_id(b),
        weight=b.weight,
        valid=b.valid,
        req=_modifier(b.request_headers),
        resp=_modifier(b.response_headers),
    )


def _rule(r: alb.Rule) -> state.Rule:
    m = r.match
    return state.Rule(
        route=r.route.namespaced_name,
        match=state.Match(
            path=state.PathMatch(type=m.path.type, value=m.path.value),
            method=m.method,
            headers=_matches(m.headers),
            query=_matches(m.query_params),
        ),
        backends=tuple(_backend_ref(b) for b in r.backends),
        req=_modifier(r.request_headers),
        resp=_modifier(r.response_headers),
        redirect=_redirect(r.redirect),
        rewrite=_rewrite(r.rewrite),
        mirrors=tuple(
            state.Mirror(backend=backend_id(mi.backend), percent=mi.percent)
            for mi in r.mirrors
            if mi.backend.valid
        ),
        cors=_cors(r.cors),
        timeout_ms=r.request_timeout_ms,
        backend_timeout_ms=r.backend_timeout_ms,
        max_body=r.max_body_bytes,
        session=_session(r.session_persistence),
        retry=_retry(r.retry),
        limit=_rate_limit(r.rate_limit),
        waf=_waf(r.waf),
        auth=_auth(r.auth),
        errors=None
        if r.error_pages is None
        else state.ErrorPages(
            location=error_pages_location(r.error_pages.codes),
            backend=backend_id(r.error_pages.backend),
        ),
    )


def _waf(w: alb.Waf | None) -> state.Waf | None:
    if w is None:
        return None
    if w.rules is None:
        # the local capabilities refuse such policies: they never govern a rule here
        raise UnsafeWafValue("a WAF policy of Application Gateway's cannot be served locally")
    return state.Waf(
        id=rule_set_id(w.rules),
        detect=w.rules.detection,
        status=w.block_status,
        body=w.block_body,
        content_type=w.block_content_type,
    )


def _auth(a: alb.Auth | None) -> state.Auth | None:
    if a is None:
        return None
    ip, keys, basic = a.ip, a.api_keys, a.basic
    return state.Auth(
        refuse=a.refuse,
        deny=ip.deny if ip else (),
        allow=ip.allow if ip else (),
        trusted_proxies=ip.trusted_proxies if ip else (),
        api_keys=dict(keys.keys) if keys else None,
        key_header=keys.header if keys else None,
        key_query=keys.query if keys else None,
        client_header=keys.client_header if keys else None,
        users=dict(basic.users) if basic else None,
        realm=basic.realm if basic else None,
        external=None
        if a.external is None
        else state.ExternalAuth(
            backend=backend_id(a.external.backend),
            path=a.external.path,
            headers_to_backend=a.external.headers_to_backend,
            timeout_ms=a.external.timeout_ms,
        ),
        jwt=tuple(
            state.JwtProvider(
                issuer=p.issuer,
                audiences=p.audiences,
                keys=tuple((k.kid or "", k.alg, k.pem) for k in p.keys),
                claims_to_headers=p.claims_to_headers,
            )
            for p in a.jwt
        ),
    )


def _rate_limit(r: alb.RateLimit | None) -> state.RateLimit | None:
    if r is None:
        return None
    return state.RateLimit(
        bucket=r.bucket,
        requests=r.requests,
        period_s=r.period_s,
        burst=r.burst,
        header=r.header if r.key == "Header" else None,
        claim=r.claim if r.key == "Claim" else None,
        concurrency=r.concurrency,
    )


def _targets(r: alb.Rule) -> list[Backend]:
    """The backends a rule sends requests to (valid ones: the others get 500), its
    external authorization Service's included."""
    external = r.auth.external if r.auth is not None else None
    checks = (external.backend,) if external is not None else ()
    pages = (r.error_pages.backend,) if r.error_pages is not None else ()
    return [b for b in (*r.backends, *(mi.backend for mi in r.mirrors), *checks, *pages) if b.valid]


# (the status codes, the upstream TLS setting or None) of an error pages location
_ErrorPagesNeed = tuple[tuple[int, ...], BackendTLS | None]


def _error_pages_needs(r: alb.Rule) -> set[_ErrorPagesNeed]:
    """The error pages locations a rule's requests may go to: one per upstream TLS
    setting among its backends (router.forward picks by the backend)."""
    if r.error_pages is None:
        return set()
    return {(r.error_pages.codes, b.tls) for b in r.backends if b.valid}


def _error_pages_locations(
    needs: Iterable[_ErrorPagesNeed], tls_index: Mapping[BackendTLS, int]
) -> tuple[tuple[tuple[int, ...], int | None], ...]:
    return tuple(
        sorted(
            {(codes, None if tls is None else tls_index[tls]) for codes, tls in needs},
            key=lambda need: (need[0], -1 if need[1] is None else need[1]),
        )
    )


@attrs.frozen
class _BackendPolicies:
    """What our policies about backends set for one backend (compared by equality)."""

    health: alb.BackendHealth | None = None
    load_balancing: alb.LoadBalancing | None = None

    @classmethod
    def of(cls, model: LoadBalancer, name: str) -> _BackendPolicies:
        return cls(model.health_checks.get(name), model.load_balancing.get(name))


class MeshEndpoints(Protocol):
    """Which endpoints of mesh backends proved their identity (mesh/verify.py)."""

    # moves whenever a verdict changes (the mesh backends are encoded again)
    generation: int

    def allows(self, endpoint: alb.Endpoint) -> bool: ...


def _target(
    b: Backend,
    tls: dict[BackendTLS, int],
    endpoints: tuple[alb.Endpoint, ...],
    policies: _BackendPolicies,
    mesh: MeshEndpoints | None,
) -> state.Target:
    # every rule sending to one Service port sees the same endpoints, TLS and policies
    lb = policies.load_balancing
    if b.mesh:
        # only endpoints that proved to be who their pods run as get traffic
        endpoints = tuple(e for e in endpoints if mesh is not None and mesh.allows(e))
    return state.Target(
        endpoints=tuple(state.Endpoint(addr=e.address, port=e.port) for e in endpoints),
        protocol=b.protocol,
        tls=tls[b.tls] if b.tls is not None else None,
        mesh=b.mesh,
        health=_health(policies.health.probe if policies.health else None),
        passive=None
        if policies.health is None or policies.health.passive is None
        else state.PassiveHealthCheck(
            consecutive_failures=policies.health.passive.consecutive_failures,
            ejection_ms=policies.health.passive.ejection_ms,
        ),
        lb=None
        if lb is None
        else state.LoadBalancing(
            strategy=lb.strategy,
            hash_on=lb.hash_on,
            hash_name=lb.hash_name,
            slow_start_ms=lb.slow_start_ms,
            max_requests=lb.max_requests,
        ),
    )


def _health(h: alb.HealthCheck | None) -> state.HealthCheck | None:
    if h is None:
        return None
    return state.HealthCheck(
        protocol=h.protocol,
        interval_ms=h.interval_ms,
        timeout_ms=h.timeout_ms,
        healthy_threshold=h.healthy_threshold,
        unhealthy_threshold=h.unhealthy_threshold,
        port=h.port,
        host=h.host,
        path=h.path,
        status_codes=h.status_codes,
        grpc_service=h.grpc_service,
    )


def _tls_order(t: BackendTLS) -> tuple[str, ...]:
    """Upstream TLS settings in a fixed order: `@agc_tls_<n>` depends on the set alone."""
    client = t.client_certificate
    return (
        t.sni,
        t.ca_pem or "",
        "\n".join(f"{n.type}:{n.value}" for n in t.subject_alt_names),
        client.cert_pem if client else "",
    )


def _speaks_h2c(host: alb.Host) -> bool:
    return any(r.grpc or any(b.protocol == "h2c" for b in r.backends) for r in host.rules)


def _listeners(model: LoadBalancer, port_offset: int) -> state.RouterState:
    """The state's listener part: frontends by bound port, most specific hostname
    first, and the certificates and client CAs they refer to by index, each once."""
    certs: list[state.CertificateKey] = []
    cas: list[str] = []

    def index(items: list[Any], item: Any) -> int:
        if item not in items:
            items.append(item)
        return items.index(item)

    frontends: dict[str, list[state.Frontend]] = {}
    served = (f for f in model.frontends if f.protocol in _HTTP_PROTOCOLS)
    for f in sorted(served, key=lambda f: (f.port, specificity(f.hostname), f.name)):
        validation = f.client_validation
        frontends.setdefault(str(f.port + port_offset), []).append(
            state.Frontend(
                name=f.name,
                port=f.port,
                hostname=f.hostname,
                certs=tuple(
                    index(certs, state.CertificateKey(cert=c.cert_pem, key=c.key_pem))
                    for c in f.certificates
                ),
                client_ca=index(cas, validation.ca_pem) if validation else None,
                insecure_fallback=bool(validation and validation.insecure_fallback),
            )
        )
    return state.RouterState(
        frontends={port: tuple(fs) for port, fs in frontends.items()},
        hosts={},
        rules={},
        backends={},
        certs=tuple(certs),
        cas=tuple(cas),
    )


def _needs(
    model: LoadBalancer,
    port_offset: int,
    h2c_ports: set[int],
    tls: tuple[BackendTLS, ...],
    mesh: bool,
    *,
    error_pages: tuple[tuple[tuple[int, ...], int | None], ...],
) -> StaticNeeds:
    # NGINX 1.22 serves either HTTP/1.x or h2c on a plain port, not both: ports
    # with gRPC rules or h2c backends (whose clients speak h2c too) get a protocol
    # sniffer in front (static.py), others do not
    listens = {
        (f.port + port_offset, f.protocol == "HTTPS")
        for f in model.frontends
        if f.protocol in _HTTP_PROTOCOLS
    }
    by_port = _stream_frontends(model, port_offset)
    streams = tuple(
        StreamListen(
            port=port,
            protocol=cast(StreamProtocol, protocol),
            passthrough=protocol == "TLS" and any(not f.certificates for f in frontends),
            terminations=tuple(f.certificates[0] for f in _terminating(frontends)),
        )
        for (port, protocol), frontends in sorted(by_port.items())
    )
    tls_ports = {s.port for s in streams if s.protocol == "TLS"}
    return StaticNeeds(
        listens=tuple(
            Listen(port=p, https=s, h2c=not s and p in h2c_ports, behind_tls=p in tls_ports)
            for p, s in sorted(listens)
        ),
        backend_tls=tls,
        streams=streams,
        waf=model.waf_rule_sets,
        mesh=mesh,
        error_pages=error_pages,
    )


def _stream_frontends(
    model: LoadBalancer, port_offset: int
) -> dict[tuple[int, str], list[alb.Frontend]]:
    """The TLS, TCP and UDP listeners by (bound port, protocol)."""
    by_port: dict[tuple[int, str], list[alb.Frontend]] = {}
    for f in model.frontends:
        if f.protocol not in _HTTP_PROTOCOLS:
            by_port.setdefault((f.port + port_offset, f.protocol), []).append(f)
    return by_port


def _terminating(frontends: list[alb.Frontend]) -> list[alb.Frontend]:
    """A TLS port's listeners in mode Terminate (those holding certificates), in the
    order their terminating servers are numbered."""
    return sorted((f for f in frontends if f.certificates), key=lambda f: f.name)


def _endpoint_address(e: alb.Endpoint) -> str:
    return f"[{e.address}]:{e.port}" if ":" in e.address else f"{e.address}:{e.port}"


def _streams(model: LoadBalancer, port_offset: int) -> dict[str, state.Stream]:
    """The model's streams by state.stream_key (a few per listener: built whole)."""
    terminating = {
        f.name: number
        for frontends in _stream_frontends(model, port_offset).values()
        for number, f in enumerate(_terminating(frontends))
    }
    return {
        state.stream_key(s.port + port_offset, s.protocol, s.hostname): state.Stream(
            backends=tuple(
                state.StreamBackend(
                    weight=b.weight,
                    endpoints=tuple(map(_endpoint_address, model.endpoints.get(b.name, ())))
                    if b.valid
                    else (),
                )
                for b in s.backends
            ),
            terminate=terminating.get(s.listener),
        )
        for s in model.streams
    }


def router_state(
    model: LoadBalancer, *, port_offset: int = 0, mesh: MeshEndpoints | None = None
) -> tuple[state.RouterState, StaticNeeds]:
    """The router's state, and what the static config needs (from scratch; StateParts
    keeps the same between builds and updates it by difference)."""
    hosts: dict[str, list[state.Host]] = {}
    rules: dict[str, alb.Rule] = {}
    for h in model.hosts:
        ids = []
        for r in h.rules:
            ids.append(key := rule_id(r))
            rules.setdefault(key, r)
        hosts.setdefault(h.listener, []).append(state.Host(hostname=h.hostname, rules=tuple(ids)))
    targets = {backend_id(b): b for r in rules.values() for b in _targets(r)}
    tls = tuple(sorted({b.tls for b in targets.values() if b.tls}, key=_tls_order))
    tls_index = {t: i for i, t in enumerate(tls)}
    router = attrs.evolve(
        _listeners(model, port_offset),
        hosts={listener: tuple(hs) for listener, hs in hosts.items()},
        rules={key: _rule(r) for key, r in rules.items()},
        backends={
            key: _target(
                b,
                tls_index,
                model.endpoints.get(b.name, ()),
                _BackendPolicies.of(model, b.name),
                mesh,
            )
            for key, b in targets.items()
        },
        streams=_streams(model, port_offset),
    )
    h2c_ports = {h.port + port_offset for h in model.hosts if _speaks_h2c(h)}
    uses_mesh = any(b.mesh for b in targets.values())
    error_pages = _error_pages_locations(
        (need for r in rules.values() for need in _error_pages_needs(r)), tls_index
    )
    return router, _needs(model, port_offset, h2c_ports, tls, uses_mesh, error_pages=error_pages)


def build_state(
    model: LoadBalancer, *, port_offset: int = 0, mesh: MeshEndpoints | None = None
) -> tuple[dict[str, Any], StaticNeeds]:
    """The router's state as the JSON document it is sent as, and the static needs
    (`mesh`: which mesh endpoints may get traffic; None: none)."""
    router, needs = router_state(model, port_offset=port_offset, mesh=mesh)
    document: dict[str, Any] = state.to_json(router)
    return document, needs


def encode(value: Any) -> bytes:
    """A part as the router stores it: compact JSON."""
    return json.dumps(value, separators=(",", ":")).encode()


def encoded_parts(document: Mapping[str, Any]) -> dict[str, bytes]:
    """A whole JSON document (build_state) as encoded parts (state.parts)."""
    return {name: encode(value) for name, value in state.parts(document).items()}


@attrs.define
class _RuleEntry:
    rule: alb.Rule
    # hosts listing the rule
    users: int
    text: bytes
    # the backends it sends to, by id (their Target comes from these)
    targets: tuple[tuple[str, Backend], ...]


@attrs.define
class _BackendEntry:
    # rules sending to it
    users: int
    backend: Backend
    # the endpoints the text was made with (the model's own tuple: identity tells)
    endpoints: tuple[alb.Endpoint, ...] = ()
    # the policies the text was made with (equality tells)
    policies: _BackendPolicies = attrs.field(factory=_BackendPolicies)
    # None: to encode (new, changed, or the upstream TLS settings moved)
    text: bytes | None = None


class StateParts:
    """The router state of one Gateway as encoded parts, kept between builds and
    updated by difference: `build(model)` equals `encoded_parts(build_state(model))`
    (tests/unit/test_translate_incremental.py), at a cost that follows what changed.

    Translation keeps a Host object while its table is unchanged (translate/memo.py),
    so a host that is the same object as last time is skipped outright. A changed
    host re-counts the rules it lists; a rule is encoded when it first appears or
    its object changed, and dropped when no host lists it; a backend likewise by
    the rules sending to it. The listener part is encoded again only when the
    frontends differ, every backend only when the set of upstream TLS settings
    (whose order names `@agc_tls_<n>`) does.

    Invariants between builds: `_hosts` holds every host of the last model with its
    text; `_rules` exactly the rules those hosts list, `users` counting the hosts;
    `_backends` exactly the targets of those rules, `users` counting the rules.
    """

    def __init__(self, *, port_offset: int = 0) -> None:
        self._port_offset = port_offset
        # part name -> (the host, its text, its bound port if it speaks h2c)
        self._hosts: dict[str, tuple[alb.Host, bytes, int | None]] = {}
        self._rules: dict[str, _RuleEntry] = {}
        self._backends: dict[str, _BackendEntry] = {}
        self._tls: tuple[BackendTLS, ...] = ()
        # the MeshEndpoints generation the mesh backends were encoded with
        self._mesh_generation: int | None = None
        # the frontends the listener part was made from, and its text
        self._listeners: tuple[tuple[alb.Frontend, ...], bytes] | None = None
        # error pages locations the rules use -> how many rules use each
        self._error_pages: Counter[_ErrorPagesNeed] = Counter()

    def build(
        self, model: LoadBalancer, mesh: MeshEndpoints | None = None
    ) -> tuple[dict[str, bytes], StaticNeeds]:
        seen: set[str] = set()
        for host in model.hosts:
            name = f"h:{host.listener}:{host.hostname}"
            seen.add(name)
            known = self._hosts.get(name)
            if known is not None and known[0] is host:
                continue
            for r in host.rules:
                self._use_rule(r)
            if known is not None:
                for r in known[0].rules:
                    self._release_rule(rule_id(r))
            text = encode(
                state.to_json(
                    state.Host(hostname=host.hostname, rules=tuple(rule_id(r) for r in host.rules))
                )
            )
            port = host.port + self._port_offset if _speaks_h2c(host) else None
            self._hosts[name] = (host, text, port)
        for name in [n for n in self._hosts if n not in seen]:
            for r in self._hosts.pop(name)[0].rules:
                self._release_rule(rule_id(r))
        tls = tuple(
            sorted(
                {e.backend.tls for e in self._backends.values() if e.backend.tls}, key=_tls_order
            )
        )
        if tls != self._tls:
            self._tls = tls
            for entry in self._backends.values():
                entry.text = None
        tls_index = {t: i for i, t in enumerate(tls)}
        generation = None if mesh is None else mesh.generation
        if generation != self._mesh_generation:
            self._mesh_generation = generation
            for entry in self._backends.values():
                if entry.backend.mesh:
                    entry.text = None
        for entry in self._backends.values():
            endpoints = model.endpoints.get(entry.backend.name, ())
            policies = _BackendPolicies.of(model, entry.backend.name)
            if entry.text is None or entry.endpoints is not endpoints or entry.policies != policies:
                target = _target(entry.backend, tls_index, endpoints, policies, mesh)
                entry.text = encode(state.to_json(target))
                entry.endpoints, entry.policies = endpoints, policies
        if self._listeners is None or self._listeners[0] != model.frontends:
            listeners = state.to_json(_listeners(model, self._port_offset))
            self._listeners = (model.frontends, encode(listeners))
        parts = {"meta": self._listeners[1]}
        parts.update((f"b:{key}", e.text) for key, e in self._backends.items() if e.text)
        parts.update((f"r:{key}", e.text) for key, e in self._rules.items())
        parts.update((name, known[1]) for name, known in self._hosts.items())
        parts.update(
            (state.STREAM_PART + key, encode(state.to_json(stream)))
            for key, stream in _streams(model, self._port_offset).items()
        )
        h2c_ports = {port for _, _, port in self._hosts.values() if port is not None}
        uses_mesh = any(e.backend.mesh for e in self._backends.values())
        error_pages = _error_pages_locations(
            (need for need, users in self._error_pages.items() if users > 0), tls_index
        )
        return parts, _needs(
            model, self._port_offset, h2c_ports, tls, uses_mesh, error_pages=error_pages
        )

    def mesh_endpoints(self, model: LoadBalancer) -> list[alb.Endpoint]:
        """The endpoints of the mesh backends of the last build (of `model`)."""
        return [
            e
            for entry in self._backends.values()
            if entry.backend.mesh
            for e in model.endpoints.get(entry.backend.name, ())
        ]

    def _use_rule(self, r: alb.Rule) -> None:
        key = rule_id(r)
        entry = self._rules.get(key)
        if entry is None:
            entry = self._rules[key] = _RuleEntry(rule=r, users=0, text=b"", targets=())
        if entry.rule is not r or not entry.text:
            for backend_key, _ in entry.targets:
                self._release_backend(backend_key)
            if entry.text:
                self._error_pages.subtract(_error_pages_needs(entry.rule))
            self._error_pages.update(_error_pages_needs(r))
            entry.rule, entry.text = r, encode(state.to_json(_rule(r)))
            entry.targets = tuple((backend_id(b), b) for b in _targets(r))
            for backend_key, b in entry.targets:
                self._use_backend(backend_key, b)
        entry.users += 1

    def _release_rule(self, key: str) -> None:
        entry = self._rules[key]
        entry.users -= 1
        if entry.users == 0:
            for backend_key, _ in entry.targets:
                self._release_backend(backend_key)
            self._error_pages.subtract(_error_pages_needs(entry.rule))
            del self._rules[key]

    def _use_backend(self, key: str, b: Backend) -> None:
        entry = self._backends.get(key)
        if entry is None:
            self._backends[key] = _BackendEntry(users=1, backend=b)
            return
        # the id already names the Service port and protocol, and endpoints are the
        # model's table's: of a Backend, only its TLS settings shape the Target
        if entry.backend is not b and (entry.backend.tls, entry.backend.mesh) != (b.tls, b.mesh):
            entry.backend, entry.text = b, None
        entry.users += 1

    def _release_backend(self, key: str) -> None:
        entry = self._backends[key]
        entry.users -= 1
        if entry.users == 0:
            del self._backends[key]
