"""Ingress annotations: which ones we know, what each does here, and their parsed values.

Two families are read: AGIC's (`appgw.ingress.kubernetes.io/`) and
ingress-nginx's (`nginx.ingress.kubernetes.io/`). Every annotation of either
family is accounted for (`ANNOTATIONS`): it is converted into Gateway API terms,
refused, or not supported — and whichever it is, the Ingress hears about it
(an Event): none is ignored in silence. Annotations of other prefixes belong to
other tools and are left alone.

Refusal is for raw configuration (`*-snippet`): strings that would be NGINX
configuration are never accepted, and an Ingress carrying one is not served
(that is how CVE-2025-1974 "IngressNightmare" happened). An annotation that
guards access (credentials, address lists, a firewall) and cannot be honoured
also keeps the Ingress from being served: its paths answer 500 rather than
serve what the annotation was meant to protect. Anything else that cannot be
honoured is reported and the Ingress is served without it.

Parsing is pure and per Ingress: `parse_annotations` returns the values and the
notes (problems) it found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

import attrs

NGINX = "nginx.ingress.kubernetes.io/"
AGIC = "appgw.ingress.kubernetes.io/"
APP_ROOT = NGINX + "app-root"

# how an annotation is handled: converted (into Gateway API terms), refused (the
# Ingress is not served), unsupported (reported; the Ingress is served without it),
# guarding (unsupported, and it guards access: the Ingress is not served)
Handling = Literal["converted", "refused", "unsupported", "guarding"]


@attrs.frozen
class Annotation:
    handling: Handling
    # what it becomes, or why it is not honoured (docs/ingress.md shows it)
    text: str


def _table(prefix: str, entries: Mapping[str, Annotation]) -> dict[str, Annotation]:
    return {prefix + name: value for name, value in entries.items()}


_RAW = Annotation("refused", "raw NGINX configuration is never accepted")

ANNOTATIONS: Mapping[str, Annotation] = {
    **_table(
        NGINX,
        {
            "rewrite-target": Annotation(
                "converted", "URLRewrite ReplaceFullPath (capture groups: not supported)"
            ),
            "use-regex": Annotation(
                "converted", "paths become case-insensitive RegularExpression matches"
            ),
            "app-root": Annotation("converted", "a 302 RequestRedirect of `/` to the path"),
            "ssl-redirect": Annotation(
                "converted", "308 RequestRedirect to https for hosts with TLS"
            ),
            "force-ssl-redirect": Annotation(
                "converted", "308 RequestRedirect to https, with or without TLS"
            ),
            "permanent-redirect": Annotation("converted", "RequestRedirect (301)"),
            "permanent-redirect-code": Annotation("converted", "the redirect's status code"),
            "temporal-redirect": Annotation("converted", "RequestRedirect (302)"),
            "canary": Annotation("converted", "the Ingress is a canary of the one it shadows"),
            "canary-weight": Annotation("converted", "backendRef weights"),
            "canary-weight-total": Annotation("converted", "backendRef weights"),
            "canary-by-header": Annotation(
                "converted", "header matches (`always` / `never`) ahead of the weighted rule"
            ),
            "canary-by-header-value": Annotation("converted", "an Exact header match"),
            "canary-by-header-pattern": Annotation("converted", "a RegularExpression header match"),
            "canary-by-cookie": Annotation(
                "converted", "a RegularExpression match on the Cookie header"
            ),
            "enable-cors": Annotation("converted", "the CORS filter"),
            "cors-allow-origin": Annotation("converted", "CORS allowOrigins"),
            "cors-allow-methods": Annotation("converted", "CORS allowMethods"),
            "cors-allow-headers": Annotation("converted", "CORS allowHeaders"),
            "cors-expose-headers": Annotation("converted", "CORS exposeHeaders"),
            "cors-allow-credentials": Annotation("converted", "CORS allowCredentials"),
            "cors-max-age": Annotation("converted", "CORS maxAge"),
            "proxy-read-timeout": Annotation("converted", "timeouts.backendRequest"),
            "proxy-send-timeout": Annotation(
                "converted", "timeouts.backendRequest (the larger of read and send)"
            ),
            "proxy-connect-timeout": Annotation(
                "unsupported", "Gateway API has no connect timeout; the data plane's applies"
            ),
            "upstream-vhost": Annotation("converted", "URLRewrite hostname"),
            "proxy-body-size": Annotation("unsupported", "not supported yet"),
            "whitelist-source-range": Annotation("guarding", "not supported yet"),
            "denylist-source-range": Annotation("guarding", "not supported yet"),
            "backend-protocol": Annotation("unsupported", "not supported yet"),
            "affinity": Annotation("unsupported", "not supported yet"),
            "session-cookie-name": Annotation("unsupported", "not supported yet"),
            "session-cookie-max-age": Annotation("unsupported", "not supported yet"),
            "session-cookie-path": Annotation("unsupported", "not supported yet"),
            "auth-type": Annotation("guarding", "not supported yet"),
            "auth-secret": Annotation("guarding", "not supported yet"),
            "auth-realm": Annotation("guarding", "not supported yet"),
            "auth-url": Annotation("guarding", "not supported yet"),
            "auth-signin": Annotation("guarding", "not supported yet"),
            "auth-response-headers": Annotation("guarding", "not supported yet"),
            "ssl-passthrough": Annotation("unsupported", "not supported yet"),
            "custom-http-errors": Annotation("unsupported", "not supported yet"),
            "limit-rps": Annotation("unsupported", "not supported yet"),
            "limit-rpm": Annotation("unsupported", "not supported yet"),
            "limit-connections": Annotation("unsupported", "not supported yet"),
            "enable-modsecurity": Annotation("guarding", "not supported yet"),
            "configuration-snippet": _RAW,
            "server-snippet": _RAW,
            "location-snippet": _RAW,
            "auth-snippet": _RAW,
            "stream-snippet": _RAW,
            "modsecurity-snippet": _RAW,
        },
    ),
    **_table(
        AGIC,
        {
            "backend-path-prefix": Annotation("converted", "URLRewrite ReplacePrefixMatch"),
            "backend-hostname": Annotation("converted", "URLRewrite hostname"),
            "ssl-redirect": Annotation("converted", "301 RequestRedirect to https"),
            "request-timeout": Annotation("converted", "timeouts.backendRequest"),
            "backend-protocol": Annotation("unsupported", "not supported yet"),
            "connection-draining": Annotation("unsupported", "not supported yet"),
            "connection-draining-timeout": Annotation("unsupported", "not supported yet"),
            "cookie-based-affinity": Annotation("unsupported", "not supported yet"),
            "cookie-based-affinity-distinct-name": Annotation("unsupported", "not supported yet"),
            "use-private-ip": Annotation("unsupported", "not supported yet"),
            "override-frontend-port": Annotation("unsupported", "not supported yet"),
            "health-probe-hostname": Annotation("unsupported", "not supported yet"),
            "health-probe-port": Annotation("unsupported", "not supported yet"),
            "health-probe-path": Annotation("unsupported", "not supported yet"),
            "health-probe-status-codes": Annotation("unsupported", "not supported yet"),
            "health-probe-interval": Annotation("unsupported", "not supported yet"),
            "health-probe-timeout": Annotation("unsupported", "not supported yet"),
            "health-probe-unhealthy-threshold": Annotation("unsupported", "not supported yet"),
            "appgw-ssl-certificate": Annotation("unsupported", "not supported yet"),
            "appgw-trusted-root-certificate": Annotation("unsupported", "not supported yet"),
            "waf-policy-for-path": Annotation("guarding", "not supported yet"),
            "rewrite-rule-set": Annotation("unsupported", "not supported yet"),
        },
    ),
}


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


class _Invalid(ValueError):
    """An annotation's value cannot be used (the message says why)."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise _Invalid(f"{value!r} is not true or false")
    return lowered == "true"


