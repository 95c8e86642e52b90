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

from collections.abc import Mapping
from typing import Literal

import attrs

from agc_controller.translate.ingress.values import (
    AGIC,
    NGINX,
    STEPS,
    Annotations,
    Invalid,
    Note,
)

# how an annotation is handled: converted (into Gateway API terms), refused (the
# Ingress is not served), unsupported (reported; the Ingress is served without it),
# guarding (unsupported, and it guards access: the Ingress is not served)
Handling = Literal["converted", "refused", "unsupported", "guarding"]


@attrs.frozen
class Annotation:
    handling: Handling
    # what it becomes, or why it is not honoured (docs/ingress.md shows it)
    text: str
    # it guards access: when its value cannot be used, the Ingress is not served
    guards: bool = False


def _guard(text: str) -> Annotation:
    return Annotation("converted", text, guards=True)


def _table(prefix: str, entries: Mapping[str, Annotation]) -> dict[str, Annotation]:
    return {prefix + name: value for name, value in entries.items()}


_RAW = Annotation("refused", "raw NGINX configuration is never accepted")

ANNOTATIONS: Mapping[str, Annotation] = {
    **_table(
        NGINX,
        {
            "rewrite-target": Annotation(
                "converted",
                "URLRewrite ReplaceFullPath; with capture groups an HTTPRouteFilter (regex)",
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
            "proxy-body-size": Annotation(
                "converted", "an HTTPRouteFilter's requestBody.maxBytes (413 beyond)"
            ),
            "whitelist-source-range": _guard("an AuthPolicy's ipAccess.allow"),
            "denylist-source-range": _guard("an AuthPolicy's ipAccess.deny"),
            "backend-protocol": Annotation(
                "converted", "GRPC: the Service port's appProtocol h2c; HTTPS: a BackendTLSPolicy"
            ),
            "proxy-ssl-verify": Annotation("converted", "`on`: HTTPS backends are verified"),
            "proxy-ssl-secret": Annotation("converted", "the BackendTLSPolicy's CA (ca.crt)"),
            "proxy-ssl-name": Annotation("converted", "the BackendTLSPolicy's hostname"),
            "affinity": Annotation("converted", "`cookie`: the rules' sessionPersistence"),
            "session-cookie-name": Annotation("converted", "sessionPersistence.sessionName"),
            "session-cookie-max-age": Annotation(
                "converted", "sessionPersistence.absoluteTimeout, a permanent cookie"
            ),
            "session-cookie-path": Annotation(
                "unsupported", "Gateway API's session cookie has no path"
            ),
            "auth-type": _guard("`basic`: an AuthPolicy's basic (htpasswd)"),
            "auth-secret": _guard("the AuthPolicy's basic.secretRef (key `auth`)"),
            "auth-secret-type": _guard("`auth-file` only"),
            "auth-realm": _guard("the AuthPolicy's basic.realm"),
            "auth-url": _guard("an AuthPolicy's externalAuth (an in-cluster Service URL)"),
            "auth-signin": Annotation(
                "unsupported", "no sign-in redirect: a refused request gets the check's answer"
            ),
            "auth-response-headers": _guard("the AuthPolicy's externalAuth.headersToBackend"),
            "ssl-passthrough": Annotation(
                "converted", "a TLS listener (Passthrough) and a TLSRoute per host"
            ),
            "custom-http-errors": Annotation(
                "converted", "an HTTPRouteFilter's errorPages (the default-backend answers)"
            ),
            "default-backend": Annotation(
                "converted",
                "the Service answering custom-http-errors (not a fallback for backends "
                "without endpoints)",
            ),
            "limit-rps": Annotation("converted", "a RateLimitPolicy per second, per client"),
            "limit-rpm": Annotation("converted", "a RateLimitPolicy per minute, per client"),
            "limit-burst-multiplier": Annotation("converted", "the RateLimitPolicy's burst"),
            "limit-connections": Annotation(
                "converted", "a RateLimitPolicy's concurrency: requests in flight per client"
            ),
            "enable-modsecurity": Annotation(
                "converted", "a WebApplicationFirewallPolicy in Detection mode (the CRS, logs only)"
            ),
            "enable-owasp-core-rules": Annotation(
                "converted", "the Core Rule Set (always on with enable-modsecurity)"
            ),
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
            "backend-protocol": Annotation(
                "converted", "https: a BackendTLSPolicy (system CAs, backend-hostname)"
            ),
            "connection-draining": Annotation(
                "converted", "a BackendLoadBalancingPolicy's connectionDraining per Service"
            ),
            "connection-draining-timeout": Annotation(
                "converted", "the connectionDraining timeout (seconds)"
            ),
            "cookie-based-affinity": Annotation(
                "converted", "sessionPersistence (cookie ApplicationGatewayAffinity)"
            ),
            "cookie-based-affinity-distinct-name": Annotation(
                "converted", "a cookie name of its own per path"
            ),
            "use-private-ip": Annotation(
                "unsupported",
                "not per Ingress: give the IngressClass azure.agc-controller.io/frontend: private",
            ),
            "override-frontend-port": Annotation(
                "converted", "listeners on that port for the Ingress's hosts, instead of 80/443"
            ),
            "health-probe-hostname": Annotation("converted", "a HealthCheckPolicy's http.host"),
            "health-probe-port": Annotation("converted", "the HealthCheckPolicy's port"),
            "health-probe-path": Annotation("converted", "the HealthCheckPolicy's http.path"),
            "health-probe-status-codes": Annotation(
                "converted", "the HealthCheckPolicy's status ranges"
            ),
            "health-probe-interval": Annotation("converted", "the HealthCheckPolicy's interval"),
            "health-probe-timeout": Annotation("converted", "the HealthCheckPolicy's timeout"),
            "health-probe-unhealthy-threshold": Annotation(
                "converted", "the HealthCheckPolicy's unhealthyThreshold"
            ),
            "appgw-ssl-certificate": Annotation(
                "converted",
                "its hosts' HTTPS listeners serve that certificate of the Application Gateway "
                "(a certificateRef of kind SslCertificate)",
            ),
            "appgw-trusted-root-certificate": Annotation(
                "converted",
                "the BackendTLSPolicy trusts those roots of the Application Gateway "
                "(caCertificateRefs of kind TrustedRootCertificate)",
            ),
            "waf-policy-for-path": _guard(
                "a WebApplicationFirewallPolicy naming the WAF policy by id (azure only)"
            ),
            "rewrite-rule-set": Annotation(
                "converted",
                "its rules apply that rewrite rule set of the Application Gateway (an "
                "ExtensionRef filter of kind RewriteRuleSet)",
            ),
        },
    ),
}


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
    for reads, step in STEPS:
        present = [k for k in reads if k in ours]
        if not present:
            continue
        try:
            parsed = step(parsed, ours)
        except Invalid as e:
            if any(ANNOTATIONS[k].guards for k in present):
                parsed = attrs.evolve(parsed, refused=True)
                notes.append(
                    Note(
                        "Warning",
                        "InvalidAnnotation",
                        f"{', '.join(present)}: {e}; they guard access: the Ingress is not "
                        "served (its paths answer 500)",
                    )
                )
            else:
                notes.append(
                    Note("Warning", "InvalidAnnotation", f"{', '.join(present)}: {e}; ignored")
                )
    return parsed, tuple(notes)


def referenced_objects(
    annotations: Mapping[str, str], namespace: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The Secrets and Services ("namespace/name") the annotations name: the
    controller gathers them with the Ingress."""
    parsed, _ = parse_annotations(annotations)
    secrets, services = [], []
    if parsed.basic is not None:
        secrets.append(f"{parsed.basic.secret_namespace or namespace}/{parsed.basic.secret_name}")
    if parsed.backend_protocol is not None and parsed.backend_protocol.ca_secret:
        secrets.append(in_namespace(parsed.backend_protocol.ca_secret, namespace))
    if parsed.external_auth is not None:
        external = parsed.external_auth
        services.append(f"{external.namespace or namespace}/{external.service}")
    if parsed.error_pages is not None and parsed.error_pages.service is not None:
        services.append(f"{namespace}/{parsed.error_pages.service}")
    return tuple(secrets), tuple(services)


def in_namespace(reference: str, namespace: str) -> str:
    """ "namespace/name" of an annotation's reference ("name" or "namespace/name")."""
    return reference if "/" in reference else f"{namespace}/{reference}"
