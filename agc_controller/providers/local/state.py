"""The router state: the one document the controller sends the Lua router.

This module is the contract between the two. Each class is one element of the
document; its field names are the JSON keys, and lua/agc/config.lua's header
lists the same names (config.lua compiles the document, router.lua, certs.lua
and balancer.lua read it). Change a field here and there together; the golden
files (tests/golden/cases/*.nginx) and the Lua tests show what moved.

Invariants of the JSON form (`to_json`):
- one spelling: keys are the field names, nothing else renames them;
- no JSON null (it decodes to a truthy sentinel in Lua), no `false`, no empty
  list or object: an absent key reads as nil in Lua, and config.lua defaults
  lists to `{}`. This keeps the document small, which matters at thousands of
  rules;
- references between elements are 0-based indexes into a top-level list
  (`certs`, `cas`) or ids into the `backends` map, so shared material is sent
  once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from agc_controller.translate.model import BackendProtocol, MatchType, PathType


@attrs.frozen
class HeaderValue:
    # a header name as the user wrote it (responses show it; lookups lower-case it)
    name: str
    # the value to set or append, as the user wrote it
    value: str


@attrs.frozen
class HeaderModifier:
    """RequestHeaderModifier / ResponseHeaderModifier, applied in this order."""

    # replace the header (or add it)
    set: tuple[HeaderValue, ...] = ()
    # append to the header's existing values (comma-joined in requests)
    add: tuple[HeaderValue, ...] = ()
    # header names to drop
    remove: tuple[str, ...] = ()


@attrs.frozen
class PathMatch:
    # Exact, PathPrefix or RegularExpression
    type: PathType
    # Exact: the path; PathPrefix: the prefix (segment-aware); RegularExpression:
    # a PCRE the whole path must match
    value: str


@attrs.frozen
class ValueMatch:
    """One header or query-parameter match; all of a rule's must match."""

    # Exact or RegularExpression
    type: MatchType
    # header names compare case-insensitively, query parameter names exactly
    name: str
    # Exact: the value; RegularExpression: a PCRE searched in the value
    value: str


@attrs.frozen
class Match:
    # every rule has one (the Gateway API default is PathPrefix "/")
    path: PathMatch
    # None: any method
    method: str | None = None
    # all must match
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()


@attrs.frozen
class BackendRef:
    """One weighted backend of a rule."""

    # key into RouterState.backends (absent there when the ref is invalid)
    id: str
    # relative share of the rule's traffic; 0 takes none
    weight: int
    # False: this share of traffic gets HTTP 500 (an unresolved backendRef)
    valid: bool
    # header modifiers of this backendRef, applied after the rule's
    req: HeaderModifier | None = None
    resp: HeaderModifier | None = None


@attrs.frozen
class Redirect:
    """RequestRedirect: None fields keep the request's value."""

    # 301, 302, 303, 307 or 308
    status_code: int
    # "http" or "https"
    scheme: str | None = None
    # the Location's host
    hostname: str | None = None
    # None: the scheme's default port when the scheme changes, else the listener's
    port: int | None = None
    # ReplaceFullPath: path_value is the path; ReplacePrefixMatch: it replaces
    # the part of the path the rule's PathPrefix matched
    path_type: Literal["ReplaceFullPath", "ReplacePrefixMatch"] | None = None
    path_value: str | None = None


@attrs.frozen
class Rewrite:
    """URLRewrite: None fields keep the request's value."""

    # the Host header sent upstream
    hostname: str | None = None
    # the path the backend sees, as in Redirect; or ReplaceRegexMatch: the first match
    # of `path_pattern` (a PCRE) in the path is replaced by `path_value`, a template
    # of ngx.re.sub ($1 / ${1} the groups, $$ a dollar)
    path_type: Literal["ReplaceFullPath", "ReplacePrefixMatch", "ReplaceRegexMatch"] | None = None
    path_value: str | None = None
    path_pattern: str | None = None


@attrs.frozen
class Mirror:
    # key into RouterState.backends (only valid backends are mirrored to)
    backend: str
    # share of requests mirrored, in percent (0..100, fractional allowed)
    percent: float


@attrs.frozen
class ErrorPages:
    """Custom error pages: the rule's requests go to `location` (the static config
    intercepts its answers with the codes there; `_tls_<n>` appended for a backend
    over upstream TLS setting n), and an intercepted answer is replaced by what
    `backend` answers (router.error_page)."""

    location: str
    # key into RouterState.backends; absent there when it is not valid (then the
    # rule has no valid backends either: graph/routes.py fails it)
    backend: str