def _int(value: str, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise _Invalid(f"{value!r} is not a whole number") from None
    if not low <= number <= high:
        raise _Invalid(f"{number} is not between {low} and {high}")
    return number


def _seconds(value: str) -> int:
    return _int(value, 1, 99999)


def _path(value: str) -> str:
    text = value.strip()
    if not text.startswith("/") or any(ch in text for ch in "?# \t\r\n\\"):
        raise _Invalid(f"{value!r} is not an absolute path without a query or fragment")
    return text


def _hostname(value: str) -> str:
    text = value.strip().lower()
    if len(text) > 253 or not _HOSTNAME.match(text):
        raise _Invalid(f"{value!r} is not a hostname")
    return text


def _header_name(value: str) -> str:
    text = value.strip()
    if not _TOKEN.match(text) or len(text) > 256:
        raise _Invalid(f"{value!r} is not a header name")
    return text


def _redirect(value: str, status: int) -> Redirect:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"{value!r} is not an http(s) URL")
    if parts.query or parts.fragment or parts.username is not None:
        raise _Invalid(f"{value!r}: a redirect URL with a query, fragment or user is not supported")
    try:
        port = parts.port
    except ValueError:
        raise _Invalid(f"{value!r} has an invalid port") from None
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
            raise _Invalid(f"cors-allow-origin: {origin!r} is not an origin (scheme://host[:port])")
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
        raise _Invalid("canary-by-header-value and -pattern need canary-by-header")
    return canary


