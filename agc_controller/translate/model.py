"""The ALB model: what one Gateway should look like on a load balancer.

Produced by translation, consumed by providers (local NGINX, Azure Application
Gateway). Everything is frozen and sorted deterministically, so two
translations of the same input compare equal and a provider can skip no-op
applies by equality.

Shape: a `LoadBalancer` has `frontends` (one per programmable listener: port,
protocol, hostname, TLS material), `hosts` (per port and hostname, the
routing rules in Gateway API precedence order — the data plane walks them in
order and takes the first match) and `streams` (where TLS passthrough, TCP and
UDP listeners send connections: per port, and per SNI hostname on TLS ports).
Request-time listener selection (isolation) is already resolved: a host's rules
come only from the most specific listener that matches that hostname on that port.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs

from agc_controller.core.keys import ObjectKey

PathType = Literal["Exact", "PathPrefix", "RegularExpression"]
MatchType = Literal["Exact", "RegularExpression"]
Protocol = Literal["HTTP", "HTTPS", "TLS", "TCP", "UDP"]
# listener protocols whose connections the data plane forwards whole (no HTTP)
StreamProtocol = Literal["TLS", "TCP", "UDP"]
# how the data plane talks to a backend: plain HTTP/1.1, cleartext HTTP/2 (gRPC,
# appProtocol kubernetes.io/h2c), or HTTP/1.1 with WebSocket upgrades
BackendProtocol = Literal["http", "h2c", "ws"]


@attrs.frozen
class Certificate:
    """A certificate chain and its key, from a `kubernetes.io/tls` Secret."""

    secret: ObjectKey
    cert_pem: str = attrs.field(repr=False)
    key_pem: str = attrs.field(repr=False)


@attrs.frozen
class ClientValidation:
    """Frontend mTLS: client certificates must chain to `ca_pem`."""

    ca_pem: str = attrs.field(repr=False)
    # AllowInsecureFallback: accept connections without a valid client certificate
    insecure_fallback: bool = False


@attrs.frozen
class Frontend:
    """One listener the data plane must serve."""

    name: str  # the listener name, unique within the Gateway
    port: int
    protocol: Protocol
    hostname: str | None
    # HTTPS, and TLS in mode Terminate (a TLS listener without them passes TLS through)
    certificates: tuple[Certificate, ...] = ()
    # certificates already on the Application Gateway, by name (azure only)
    gateway_certificates: tuple[str, ...] = ()
    # the Azure Key Vault secret of its certificate (azure only)
    key_vault_certificate: str | None = None
    client_validation: ClientValidation | None = None


@attrs.frozen
class Endpoint:
    address: str
    port: int
    # mesh backends: the service account ("ns/name") of the sidecar pod behind the
    # endpoint, the identity it must prove; None: not in the mesh, or no such pod known
    service_account: str | None = None


@attrs.frozen
class SubjectAltName:
    type: Literal["Hostname", "URI"]
    value: str


@attrs.frozen
class BackendTLS:
    """TLS from the data plane to a backend (BackendTLSPolicy)."""

    sni: str
    # PEM bundle to verify the backend with; None (and no gateway_roots) = the
    # system trust store
    ca_pem: str | None = attrs.field(repr=False)
    subject_alt_names: tuple[SubjectAltName, ...] = ()
    # trusted root certificates already on the Application Gateway, by name (azure only)
    gateway_roots: tuple[str, ...] = ()
    # the Gateway's client certificate for backend mTLS (spec.tls.backend)
    client_certificate: Certificate | None = None


@attrs.frozen
class HeaderModifier:
    # (name, value) pairs; names as the user wrote them, matched case-insensitively
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@attrs.frozen
class Backend:
    """One weighted backendRef. `valid=False` means its share of traffic gets HTTP 500."""

    name: str  # "namespace/service:port", unique within a rule; its key in LoadBalancer.endpoints
    weight: int
    valid: bool
    protocol: BackendProtocol = "http"
    tls: BackendTLS | None = None
    # over the Istio mesh's mTLS, with the gateway's workload identity (docs/mesh.md)
    mesh: bool = False
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None


@attrs.frozen
class PathMatch:
    type: PathType
    value: str


@attrs.frozen
class ValueMatch:
    """A header or query-parameter match."""

    type: MatchType
    name: str
    value: str


@attrs.frozen
class Match:
    path: PathMatch
    method: str | None = None
    headers: tuple[ValueMatch, ...] = ()
    query_params: tuple[ValueMatch, ...] = ()


@attrs.frozen
class Redirect:
    status_code: int
    scheme: str | None = None
    hostname: str | None = None
    # None: keep the request's (see Gateway API port rules, applied by the data plane)
    port: int | None = None
    path_type: Literal["ReplaceFullPath", "ReplacePrefixMatch"] | None = None
    path_value: str | None = None


@attrs.frozen
class UrlRewrite:
    hostname: str | None = None
    path_type: Literal["ReplaceFullPath", "ReplacePrefixMatch", "ReplaceRegexMatch"] | None = None
    # the new path, prefix, or (ReplaceRegexMatch) substitution, \1-\9 for the groups
    path_value: str | None = None
    # ReplaceRegexMatch: the PCRE whose first match in the path is replaced
    path_pattern: str | None = None


@attrs.frozen
class Mirror:
    backend: Backend
    # share of requests mirrored, in percent (0..100, fractional allowed)
    percent: float = 100.0


@attrs.frozen
class ErrorPages:
    """Backend answers with one of `codes` are replaced by what `backend` answers
    (our HTTPRouteFilter's errorPages; ingress-nginx's custom-http-errors)."""

    codes: tuple[int, ...]
    backend: Backend


@attrs.frozen
class Cors:
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age: int = 5


@attrs.frozen
class Retry:
    codes: tuple[int, ...] = ()
    attempts: int = 1
    backoff_ms: int | None = None


@attrs.frozen
class SessionPersistence:
    type: Literal["Cookie", "Header"]
    name: str
    absolute_timeout_s: int | None = None
    idle_timeout_s: int | None = None


@attrs.frozen
class HealthCheck:
    """Active health probes of a backend's endpoints (a HealthCheckPolicy): an
    endpoint leaves the rotation after `unhealthy_threshold` failed probes in a
    row and comes back after `healthy_threshold` passed ones."""

    interval_ms: int
    timeout_ms: int
    healthy_threshold: int
    unhealthy_threshold: int
    # HTTP/HTTPS: a GET of `path` with Host `host`, passed by a status in
    # `status_codes`; TCP: a connection that opens; GRPC: grpc.health.v1
    protocol: Literal["HTTP", "HTTPS", "TCP", "GRPC"]
    # None: each endpoint's own port
    port: int | None = None
    # HTTP and HTTPS only
    host: str | None = None
    path: str | None = None
    # inclusive ranges
    status_codes: tuple[tuple[int, int], ...] = ()
    # GRPC only: the service grpc.health.v1 asks about ("": the server as a whole)
    grpc_service: str | None = None


@attrs.frozen
class PassiveHealthCheck:
    """Passive ejection: an endpoint whose answers fail `consecutive_failures` times in
    a row (5xx, or no answer) leaves the rotation for `ejection_ms`."""

    consecutive_failures: int
    ejection_ms: int


@attrs.frozen
class BackendHealth:
    """A HealthCheckPolicy in force on a backend: active probes, passive ejection, or both."""

    probe: HealthCheck | None = None
    passive: PassiveHealthCheck | None = None


@attrs.frozen
class ConnectionDraining:
    """What becomes of an endpoint that leaves a backend (removed from its
    EndpointSlices, or no longer ready): with `enabled`, it gets no new requests
    and those in flight to it may finish for up to `timeout_ms`; without, the
    provider need not wait for them. What each provider does: docs/policies.md."""

    enabled: bool = True
    # how long requests in flight may finish; None when not enabled
    timeout_ms: int | None = 30_000


@attrs.frozen
class LoadBalancing:
    """How requests spread over a backend's endpoints, how many may be in flight
    to it at once, and what becomes of an endpoint leaving it (a
    BackendLoadBalancingPolicy)."""

    strategy: Literal["RoundRobin", "LeastRequest", "Random", "ConsistentHash"] = "RoundRobin"
    # ConsistentHash: what a request's endpoint follows (the header or cookie by `hash_name`)
    hash_on: Literal["SourceIP", "Header", "Cookie"] | None = None
    hash_name: str | None = None
    # a new endpoint's share grows from ~0 to full over this time (RoundRobin, LeastRequest)
    slow_start_ms: int | None = None
    # circuit breaker: requests in flight to the backend at once; more get 503 at once
    max_requests: int | None = None
    # spec.connectionDraining; None: not set (the provider's own default)
    draining: ConnectionDraining | None = None


@attrs.frozen
class RateLimit:
    """A RateLimitPolicy in force on a rule: each key may send `requests` per
    `period_s`, and up to `burst` at once after a pause (a token bucket), and may
    have `concurrency` requests in flight at once. A policy sets the rate, the
    concurrency or both; both apply."""

    # the counters' name: the policy and the target it governs through, so that
    # every rule a Gateway-wide policy covers shares one budget, and a route
    # change never resets what was counted
    bucket: str
    # the rate (spec.limit): all three set, or (a concurrency limit alone) none
    requests: int | None = None
    period_s: int | None = None
    burst: int | None = None
    # whose requests share a budget: the client's address, one header's value, or one
    # claim of the request's verified JWT
    key: Literal["ClientIP", "Header", "Claim"] = "ClientIP"
    header: str | None = None
    claim: str | None = None
    # requests each key may have in flight at once (spec.concurrency.requests); one
    # more is answered 429 at once. None: no such limit
    concurrency: int | None = None


@attrs.frozen
class IpAccess:
    """Which client addresses may send requests (CIDRs, normalised)."""

    # checked first: a match is refused
    deny: tuple[str, ...] = ()
    # when set, only a match is let through
    allow: tuple[str, ...] = ()
    # peers whose X-Forwarded-For names the client (the rightmost entry not theirs)
    trusted_proxies: tuple[str, ...] = ()


@attrs.frozen
class ApiKeys:
    """Requests must carry one of the keys, in a header or a query parameter."""

    # (SHA-256 of a key, hex; the name of the client it belongs to), sorted
    keys: tuple[tuple[str, str], ...] = attrs.field(repr=False)
    header: str | None = None
    query: str | None = None
    # the request header the client's name goes to the backend in, if any
    client_header: str | None = None


@attrs.frozen
class BasicAuth:
    """HTTP basic authentication against htpasswd entries (crypt(3) hashes)."""

    # (user, hash), sorted
    users: tuple[tuple[str, str], ...] = attrs.field(repr=False)
    realm: str = "Restricted"


@attrs.frozen
class ExternalAuth:
    """External authorization: each request is first asked of an HTTP Service."""

    # the authorization Service's port, plain HTTP (a key of LoadBalancer.endpoints)
    backend: Backend
    # where its endpoints come from
    service: ObjectKey
    port_name: str | None
    # the path (and query) the check GETs, with the request's headers
    path: str
    # headers of a 2xx answer copied onto the request
    headers_to_backend: tuple[str, ...] = ()
    timeout_ms: int = 2000


@attrs.frozen
class JwtKey:
    """A public key tokens may be signed with (from a JWKS)."""

    kid: str | None
    # RS256, RS384, RS512, ES256, ES384 or EdDSA
    alg: str
    pem: str = attrs.field(repr=False)


@attrs.frozen
class JwtProvider:
    """Tokens of one issuer: who may have signed them, and for whom."""

    issuer: str
    # the token's aud must hold one of them; empty: not checked
    audiences: tuple[str, ...]
    keys: tuple[JwtKey, ...]
    # (claim, request header) pairs copied onto a request with a valid token
    claims_to_headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Auth:
    """An AuthPolicy in force on a rule: addresses, then credentials."""

    # the policy and the target it governs through (as a RateLimit's bucket)
    source: str
    # an invalid policy fails closed: every request is refused (500)
    refuse: bool = False
    ip: IpAccess | None = None
    api_keys: ApiKeys | None = None
    basic: BasicAuth | None = None
    external: ExternalAuth | None = None
    # bearer tokens: a valid token of one of these issuers
    jwt: tuple[JwtProvider, ...] = ()


@attrs.frozen
class WafCondition:
    """One match condition of a WAF custom rule: any of `variables` (name, selector)
    compared with any of `values` by `operator`, after `transforms`."""

    # RemoteAddr, RequestMethod, QueryString, PostArgs, RequestUri, RequestHeaders,
    # RequestBody or RequestCookies, each with a selector (a header's name) or None
    variables: tuple[tuple[str, str | None], ...]
    # Any, IPMatch, Equal, Contains, BeginsWith, EndsWith, Regex, LessThan,
    # LessThanOrEqual, GreaterThan or GreaterThanOrEqual
    operator: str
    values: tuple[str, ...] = ()
    negate: bool = False
    # Lowercase, Uppercase, Trim, UrlDecode, UrlEncode, RemoveNulls, HtmlEntityDecode
    transforms: tuple[str, ...] = ()


@attrs.frozen
class WafCustomRule:
    """A custom rule: when every condition holds, `action` (Block, Allow or Log)."""

    name: str
    priority: int
    action: Literal["Block", "Allow", "Log"]
    conditions: tuple[WafCondition, ...]


@attrs.frozen
class WafExclusion:
    """Request parts the managed rules (`rule_ids`; empty: all of them) do not inspect:
    the argument, header or cookie named `selector` (None: every one)."""

    variable: Literal["RequestArgNames", "RequestHeaderNames", "RequestCookieNames"]
    selector: str | None
    rule_ids: tuple[str, ...] = ()


@attrs.frozen
class WafRuleSet:
    """What a WebApplicationFirewallPolicy makes the firewall load: a data plane
    loads each rule set once, so a change to one may reload it; attaching the
    same policy elsewhere does not."""

    # "namespace/name" of the policy
    policy: str
    detection: bool = False
    # the OWASP Core Rule Set's paranoia level (1-4) and inbound anomaly threshold
    paranoia_level: int = 1
    anomaly_threshold: int = 5
    disabled_rules: tuple[str, ...] = ()
    exclusions: tuple[WafExclusion, ...] = ()
    # in priority order
    custom_rules: tuple[WafCustomRule, ...] = ()


@attrs.frozen
class Waf:
    """A WebApplicationFirewallPolicy in force on a rule."""

    # the policy and the target it governs through (as an Auth's source)
    source: str
    # the rules described in the policy; None when it names a WAF policy of
    # Application Gateway's (`firewall_policy_id`) instead
    rules: WafRuleSet | None
    firewall_policy_id: str | None = None
    # what a blocked request gets
    block_status: int = 403
    block_body: str = ""
    block_content_type: str = "text/plain; charset=utf-8"


@attrs.frozen
class Rule:
    """One (route rule, match) pair, in precedence order within its host."""

    route: ObjectKey
    rule_index: int
    match_index: int
    rule_name: str | None
    match: Match
    backends: tuple[Backend, ...] = ()
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    redirect: Redirect | None = None
    rewrite: UrlRewrite | None = None
    mirrors: tuple[Mirror, ...] = ()
    cors: Cors | None = None
    # milliseconds; None = the data plane's default, 0 = disabled
    request_timeout_ms: int | None = None
    backend_timeout_ms: int | None = None
    # bytes a request body may have (our HTTPRouteFilter): more is answered 413
    max_body_bytes: int | None = None
    # a rewrite rule set already on the Application Gateway, by name (azure only)
    rewrite_rule_set: str | None = None
    error_pages: ErrorPages | None = None
    retry: Retry | None = None
    session_persistence: SessionPersistence | None = None
    rate_limit: RateLimit | None = None
    auth: Auth | None = None
    # HTTPRoute rules only: gRPC streams are not inspected
    waf: Waf | None = None
    # gRPC semantics for errors (no route: Unimplemented)
    grpc: bool = False


@attrs.frozen
class Host:
    """The routing table for one hostname on one port.

    It is complete for requests to that hostname: it also holds the rules of the
    listener's routes whose (wildcard or absent) hostname covers it, after the
    more specific routes' rules. No two hosts share (port, hostname).
    """

    port: int
    hostname: str  # exact, "*.suffix" or "*"
    listener: str  # the listener whose routes these are
    rules: tuple[Rule, ...]


@attrs.frozen
class Stream:
    """Where the connections of one TLS passthrough, TCP or UDP listener go.

    TLS: one per SNI hostname the listener's routes serve (exact, `*.suffix` or
    `*`); the data plane takes the most specific one that matches the client's
    SNI. TCP and UDP: one per listener, hostname `*`. No two streams share
    (port, protocol, hostname).
    """

    port: int
    protocol: StreamProtocol
    hostname: str
    listener: str
    # the route whose backends take the connections (the oldest when several compete)
    route: ObjectKey
    # weighted; an invalid one's share of connections is closed at once
    backends: tuple[Backend, ...]


@attrs.frozen
class RequestedAddress:
    type: str  # IPAddress or Hostname
    value: str  # may be "" (GatewayAddressEmpty: assign one)


@attrs.frozen
class LoadBalancer:
    gateway: ObjectKey
    gateway_class: str
    generation: int
    addresses: tuple[RequestedAddress, ...]
    frontends: tuple[Frontend, ...]
    hosts: tuple[Host, ...]
    # sorted by (port, protocol, hostname specificity, hostname)
    streams: tuple[Stream, ...] = ()
    # backend name -> its ready endpoints, for every valid backend a rule uses. Kept
    # apart from the rules so that an endpoint change (the most frequent change of
    # all) touches one entry here, not every rule sending to the Service.
    endpoints: Mapping[str, tuple[Endpoint, ...]] = attrs.field(factory=dict)
    # backend name -> how its endpoints' health is told (HealthCheckPolicy), if it is
    health_checks: Mapping[str, BackendHealth] = attrs.field(factory=dict)
    # backend name -> its BackendLoadBalancingPolicy's settings, if one governs it
    load_balancing: Mapping[str, LoadBalancing] = attrs.field(factory=dict)
    # the rule sets of every valid WebApplicationFirewallPolicy reaching the Gateway,
    # by policy: the firewall keeps them loaded while their policies reach it, so
    # moving a policy between its targets changes no rule set
    waf_rule_sets: tuple[WafRuleSet, ...] = ()
    # infrastructure labels/annotations to propagate to generated resources
    infrastructure_labels: tuple[tuple[str, str], ...] = ()
    infrastructure_annotations: tuple[tuple[str, str], ...] = ()
    # the GatewayClass's metadata.annotations overlaid by the Gateway's, sorted:
    # provider settings per class or Gateway (e.g. which Application Gateway)
    annotations: tuple[tuple[str, str], ...] = ()