@attrs.frozen
class Cors:
    # "*", an origin, or an origin with one "*" label wildcard
    allow_origins: tuple[str, ...] = ()
    # answered to preflights ("*" with credentials: the method asked for)
    allow_methods: tuple[str, ...] = ()
    # answered to preflights ("*" with credentials: the headers asked for)
    allow_headers: tuple[str, ...] = ()
    # Access-Control-Expose-Headers on preflights and responses
    expose_headers: tuple[str, ...] = ()
    # answer with the origin itself, never "*", and allow credentials
    allow_credentials: bool = False
    # seconds; the router answers Access-Control-Max-Age with it
    max_age: int = 5


@attrs.frozen
class Retry:
    # tries after the first one, shared by connection failures and retried codes
    attempts: int
    # the named location (static.py renders one per set of retried codes) whose
    # error_page sends exactly this policy's codes back to the router
    location: str
    # the wait before each retry after a retried code
    backoff_ms: int | None = None


@attrs.frozen
class RateLimit:
    """A RateLimitPolicy in force: each key may send `requests` per `period_s`,
    up to `burst` at once after a pause, and have `concurrency` requests in
    flight at once (lua/agc/ratelimit.lua); either, or both."""

    # the counters' name (policy and target): rules sharing it share budgets
    bucket: str
    # the rate: all three, or none (a concurrency limit alone)
    requests: int | None = None
    period_s: int | None = None
    burst: int | None = None
    # the header whose value is the key, or the verified JWT claim; neither: the
    # client's address
    header: str | None = None
    claim: str | None = None
    # requests in flight at once per key (counted in the shared dict agc_inflight)
    concurrency: int | None = None


@attrs.frozen
class Auth:
    """An AuthPolicy in force (lua/agc/auth.lua): addresses, then credentials."""

    # an invalid policy: every request is refused (500)
    refuse: bool = False
    # CIDRs: refused first, then (when set) the only ones let through
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    # peers whose X-Forwarded-For names the client
    trusted_proxies: tuple[str, ...] = ()
    # API keys: SHA-256 (hex) -> client name, in `key_header` or `key_query`
    api_keys: Mapping[str, str] | None = attrs.field(default=None, repr=False)
    key_header: str | None = None
    key_query: str | None = None
    client_header: str | None = None
    # basic: user -> crypt(3) hash (or {SHA}), and the realm to ask in
    users: Mapping[str, str] | None = attrs.field(default=None, repr=False)
    realm: str | None = None
    external: ExternalAuth | None = None
    # bearer tokens (lua/agc/jwt.lua): valid for one of these issuers
    jwt: tuple[JwtProvider, ...] = ()


@attrs.frozen
class JwtProvider:
    issuer: str
    # the token's aud must hold one; empty: not checked
    audiences: tuple[str, ...] = ()
    # (kid, "" for none; alg; PEM public key)
    keys: tuple[tuple[str, str, str], ...] = ()
    # (claim, request header)
    claims_to_headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class ExternalAuth:
    """Each request is first asked of an HTTP Service (GET `path`, the request's
    headers): a 2xx lets it on with `headers_to_backend` copied over, anything
    else is the answer; no answer is 503."""

    # key into RouterState.backends
    backend: str
    path: str
    headers_to_backend: tuple[str, ...] = ()
    timeout_ms: int = 2000


@attrs.frozen
class Waf:
    """A WebApplicationFirewallPolicy in force (lua/agc/waf.lua): the rule set
    `id` (static.py's inspection location `/_agc_waf/<id>`) inspects the request;
    what it blocks gets `status` with `body`, unless the policy only detects."""

    id: str
    detect: bool = False
    status: int = 403
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"


@attrs.frozen
class Session:
    """Session persistence: the balancer keeps a client on one endpoint."""

    # the balancer acts on Cookie only
    type: Literal["Cookie", "Header"]
    # the cookie (or header) naming the endpoint
    name: str
    # the cookie's Max-Age; None: a session cookie
    absolute_timeout_s: int | None = None


