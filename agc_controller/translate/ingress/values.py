"""Ingress annotations' values: what they are read into (`Annotations` and its
parts), and how (`STEPS`, one per group of annotations read together; a step
raises `Invalid` for a value it cannot use). Pure. Which annotations exist and
how each is handled is annotations.py's registry, which runs the steps."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

import attrs

from agc_controller.translate.graph import appgw

NGINX = "nginx.ingress.kubernetes.io/"
AGIC = "appgw.ingress.kubernetes.io/"
APP_ROOT = NGINX + "app-root"


def _sentence(text: str) -> str:
    return text if text.endswith(".") else f"{text}."


@attrs.frozen
class Note:
    """Something an Ingress's owner should hear about (an Event on the Ingress)."""

    type: Literal["Normal", "Warning"]
    reason: str  # CamelCase, as Event reasons are
    # one or more sentences, the last ending with a period
    message: str = attrs.field(converter=_sentence)


@attrs.frozen
class Canary:
    # percent of requests (of `total`) sent to the canary; 0 when not weighted
    weight: int = 0
    total: int = 100
    # header name; "always" sends to the canary, "never" to the primary
    header: str | None = None
    # with `header`: this value (Exact) or a match of this pattern sends to the canary
    header_value: str | None = None
    header_pattern: str | None = None
    # cookie name; "always" / "never" as for the header
    cookie: str | None = None


@attrs.frozen
class Redirect:
    """A RequestRedirect taking every request of the Ingress to one URL."""

    scheme: str
    hostname: str
    port: int | None
    path: str
    status: int


@attrs.frozen
class BasicAuth:
    secret_namespace: str  # "": the Ingress's
    secret_name: str
    realm: str


@attrs.frozen
class ExternalAuth:
    service: str
    namespace: str  # "": the Ingress's
    port: int
    path: str
    headers: tuple[str, ...]


@attrs.frozen
class RateLimit:
    requests: int
    unit: Literal["Second", "Minute"]
    burst: int


@attrs.frozen
class ErrorPages:
    """custom-http-errors: which answers, and the Service (its name; None: the
    Ingress's spec.defaultBackend) answering instead (default-backend)."""

    codes: tuple[int, ...]
    service: str | None


@attrs.frozen
class Affinity:
    cookie: str
    # seconds: a permanent cookie that long; None: a session cookie
    max_age: int | None = None
    # each path's cookie gets a name of its own (`<cookie>-<digest of host and path>`)
    distinct: bool = False


@attrs.frozen
class BackendProtocol:
    """How an Ingress's backends are spoken to: h2c (gRPC), or TLS verified against
    the CA in a Secret (None: the system's) for a hostname."""

    h2c: bool = False
    tls: bool = False
    ca_secret: str | None = None  # "namespace/name" or "name"
    hostname: str = ""
    # trusted root certificates already on the Application Gateway, by name (AGIC's
    # appgw-trusted-root-certificate), instead of the system's CAs
    gateway_roots: tuple[str, ...] = ()


