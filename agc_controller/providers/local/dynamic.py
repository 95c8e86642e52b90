"""ALB model → the dynamic state the Lua router reads (pure).

Everything a user wrote (hostnames, paths, header names and values, regexes,
redirect parts) travels here as JSON data, never as NGINX configuration text:
the router compares and copies values, it never interprets them as config.
Static pieces that NGINX must know at startup (listening ports, upstream TLS
settings) are collected separately into `StaticNeeds`.
"""

from __future__ import annotations

from typing import Any

import attrs

from agc_controller.translate.hostnames import specificity
from agc_controller.translate.model import (
    Backend,
    BackendTLS,
    Frontend,
    HeaderModifier,
    LoadBalancer,
    Retry,
    Rule,
)

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


def _modifier(m: HeaderModifier | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "set": [list(p) for p in m.set],
        "add": [list(p) for p in m.add],
        "remove": list(m.remove),
    }


@attrs.define
class _Builder:
    port_offset: int
    certs: list[dict[str, str]] = attrs.field(factory=list)
    cert_index: dict[tuple[str, str], int] = attrs.field(factory=dict)
    cas: list[str] = attrs.field(factory=list)
    backends: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    tls: list[BackendTLS] = attrs.field(factory=list)

    def cert(self, cert_pem: str, key_pem: str) -> int:
        key = (cert_pem, key_pem)
        if key not in self.cert_index:
            self.cert_index[key] = len(self.certs)
            self.certs.append({"cert": cert_pem, "key": key_pem})
        return self.cert_index[key]

    def ca(self, pem: str) -> int:
        if pem not in self.cas:
            self.cas.append(pem)
        return self.cas.index(pem)

    def backend(self, b: Backend) -> dict[str, Any]:
        # one Service port can be an HTTP backend of one route and an h2c one of
        # another (a GRPCRoute's default): each protocol is its own backend
        key = b.name if b.protocol == "http" else f"{b.name}#{b.protocol}"
        if b.valid:
            tls_index = None
            if b.tls is not None:
                if b.tls not in self.tls:
                    self.tls.append(b.tls)
                tls_index = self.tls.index(b.tls)
            self.backends[key] = {
                "endpoints": [[e.address, e.port] for e in b.endpoints],
                "protocol": b.protocol,
                "tls": tls_index,
            }
        return {
            "id": key,
            "w": b.weight,
            "valid": b.valid,
            "req": _modifier(b.request_headers),
            "resp": _modifier(b.response_headers),
        }

    def frontend(self, f: Frontend) -> dict[str, Any]:
        return {
            "name": f.name,
            "hostname": f.hostname,
            "port": f.port,
            "certs": [self.cert(c.cert_pem, c.key_pem) for c in f.certificates],
            "client_ca": self.ca(f.client_validation.ca_pem) if f.client_validation else None,
            "client_validation": f.client_validation is not None,
            "insecure_fallback": bool(
                f.client_validation and f.client_validation.insecure_fallback
            ),
        }

    @staticmethod
    def retry(retry: Retry | None) -> dict[str, Any] | None:
        """Each set of retriable codes has its own location, whose error_page
        sends exactly those answers back to the router for another try."""
        if retry is None:
            return None
        codes = tuple(sorted(set(retry.codes) & RETRIABLE_CODES))
        return {
            "attempts": retry.attempts,
            "location": retry_location(codes),
            "backoff_ms": retry.backoff_ms,
        }

    def rule(self, r: Rule) -> dict[str, Any]:
        m = r.match
        redirect = None
        if r.redirect is not None:
            redirect = attrs.asdict(r.redirect)
        rewrite = attrs.asdict(r.rewrite) if r.rewrite is not None else None
        return {
            "route": r.route.namespaced_name,
            "match": {
                "path": [m.path.type, m.path.value],
                "method": m.method,
                "headers": [[h.type, h.name, h.value] for h in m.headers],
                "query": [[q.type, q.name, q.value] for q in m.query_params],
            },
            "backends": [self.backend(b) for b in r.backends],
            "req": _modifier(r.request_headers),
            "resp": _modifier(r.response_headers),
            "redirect": redirect,
            "rewrite": rewrite,
            "mirrors": [
                {"backend": self.backend(mi.backend)["id"], "percent": mi.percent}
                for mi in r.mirrors
                if mi.backend.valid
            ],
            "cors": attrs.asdict(r.cors) if r.cors is not None else None,
            "timeout_ms": r.request_timeout_ms,
            "backend_timeout_ms": r.backend_timeout_ms,
            "session": attrs.asdict(r.session_persistence) if r.session_persistence else None,
            "retry": self.retry(r.retry),
            "grpc": r.grpc,
        }


def _without_nulls(value: Any) -> Any:
    """Drop None values: JSON null decodes to a truthy sentinel in Lua."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def build_state(model: LoadBalancer, *, port_offset: int = 0) -> tuple[dict[str, Any], StaticNeeds]:
    """The JSON document for the router, and what the static config needs."""
    b = _Builder(port_offset=port_offset)
    frontends: dict[str, list[dict[str, Any]]] = {}
    for f in sorted(model.frontends, key=lambda f: (f.port, specificity(f.hostname), f.name)):
        frontends.setdefault(str(f.port + port_offset), []).append(b.frontend(f))
    hosts: dict[str, list[dict[str, Any]]] = {}
    for h in model.hosts:
        hosts.setdefault(h.listener, []).append(
            {"hostname": h.hostname, "rules": [b.rule(r) for r in h.rules]}
        )
    # NGINX 1.22 serves either HTTP/1.x or h2c on a plain port, not both: ports
    # with gRPC rules or h2c backends (whose clients speak h2c too) get a protocol
    # sniffer in front (static.py), others do not
    h2c_ports = {
        h.port + port_offset
        for h in model.hosts
        if any(r.grpc or any(b.protocol == "h2c" for b in r.backends) for r in h.rules)
    }
    listens = {(f.port + port_offset, f.protocol == "HTTPS") for f in model.frontends}
    doc = _without_nulls(
        {
            "frontends": frontends,
            "hosts": hosts,
            "backends": b.backends,
            "certs": b.certs,
            "cas": b.cas,
        }
    )
    needs = StaticNeeds(
        listens=tuple(
            Listen(port=p, https=s, h2c=not s and p in h2c_ports) for p, s in sorted(listens)
        ),
        backend_tls=tuple(b.tls),
    )
    return doc, needs