@attrs.frozen
class Rule:
    """One (route rule, match) pair; a host's rules are in precedence order and
    the router takes the first that matches."""

    # "namespace/name" of the route, for people reading the state
    route: str
    match: Match
    # none, or weights all 0: requests get HTTP 500
    backends: tuple[BackendRef, ...] = ()
    # the rule's header modifiers
    req: HeaderModifier | None = None
    resp: HeaderModifier | None = None
    # a redirect answers the request itself; backends are not used
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    # at most four are used (static.py renders four mirror locations)
    mirrors: tuple[Mirror, ...] = ()
    # the router answers this rule's preflights itself
    cors: Cors | None = None
    # milliseconds; the backend timeout wins over the request timeout where both
    # are set (the balancer applies one to connect, send and read)
    timeout_ms: int | None = None
    backend_timeout_ms: int | None = None
    # bytes a request body may have (413 beyond)
    max_body: int | None = None
    # keep a client on one endpoint of the chosen backend
    session: Session | None = None
    # None: one try
    retry: Retry | None = None
    # checked once the rule matched, before anything else it does (a claim key: after
    # the credentials); the slot in flight it takes is given back when the request ends
    limit: RateLimit | None = None
    # inspected after the limit, before the credentials are checked
    waf: Waf | None = None
    # checked after the firewall
    auth: Auth | None = None
    errors: ErrorPages | None = None


@attrs.frozen
class Host:
    """The rules of one hostname of a listener."""

    # None: any hostname; "*.example.com": one or more labels before the suffix
    hostname: str | None
    # keys into RouterState.rules, in precedence order: a rule that serves many
    # hosts (a route without hostnames serves them all) is sent and compiled once
    rules: tuple[str, ...] = ()


@attrs.frozen
class Frontend:
    """One listener on a bound port."""

    # the listener name: the key of its hosts in RouterState.hosts
    name: str
    # the port the Gateway declared (redirects keep it; NGINX may bind another)
    port: int
    # None: any hostname
    hostname: str | None = None
    # indexes into RouterState.certs; the first is served
    certs: tuple[int, ...] = ()
    # frontend mTLS: index into RouterState.cas of the CA client certificates
    # must chain to; None: no client certificate is asked for
    client_ca: int | None = None
    # with client_ca: let clients without a valid certificate through
    insecure_fallback: bool = False


@attrs.frozen
class Endpoint:
    # an IP address
    addr: str
    # the endpoint's port (the EndpointSlice's)
    port: int


@attrs.frozen
class Target:
    """A backend: the endpoints a request goes to and how to reach them."""

    # none: requests to the backend get 503
    endpoints: tuple[Endpoint, ...]
    # http, h2c (gRPC: the @agc_grpc location) or ws
    protocol: BackendProtocol
    # index of the upstream TLS setting (static.py's @agc_tls_<n> location);
    # None: plain text
    tls: int | None = None
    # over the Istio mesh's mTLS (static.py's @agc_mesh locations, lua/agc/mesh.lua)
    mesh: bool = False
    # how worker 0 probes the endpoints (lua/agc/prober.lua); None: not at all
    health: HealthCheck | None = None
    # passive ejection (lua/agc/health.lua); None: none
    passive: PassiveHealthCheck | None = None
    # strategy, slow start and circuit breaker (lua/agc/strategies.lua); None: round robin
    lb: LoadBalancing | None = None


@attrs.frozen
class HealthCheck:
    """Active probes of a backend's endpoints (a HealthCheckPolicy)."""

    # HTTP and HTTPS: GET `path` with Host `host`; TCP: a connection that opens;
    # GRPC: grpc.health.v1.Health/Check of `grpc_service` answers SERVING
    protocol: Literal["HTTP", "HTTPS", "TCP", "GRPC"]
    interval_ms: int
    # the whole probe, connection included
    timeout_ms: int
    # passed probes in a row that bring an endpoint back, failed ones that take it out
    healthy_threshold: int
    unhealthy_threshold: int
    # None: the endpoint's own port
    port: int | None = None
    host: str | None = None
    path: str | None = None
    # passing statuses, [start, end] inclusive
    status_codes: tuple[tuple[int, int], ...] = ()
    grpc_service: str | None = None


@attrs.frozen
class PassiveHealthCheck:
    """An endpoint whose answers fail `consecutive_failures` times in a row (5xx, or
    no answer) leaves the rotation for `ejection_ms`."""

    consecutive_failures: int
    ejection_ms: int


@attrs.frozen
class LoadBalancing:
    """A BackendLoadBalancingPolicy's settings for one backend."""

    strategy: Literal["RoundRobin", "LeastRequest", "Random", "ConsistentHash"]
    # ConsistentHash: SourceIP, or the Header / Cookie named `hash_name`
    hash_on: Literal["SourceIP", "Header", "Cookie"] | None = None
    hash_name: str | None = None
    slow_start_ms: int | None = None
    # requests in flight to the backend at once (all workers); more get 503
    max_requests: int | None = None