@attrs.frozen
class Annotations:
    """The parsed values of one Ingress's annotations (None / False: not set)."""

    # the Ingress is not served (a refused or unhonoured guarding annotation)
    refused: bool = False
    # redirect plain HTTP to https: for hosts with TLS, or (force) always; the code
    ssl_redirect: bool = False
    force_ssl_redirect: bool = False
    ssl_redirect_status: int = 308
    use_regex: bool = False
    rewrite_target: str | None = None
    backend_path_prefix: str | None = None
    app_root: str | None = None
    redirect: Redirect | None = None
    canary: Canary | None = None
    # the CORS filter's spec, as HTTPRoute carries it
    cors: Mapping[str, object] | None = None
    # Gateway API duration of timeouts.backendRequest
    backend_timeout: str | None = None
    upstream_host: str | None = None
    # access: client address lists, a way of signing in, a rate limit, affinity
    ip_allow: tuple[str, ...] = ()
    ip_deny: tuple[str, ...] = ()
    basic: BasicAuth | None = None
    external_auth: ExternalAuth | None = None
    rate_limit: RateLimit | None = None
    # requests in flight per client address (limit-connections)
    concurrency: int | None = None
    affinity: Affinity | None = None
    # TLS to its hosts goes to the backend of "/" as it is (by SNI)
    ssl_passthrough: bool = False
    # how its backends are spoken to, when not plain HTTP/1.1
    backend_protocol: BackendProtocol | None = None
    # the HealthCheckPolicy `default` block of its backends' Services (AGC's fields)
    health_probe: Mapping[str, object] | None = None
    # the largest request body (proxy-body-size); None: no limit
    max_body_bytes: int | None = None
    # the port its hosts are served on instead of 80 / 443 (AGIC's override-frontend-port)
    frontend_port: int | None = None
    # web application firewall: Detection with the CRS, or an Azure WAF policy by id
    waf_detection: bool = False
    waf_policy_id: str | None = None
    # objects already on the Application Gateway, by name (AGIC's appgw-ssl-certificate
    # and rewrite-rule-set): its hosts' certificate, its rules' rewrite rule set
    gateway_certificate: str | None = None
    rewrite_rule_set: str | None = None
    # the BackendLoadBalancingPolicy `connectionDraining` block of its backends'
    # Services (AGIC's connection-draining)
    connection_draining: Mapping[str, object] | None = None
    error_pages: ErrorPages | None = None


# the CORS defaults of ingress-nginx
_CORS_METHODS = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
_CORS_HEADERS = (
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
    "Content-Type,Range,Authorization"
)
_CORS_MAX_AGE = 1728000
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