def _cookie_name(value: str) -> str:
    text = value.strip()
    if not _TOKEN.match(text):
        raise _Invalid(f"{value!r} is not a cookie name")
    return text


def parse_annotations(annotations: Mapping[str, str]) -> tuple[Annotations, tuple[Note, ...]]:
    """The values of one Ingress's annotations and what its owner should hear about them."""
    ours = {k: v for k, v in annotations.items() if k.startswith((NGINX, AGIC))}
    notes: list[Note] = []
    refused = False
    for name in sorted(ours):
        known = ANNOTATIONS.get(name)
        if known is None:
            notes.append(
                Note("Warning", "UnsupportedAnnotation", f"{name} is not supported: ignored")
            )
        elif known.handling == "refused":
            refused = True
            notes.append(
                Note(
                    "Warning",
                    "AnnotationRefused",
                    f"{name} is refused ({known.text}): the Ingress is not served",
                )
            )
        elif known.handling == "guarding":
            refused = True
            notes.append(
                Note(
                    "Warning",
                    "UnsupportedAnnotation",
                    f"{name} guards access and is {known.text}: the Ingress is not served "
                    "(its paths answer 500) rather than served unguarded",
                )
            )
        elif known.handling == "unsupported":
            notes.append(Note("Warning", "UnsupportedAnnotation", f"{name}: {known.text}; ignored"))
    parsed = Annotations(refused=refused)
    for reads, step in _STEPS:
        present = [k for k in reads if k in ours]
        if not present:
            continue
        try:
            parsed = step(parsed, ours)
        except _Invalid as e:
            notes.append(
                Note("Warning", "InvalidAnnotation", f"{', '.join(present)}: {e}; ignored")
            )
    return parsed, tuple(notes)


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


def _use_regex(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    return attrs.evolve(parsed, use_regex=_bool(values[NGINX + "use-regex"]))


def _rewrite(parsed: Annotations, values: Mapping[str, str]) -> Annotations:
    target = values.get(NGINX + "rewrite-target")
    prefix = values.get(AGIC + "backend-path-prefix")
    if target is not None:
        if "$" in target:
            raise _Invalid(
                f"rewrite-target {target!r} uses capture groups, which cannot be expressed "
                "in Gateway API (URLRewrite takes a fixed path)"
            )
        parsed = attrs.evolve(parsed, rewrite_target=_path(target))
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
            raise _Invalid(
                f"permanent-redirect-code {status} is not one of 301, 302, 303, 307, 308"
            )
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


# (the annotations a step reads, the step): a step's failure drops what it reads
_STEPS = (
    ((AGIC + "ssl-redirect", NGINX + "ssl-redirect", NGINX + "force-ssl-redirect"), _ssl),
    ((NGINX + "use-regex",), _use_regex),
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
)
