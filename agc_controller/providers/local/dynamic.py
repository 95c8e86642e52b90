"""ALB model → the dynamic state the Lua router reads (pure; its schema: state.py).

Everything a user wrote (hostnames, paths, header names and values, regexes,
redirect parts) travels here as JSON data, never as NGINX configuration text:
the router compares and copies values, it never interprets them as config.
Static pieces that NGINX must know at startup (listening ports, upstream TLS
settings) are collected separately into `StaticNeeds`.
"""

from __future__ import annotations

from typing import Any

import attrs

from agc_controller.providers.local import state
from agc_controller.translate import model as alb
from agc_controller.translate.hostnames import specificity
from agc_controller.translate.model import Backend, BackendTLS, LoadBalancer

# status codes NGINX can retry on (besides connection errors and timeouts); the
# Gateway API requires 500, 502, 503 and 504 — other codes are not retried
RETRIABLE_CODES = frozenset({500, 502, 503, 504})


# A retry on a status code costs the request one internal redirect (error_page
# back into its retry location), and two more go to entering that location and
# to the last try; NGINX allows a request ten internal redirects in all.
RETRY_ATTEMPTS_MAX = 8


def retry_location(codes: tuple[int, ...]) -> str:
    return "@agc_retry_" + ("_".join(map(str, codes)) or "errors")


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


@attrs.frozen
class StaticNeeds:
    """What the static NGINX configuration of one Gateway must contain."""

    listens: tuple[Listen, ...]
    # one named location per distinct upstream TLS setting; index = position
    backend_tls: tuple[BackendTLS, ...]


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
    return state.Rewrite(hostname=r.hostname, path_type=r.path_type, path_value=r.path_value)


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


@attrs.define
class _Builder:
    """Collects what rules share (backends, upstream TLS settings, certificates,
    CAs) into the state's top-level tables, each entry once."""

    certs: list[state.CertificateKey] = attrs.field(factory=list)
    cas: list[str] = attrs.field(factory=list)
    backends: dict[str, state.Target] = attrs.field(factory=dict)
    tls: list[BackendTLS] = attrs.field(factory=list)

    def cert(self, c: alb.Certificate) -> int:
        pair = state.CertificateKey(cert=c.cert_pem, key=c.key_pem)
        if pair not in self.certs:
            self.certs.append(pair)
        return self.certs.index(pair)

    def ca(self, pem: str) -> int:
        if pem not in self.cas:
            self.cas.append(pem)
        return self.cas.index(pem)

    def backend(self, b: Backend) -> state.BackendRef:
        # one Service port can be an HTTP backend of one route and an h2c one of
        # another (a GRPCRoute's default): each protocol is its own backend
        key = b.name if b.protocol == "http" else f"{b.name}#{b.protocol}"
        # every rule sending to one Service port sees the same endpoints and TLS
        if b.valid and key not in self.backends:
            tls_index = None
            if b.tls is not None:
                if b.tls not in self.tls:
                    self.tls.append(b.tls)
                tls_index = self.tls.index(b.tls)
            self.backends[key] = state.Target(
                endpoints=tuple(state.Endpoint(addr=e.address, port=e.port) for e in b.endpoints),
                protocol=b.protocol,
                tls=tls_index,
            )
        return state.BackendRef(
            id=key,
            weight=b.weight,
            valid=b.valid,
            req=_modifier(b.request_headers),
            resp=_modifier(b.response_headers),
        )

    def frontend(self, f: alb.Frontend) -> state.Frontend:
        validation = f.client_validation
        return state.Frontend(
            name=f.name,
            port=f.port,
            hostname=f.hostname,
            certs=tuple(self.cert(c) for c in f.certificates),
            client_ca=self.ca(validation.ca_pem) if validation else None,
            insecure_fallback=bool(validation and validation.insecure_fallback),
        )

    def rule(self, r: alb.Rule) -> state.Rule:
        m = r.match
        return state.Rule(
            route=r.route.namespaced_name,
            match=state.Match(
                path=state.PathMatch(type=m.path.type, value=m.path.value),
                method=m.method,
                headers=_matches(m.headers),
                query=_matches(m.query_params),
            ),
            backends=tuple(self.backend(b) for b in r.backends),
            req=_modifier(r.request_headers),
            resp=_modifier(r.response_headers),
            redirect=_redirect(r.redirect),
            rewrite=_rewrite(r.rewrite),
            mirrors=tuple(
                state.Mirror(backend=self.backend(mi.backend).id, percent=mi.percent)
                for mi in r.mirrors
                if mi.backend.valid
            ),
            cors=_cors(r.cors),
            timeout_ms=r.request_timeout_ms,
            backend_timeout_ms=r.backend_timeout_ms,
            session=_session(r.session_persistence),
            retry=_retry(r.retry),
        )


def rule_id(rule: alb.Rule) -> str:
    """The key of a rule in the router state: its route, rule and match index."""
    return f"{rule.route}#{rule.rule_index}.{rule.match_index}"


def router_state(
    model: LoadBalancer, *, port_offset: int = 0
) -> tuple[state.RouterState, StaticNeeds]:
    """The router's state, and what the static config needs."""
    b = _Builder()
    frontends: dict[str, list[state.Frontend]] = {}
    for f in sorted(model.frontends, key=lambda f: (f.port, specificity(f.hostname), f.name)):
        frontends.setdefault(str(f.port + port_offset), []).append(b.frontend(f))
    hosts: dict[str, list[state.Host]] = {}
    rules: dict[str, state.Rule] = {}
    for h in model.hosts:
        ids = []
        for r in h.rules:
            key = rule_id(r)
            if key not in rules:
                rules[key] = b.rule(r)
            ids.append(key)
        hosts.setdefault(h.listener, []).append(state.Host(hostname=h.hostname, rules=tuple(ids)))
    # NGINX 1.22 serves either HTTP/1.x or h2c on a plain port, not both: ports
    # with gRPC rules or h2c backends (whose clients speak h2c too) get a protocol
    # sniffer in front (static.py), others do not
    h2c_ports = {
        h.port + port_offset
        for h in model.hosts
        if any(r.grpc or any(b.protocol == "h2c" for b in r.backends) for r in h.rules)
    }
    listens = {(f.port + port_offset, f.protocol == "HTTPS") for f in model.frontends}
    router = state.RouterState(
        frontends={port: tuple(fs) for port, fs in frontends.items()},
        hosts={listener: tuple(hs) for listener, hs in hosts.items()},
        rules=rules,
        backends=b.backends,
        certs=tuple(b.certs),
        cas=tuple(b.cas),
    )
    needs = StaticNeeds(
        listens=tuple(
            Listen(port=p, https=s, h2c=not s and p in h2c_ports) for p, s in sorted(listens)
        ),
        backend_tls=tuple(b.tls),
    )
    return router, needs


def build_state(model: LoadBalancer, *, port_offset: int = 0) -> tuple[dict[str, Any], StaticNeeds]:
    """The router's state as the JSON document it is sent as, and the static needs."""
    router, needs = router_state(model, port_offset=port_offset)
    document: dict[str, Any] = state.to_json(router)
    return document, needs