class Invalid(ValueError):
    """An annotation's value cannot be used (the message says why)."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise Invalid(f"{value!r} is not true or false")
    return lowered == "true"


def _int(value: str, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise Invalid(f"{value!r} is not a whole number") from None
    if not low <= number <= high:
        raise Invalid(f"{number} is not between {low} and {high}")
    return number


def _seconds(value: str) -> int:
    return _int(value, 1, 99999)


def _path(value: str) -> str:
    text = value.strip()
    if not text.startswith("/") or any(ch in text for ch in "?# \t\r\n\\"):
        raise Invalid(f"{value!r} is not an absolute path without a query or fragment")
    return text


def _hostname(value: str) -> str:
    text = value.strip().lower()
    if len(text) > 253 or not _HOSTNAME.match(text):
        raise Invalid(f"{value!r} is not a hostname")
    return text


def _header_name(value: str) -> str:
    text = value.strip()
    if not _TOKEN.match(text) or len(text) > 256:
        raise Invalid(f"{value!r} is not a header name")
    return text


def _redirect(value: str, status: int) -> Redirect:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{value!r} is not an http(s) URL")
    if parts.query or parts.fragment or parts.username is not None:
        raise Invalid(f"{value!r}: a redirect URL with a query, fragment or user is not supported")
    try:
        port = parts.port
    except ValueError:
        raise Invalid(f"{value!r} has an invalid port") from None
    return Redirect(
        scheme=parts.scheme,
        hostname=_hostname(parts.hostname),
        port=port,
        path=_path(parts.path or "/"),
        status=status,
    )


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _cors(values: Mapping[str, str]) -> dict[str, object]:
    origins = _list(values.get(NGINX + "cors-allow-origin", "*"))
    for origin in origins:
        if origin != "*" and not re.match(r"^https?://[^/?#\s]+$", origin):
            raise Invalid(f"cors-allow-origin: {origin!r} is not an origin (scheme://host[:port])")
    methods = [m.upper() for m in _list(values.get(NGINX + "cors-allow-methods", _CORS_METHODS))]
    headers = [
        _header_name(h) for h in _list(values.get(NGINX + "cors-allow-headers", _CORS_HEADERS))
    ]
    expose = [_header_name(h) for h in _list(values.get(NGINX + "cors-expose-headers", ""))]
    credentials = _bool(values.get(NGINX + "cors-allow-credentials", "true"))
    spec: dict[str, object] = {
        "allowOrigins": origins,
        "allowMethods": methods,
        "allowHeaders": headers,
        "maxAge": _int(values.get(NGINX + "cors-max-age", str(_CORS_MAX_AGE)), 0, 2**31 - 1),
    }
    if expose:
        spec["exposeHeaders"] = expose
    if credentials and "*" not in origins:
        # with any origin allowed, a credentialed response would be refused by
        # browsers anyway (and Gateway API forbids the combination)
        spec["allowCredentials"] = True
    return spec


def _canary(values: Mapping[str, str]) -> Canary:
    def get(name: str) -> str | None:
        return values.get(NGINX + name)

    weight = get("canary-weight")
    total = get("canary-weight-total")
    header = get("canary-by-header")
    cookie = get("canary-by-cookie")
    canary = Canary(
        total=_int(total, 1, 1_000_000) if total is not None else 100,
        header=_header_name(header) if header is not None else None,
        header_value=get("canary-by-header-value"),
        header_pattern=get("canary-by-header-pattern"),
        cookie=_cookie_name(cookie) if cookie is not None else None,
    )
    if weight is not None:
        canary = attrs.evolve(canary, weight=_int(weight, 0, canary.total))
    if canary.header is None and (canary.header_value or canary.header_pattern):
        raise Invalid("canary-by-header-value and -pattern need canary-by-header")
    return canary


def _cookie_name(value: str) -> str:
    text = value.strip()
    if not _TOKEN.match(text):
        raise Invalid(f"{value!r} is not a cookie name")
    return text


def _ssl(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    agic = values.get(AGIC + "ssl-redirect")
    nginx = values.get(NGINX + "ssl-redirect")
    force = values.get(NGINX + "force-ssl-redirect")
    if agic is not None and _bool(agic):
        # AGIC redirects with 301 whether or not the host has TLS
        return attrs.evolve(parsed, force_ssl_redirect=True, ssl_redirect_status=301)
    return attrs.evolve(
        parsed,
        ssl_redirect=nginx is not None and _bool(nginx),
        force_ssl_redirect=force is not None and _bool(force),
    )


def _passthrough(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    return attrs.evolve(parsed, ssl_passthrough=_bool(values[NGINX + "ssl-passthrough"]))


def _backend_protocol(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    agic = values.get(AGIC + "backend-protocol")
    roots = values.get(AGIC + "appgw-trusted-root-certificate")
    if roots is not None and (agic is None or agic.strip().lower() != "https"):
        raise Invalid("appgw-trusted-root-certificate needs backend-protocol https")
    if agic is not None:
        if agic.strip().lower() == "http":
            return parsed
        if agic.strip().lower() != "https":
            raise Invalid(f"backend-protocol {agic!r} is not http or https")
        host = values.get(AGIC + "backend-hostname")
        if host is None:
            raise Invalid("backend-protocol https needs backend-hostname: the name verified")
        protocol = BackendProtocol(
            tls=True,
            hostname=_hostname(host),
            gateway_roots=tuple(_child_name(n) for n in _list(roots or "")),
        )
        return attrs.evolve(parsed, backend_protocol=protocol)
    kind = values.get(NGINX + "backend-protocol", "HTTP").strip().upper()
    if kind in ("HTTP", "AUTO_HTTP"):
        return parsed
    if kind == "GRPC":
        return attrs.evolve(parsed, backend_protocol=BackendProtocol(h2c=True))
    if kind != "HTTPS":
        raise Invalid(f"backend-protocol {kind}: only HTTP, HTTPS and GRPC are supported")
    if values.get(NGINX + "proxy-ssl-verify", "off").strip().lower() != "on":
        raise Invalid(
            "backend-protocol HTTPS without proxy-ssl-verify on: backends are always "
            "verified here (Gateway API has no unverified TLS); set proxy-ssl-verify, "
            "proxy-ssl-secret and proxy-ssl-name"
        )
    host = values.get(NGINX + "proxy-ssl-name", values.get(NGINX + "upstream-vhost"))
    if host is None:
        raise Invalid("backend-protocol HTTPS needs proxy-ssl-name: the name verified")
    secret = values.get(NGINX + "proxy-ssl-secret")
    return attrs.evolve(
        parsed,
        backend_protocol=BackendProtocol(
            tls=True, ca_secret=secret.strip() if secret else None, hostname=_hostname(host)
        ),
    )


def _child_name(value: str) -> str:
    if not appgw.is_child_name(value):
        raise Invalid(f"{value!r} is not the name of an Application Gateway object")
    return value


def _gateway_objects(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    certificate = values.get(AGIC + "appgw-ssl-certificate")
    rewrite = values.get(AGIC + "rewrite-rule-set")
    return attrs.evolve(
        parsed,
        gateway_certificate=_child_name(certificate.strip()) if certificate is not None else None,
        rewrite_rule_set=_child_name(rewrite.strip()) if rewrite is not None else None,
    )


def _status_ranges(value: str) -> list[dict[str, int]]:
    ranges = []
    for item in _list(value):
        start, _, end = item.partition("-")
        low = _int(start, 100, 599)
        ranges.append({"start": low, "end": _int(end, low, 599) if end else low})
    if not ranges:
        raise Invalid("no status code given")
    return ranges


def _health_probe(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    def get(name: str) -> str | None:
        return values.get(AGIC + "health-probe-" + name)

    http: dict[str, object] = {}
    if (host := get("hostname")) is not None:
        http["host"] = _hostname(host)
    if (path := get("path")) is not None:
        http["path"] = _path(path)
    if (codes := get("status-codes")) is not None:
        http["match"] = {"statusCodes": _status_ranges(codes)}
    probe: dict[str, object] = {"http": http}
    if (port := get("port")) is not None:
        probe["port"] = _int(port, 1, 65535)
    if (interval := get("interval")) is not None:
        probe["interval"] = f"{_int(interval, 1, 86400)}s"
    if (timeout := get("timeout")) is not None:
        probe["timeout"] = f"{_int(timeout, 1, 86400)}s"
    if (threshold := get("unhealthy-threshold")) is not None:
        probe["unhealthyThreshold"] = _int(threshold, 1, 20)
    return attrs.evolve(parsed, health_probe=probe)


# an Azure resource id of a WAF policy
_WAF_POLICY_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/"
    r"ApplicationGatewayWebApplicationFirewallPolicies/[^/]+$",
    re.IGNORECASE,
)


def _firewall(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    policy_id = values.get(AGIC + "waf-policy-for-path")
    if policy_id is not None:
        if not _WAF_POLICY_ID.match(policy_id.strip()):
            raise Invalid(f"waf-policy-for-path {policy_id!r} is not a WAF policy's resource id")
        parsed = attrs.evolve(parsed, waf_policy_id=policy_id.strip())
    enabled = values.get(NGINX + "enable-modsecurity")
    if enabled is not None and _bool(enabled) and parsed.waf_policy_id is None:
        parsed = attrs.evolve(parsed, waf_detection=True)
    return parsed


# $1 to $9 in rewrite-target: the path's capture groups
_CAPTURE = re.compile(r"\$([1-9])")


def capture_template(target: str) -> str | None:
    """rewrite-target with its $1-$9 as an HTTPRouteFilter substitution's \\1-\\9; None
    when it has none (a fixed path)."""
    if not _CAPTURE.search(target):
        return None
    return _CAPTURE.sub(r"\\\1", target)


_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)\s*$")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _frontend_port(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    port = _int(values[AGIC + "override-frontend-port"], 1, 65535)
    return attrs.evolve(parsed, frontend_port=None if port in (80, 443) else port)


def _body_size(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    value = values[NGINX + "proxy-body-size"]
    found = _SIZE.match(value)
    if not found:
        raise Invalid(f"{value!r} is not a size (bytes, or with k, m or g)")
    size = int(found.group(1)) * _SIZE_UNITS[found.group(2).lower()]
    if size > 2**40:
        raise Invalid(f"{value!r} is over 1 TiB")
    # 0: no limit, as in NGINX's client_max_body_size
    return attrs.evolve(parsed, max_body_bytes=size or None)


def _use_regex(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    return attrs.evolve(parsed, use_regex=_bool(values[NGINX + "use-regex"]))


def _rewrite(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    target = values.get(NGINX + "rewrite-target")
    prefix = values.get(AGIC + "backend-path-prefix")
    if target is not None:
        parsed = attrs.evolve(parsed, rewrite_target=_path(target))
        if _CAPTURE.search(target):
            # as in ingress-nginx, capture groups make the paths regular expressions
            parsed = attrs.evolve(parsed, use_regex=True)
    if prefix is not None:
        parsed = attrs.evolve(parsed, backend_path_prefix=_path(prefix))
    return parsed


def _app_root(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    return attrs.evolve(parsed, app_root=_path(values[NGINX + "app-root"]))


def _redirects(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    permanent = values.get(NGINX + "permanent-redirect")
    if permanent is not None:
        code = values.get(NGINX + "permanent-redirect-code")
        status = _int(code, 300, 308) if code is not None else 301
        if status not in _REDIRECT_CODES:
            raise Invalid(f"permanent-redirect-code {status} is not one of 301, 302, 303, 307, 308")
        return attrs.evolve(parsed, redirect=_redirect(permanent, status))
    temporal = values.get(NGINX + "temporal-redirect")
    if temporal is not None:
        return attrs.evolve(parsed, redirect=_redirect(temporal, 302))
    return parsed


def _canary_step(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    if not _bool(values.get(NGINX + "canary", "false")):
        return parsed
    return attrs.evolve(parsed, canary=_canary(values))


def _cors_step(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    if not _bool(values.get(NGINX + "enable-cors", "false")):
        return parsed
    return attrs.evolve(parsed, cors=_cors(values))


def _timeouts(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    seconds = [
        _seconds(value)
        for name in (
            NGINX + "proxy-read-timeout",
            NGINX + "proxy-send-timeout",
            AGIC + "request-timeout",
        )
        if (value := values.get(name)) is not None
    ]
    return attrs.evolve(parsed, backend_timeout=f"{max(seconds)}s") if seconds else parsed


def _upstream_host(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    value = values.get(NGINX + "upstream-vhost", values.get(AGIC + "backend-hostname"))
    return attrs.evolve(parsed, upstream_host=_hostname(value)) if value is not None else parsed


def _cidrs(value: str) -> tuple[str, ...]:
    found = []
    for item in _list(value):
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise Invalid(f"{item!r} is not an address or CIDR range") from None
    if not found:
        raise Invalid("no address range given")
    return tuple(found)


def _addresses(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    allow = values.get(NGINX + "whitelist-source-range")
    deny = values.get(NGINX + "denylist-source-range")
    return attrs.evolve(
        parsed,
        ip_allow=_cidrs(allow) if allow is not None else (),
        ip_deny=_cidrs(deny) if deny is not None else (),
    )


def _basic(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    kind = values.get(NGINX + "auth-type")
    secret = values.get(NGINX + "auth-secret")
    if kind is None and secret is None:
        return parsed
    if kind != "basic":
        raise Invalid(f"auth-type {kind!r}: only basic is supported")
    if not secret:
        raise Invalid("auth-type basic needs auth-secret")
    if values.get(NGINX + "auth-secret-type", "auth-file") != "auth-file":
        raise Invalid("auth-secret-type: only auth-file (an htpasswd file under key auth)")
    namespace, _, name = secret.strip().rpartition("/")
    realm = values.get(NGINX + "auth-realm", "Authentication Required")
    if not realm or any(ch in realm for ch in '"\\') or not realm.isprintable():
        raise Invalid(f"auth-realm {realm!r} must be printable, without quotes")
    return attrs.evolve(
        parsed, basic=BasicAuth(secret_namespace=namespace, secret_name=name, realm=realm[:128])
    )


# an in-cluster Service's URL: <service>[.<namespace>[.svc[.<cluster domain>]]]
_SERVICE_HOST = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.([a-z0-9]([-a-z0-9]*[a-z0-9])?))?(\.svc(\..+)?)?$"
)


def _external_auth(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    url = values.get(NGINX + "auth-url")
    if url is None:
        return parsed
    if parsed.basic is not None:
        raise Invalid("auth-url and auth-type basic together: one way of signing in only")
    parts = urlsplit(url.strip())
    found = _SERVICE_HOST.match(parts.hostname or "")
    if parts.scheme != "http" or not found:
        raise Invalid(
            f"auth-url {url!r}: only an in-cluster Service over plain HTTP "
            "(http://<service>.<namespace>[.svc…][:port]/path) is supported"
        )
    try:
        port = parts.port or 80
    except ValueError:
        raise Invalid(f"auth-url {url!r} has an invalid port") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    headers = tuple(_header_name(h) for h in _list(values.get(NGINX + "auth-response-headers", "")))
    return attrs.evolve(
        parsed,
        external_auth=ExternalAuth(
            service=found.group(1),
            namespace=found.group(4) or "",
            port=port,
            path=path,
            headers=headers,
        ),
    )


def _rate_limit(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    rps = values.get(NGINX + "limit-rps")
    rpm = values.get(NGINX + "limit-rpm")
    connections = values.get(NGINX + "limit-connections")
    if connections is not None:
        parsed = attrs.evolve(parsed, concurrency=_int(connections, 1, 1_000_000))
    if rps is None and rpm is None:
        return parsed
    multiplier = _int(values.get(NGINX + "limit-burst-multiplier", "5"), 1, 1000)
    unit: Literal["Second", "Minute"] = "Second" if rps is not None else "Minute"
    requests = _int(rps if rps is not None else rpm or "", 1, 1_000_000)
    limit = RateLimit(requests=requests, unit=unit, burst=min(requests * multiplier, 1_000_000))
    return attrs.evolve(parsed, rate_limit=limit)


def _draining(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    enabled = values.get(AGIC + "connection-draining")
    if enabled is None:
        raise Invalid('connection-draining-timeout needs connection-draining: "true"')
    if not _bool(enabled):
        return attrs.evolve(parsed, connection_draining={"enabled": False})
    timeout = _int(values.get(AGIC + "connection-draining-timeout", "30"), 1, 3600)
    return attrs.evolve(parsed, connection_draining={"enabled": True, "timeout": f"{timeout}s"})


def _error_pages(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    codes = values.get(NGINX + "custom-http-errors")
    service = values.get(NGINX + "default-backend")
    if codes is None:
        raise Invalid(
            "default-backend answers custom-http-errors only (a backend without endpoints "
            "answers 503): set custom-http-errors"
        )
    numbers = tuple(sorted({_int(code, 400, 599) for code in _list(codes)}))
    if not numbers:
        raise Invalid("custom-http-errors names no status code")
    if service is not None and not _HOSTNAME.match(service.strip()):
        raise Invalid(f"default-backend {service!r} is not a Service name (in the namespace)")
    return attrs.evolve(
        parsed,
        error_pages=ErrorPages(numbers, service.strip() if service is not None else None),
    )


def _affinity(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    agic = values.get(AGIC + "cookie-based-affinity")
    if agic is not None:
        if not _bool(agic):
            return parsed
        distinct = values.get(AGIC + "cookie-based-affinity-distinct-name", "false")
        return attrs.evolve(
            parsed,
            affinity=Affinity(cookie="ApplicationGatewayAffinity", distinct=_bool(distinct)),
        )
    kind = values.get(NGINX + "affinity")
    if kind is None:
        return parsed
    if kind != "cookie":
        raise Invalid(f"affinity {kind!r}: only cookie is supported")
    max_age = values.get(NGINX + "session-cookie-max-age")
    return attrs.evolve(
        parsed,
        affinity=Affinity(
            cookie=_cookie_name(values.get(NGINX + "session-cookie-name", "INGRESSCOOKIE")),
            max_age=_int(max_age, 1, 99999 * 3600) if max_age is not None else None,
        ),
    )


# (the annotations a step reads, the step), in order: a step's failure drops what
# it reads
STEPS = (
    ((AGIC + "ssl-redirect", NGINX + "ssl-redirect", NGINX + "force-ssl-redirect"), _ssl),
    ((NGINX + "use-regex",), _use_regex),
    ((NGINX + "ssl-passthrough",), _passthrough),
    ((NGINX + "proxy-body-size",), _body_size),
    ((AGIC + "override-frontend-port",), _frontend_port),
    (
        tuple(
            AGIC + "health-probe-" + name
            for name in (
                "hostname",
                "port",
                "path",
                "status-codes",
                "interval",
                "timeout",
                "unhealthy-threshold",
            )
        ),
        _health_probe,
    ),
    (
        (
            AGIC + "waf-policy-for-path",
            NGINX + "enable-modsecurity",
            NGINX + "enable-owasp-core-rules",
        ),
        _firewall,
    ),
    (
        (
            NGINX + "backend-protocol",
            NGINX + "proxy-ssl-verify",
            NGINX + "proxy-ssl-secret",
            NGINX + "proxy-ssl-name",
            AGIC + "backend-protocol",
            AGIC + "appgw-trusted-root-certificate",
        ),
        _backend_protocol,
    ),
    ((AGIC + "appgw-ssl-certificate", AGIC + "rewrite-rule-set"), _gateway_objects),
    ((NGINX + "rewrite-target", AGIC + "backend-path-prefix"), _rewrite),
    ((NGINX + "app-root",), _app_root),
    ((NGINX + "permanent-redirect", NGINX + "temporal-redirect"), _redirects),
    ((NGINX + "canary",), _canary_step),
    ((NGINX + "enable-cors",), _cors_step),
    (
        (NGINX + "proxy-read-timeout", NGINX + "proxy-send-timeout", AGIC + "request-timeout"),
        _timeouts,
    ),
    ((NGINX + "upstream-vhost", AGIC + "backend-hostname"), _upstream_host),
    ((NGINX + "whitelist-source-range", NGINX + "denylist-source-range"), _addresses),
    (
        (
            NGINX + "auth-type",
            NGINX + "auth-secret",
            NGINX + "auth-secret-type",
            NGINX + "auth-realm",
        ),
        _basic,
    ),
    ((NGINX + "auth-url", NGINX + "auth-response-headers"), _external_auth),
    (
        (
            NGINX + "limit-rps",
            NGINX + "limit-rpm",
            NGINX + "limit-burst-multiplier",
            NGINX + "limit-connections",
        ),
        _rate_limit,
    ),
    ((AGIC + "connection-draining", AGIC + "connection-draining-timeout"), _draining),
    ((NGINX + "custom-http-errors", NGINX + "default-backend"), _error_pages),
    (
        (
            NGINX + "affinity",
            NGINX + "session-cookie-name",
            NGINX + "session-cookie-max-age",
            AGIC + "cookie-based-affinity",
            AGIC + "cookie-based-affinity-distinct-name",
        ),
        _affinity,
    ),
)