@attrs.frozen
class CertificateKey:
    # the PEM chain and its PEM private key (ssl_certificate_by_lua parses them)
    cert: str = attrs.field(repr=False)
    key: str = attrs.field(repr=False)


@attrs.frozen
class StreamBackend:
    """One weighted backend of a stream (TLS passthrough, TCP, UDP)."""

    # relative share of the connections; 0 takes none
    weight: int
    # "address:port" ("[address]:port" for IPv6) of each ready endpoint; none:
    # this share of connections is closed at once
    endpoints: tuple[str, ...] = ()


@attrs.frozen
class Stream:
    """Where the connections of one stream go."""

    backends: tuple[StreamBackend, ...]
    # TLS mode Terminate: the number of the server on the port that terminates it
    # (static.py's `tls-<port>-<n>` socket), which then forwards plain TCP;
    # None: the connection is forwarded as it came (TLS passthrough, TCP, UDP)
    terminate: int | None = None


@attrs.frozen
class RouterState:
    # bound port (a string: JSON keys are) -> its listeners, most specific
    # hostname first (certs.lua falls back to the first with a certificate)
    frontends: Mapping[str, tuple[Frontend, ...]]
    # listener name -> its hosts
    hosts: Mapping[str, tuple[Host, ...]]
    # rule id ("<route kind>/<namespace>/<name>#<rule>.<match>") -> the rule
    rules: Mapping[str, Rule]
    # backend id -> the backend; one Service port has one id per protocol
    backends: Mapping[str, Target]
    # listener certificates, referenced by Frontend.certs
    certs: tuple[CertificateKey, ...] = ()
    # PEM bundles of client CAs (frontend mTLS)
    cas: tuple[str, ...] = ()
    # stream_key() -> the stream's backends. Not for the Lua router: NGINX's stream
    # servers read them (njs/streams.js), each from its own file (streams.py)
    streams: Mapping[str, Stream] = attrs.field(factory=dict)


# the prefix of the parts that are streams (written as files, never sent to the router)
STREAM_PART = "s:"


def stream_port(port: int, protocol: str) -> str:
    """The streams of one bound port and transport: `<tcp|udp>-<port>` (their
    files' directory; the stream server names it in `$agc_stream`)."""
    return f"{'udp' if protocol == 'UDP' else 'tcp'}-{port}"


def stream_key(port: int, protocol: str, hostname: str) -> str:
    """A stream's key: `<stream_port>/<SNI hostname, or * for all>`; the file the
    stream servers read it from (streams.py) is named after it."""
    return f"{stream_port(port, protocol)}/{hostname}"


def parts(document: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document of a RouterState as the parts the router stores one by one
    (lua/agc/config.lua, "Parts"): an update sends only the parts that changed."""
    out: dict[str, Any] = {
        "meta": {k: document[k] for k in ("frontends", "certs", "cas") if k in document}
    }
    for key, target in document.get("backends", {}).items():
        out[f"b:{key}"] = target
    for key, rule in document.get("rules", {}).items():
        out[f"r:{key}"] = rule
    for listener, hosts in document.get("hosts", {}).items():
        for host in hosts:
            out[f"h:{listener}:{host.get('hostname', '')}"] = host
    for key, backends in document.get("streams", {}).items():
        out[STREAM_PART + key] = backends
    return out


def to_json(value: Any) -> Any:
    """`value` as JSON data under the invariants of this module's docstring."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is tuple:
        return [to_json(v) for v in value]
    keys = _keys(kind)
    if keys is None:
        return {str(k): to_json(v) for k, v in value.items() if not _absent(v)}
    # the hot path (thousands of rules): a loop, not a generator of pairs
    out = {}
    for key in keys:
        v = getattr(value, key)
        if not _absent(v):
            out[key] = to_json(v)
    return out


_SCALARS = frozenset({str, int, float, bool})


# state class -> its JSON keys (its field names), filled on first use
_KEYS: dict[type, tuple[str, ...]] = {}


def _keys(kind: type) -> tuple[str, ...] | None:
    """The JSON keys of a state class; None for a mapping."""
    keys = _KEYS.get(kind)
    if keys is None and attrs.has(kind):
        keys = _KEYS[kind] = tuple(f.name for f in attrs.fields(kind))
    return keys


def _absent(value: Any) -> bool:
    # `is False`, not `== False`: 0 is a value (an index, a weight)
    return value is None or value is False or value in ((), {})
