"""Backend HTTP settings (+ trusted root certificates): how to talk to one backend.

Settings are per (backend, what the rule asks of it): port, protocol (Https
when a BackendTLSPolicy applies), request timeout, cookie affinity, host name
(URLRewrite hostname, or the policy's SNI: on v2 the host name is also the SNI
and the name the backend certificate must match), connection draining (a
BackendLoadBalancingPolicy's, else on for 30 s). Equal settings are shared;
the name carries a digest of the content, so a change is a new child.
"""

from __future__ import annotations

import json

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import Collector, Json
from agc_controller.providers.azure.pfx import der_certificates
from agc_controller.providers.azure.probes import add_probe
from agc_controller.translate.model import Backend, ConnectionDraining, Rule

# ARM's bounds for requestTimeout, in seconds; "disabled" (0) becomes the maximum
MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 86400
DEFAULT_TIMEOUT_S = 30
DRAIN_TIMEOUT_S = 30
# ARM requires drainTimeoutInSec (1 to 3600) even with draining off; Azure's CLI
# writes 1 then, as here
DRAIN_OFF_TIMEOUT_S = 1
EMPTY = "empty"


def request_timeout_s(rule: Rule) -> int:
    set_ms = [t for t in (rule.request_timeout_ms, rule.backend_timeout_ms) if t is not None]
    if not set_ms:
        return DEFAULT_TIMEOUT_S
    enabled = [t for t in set_ms if t > 0]
    if not enabled:
        return MAX_TIMEOUT_S
    # Application Gateway has one timeout: the stricter of the two bounds the request
    return max(MIN_TIMEOUT_S, min(MAX_TIMEOUT_S, -(-min(enabled) // 1000)))


def connection_draining(draining: ConnectionDraining | None) -> Json:
    """ARM's connectionDraining for a BackendLoadBalancingPolicy's (None: no policy
    sets it; ours has always been on for 30 s, so an unset one changes nothing).
    The policy's timeout is whole seconds from 1 to 3600 (graph/loadbalancing.py
    and AZURE_CAPABILITIES refuse others; rounding up would wait longer, not less)."""
    if draining is None:
        return {"enabled": True, "drainTimeoutInSec": DRAIN_TIMEOUT_S}
    if not draining.enabled or draining.timeout_ms is None:
        return {"enabled": False, "drainTimeoutInSec": DRAIN_OFF_TIMEOUT_S}
    return {"enabled": True, "drainTimeoutInSec": -(-draining.timeout_ms // 1000)}


def add_settings(c: Collector, rule: Rule, backend: Backend) -> Json:
    tls = backend.tls
    props: Json = {
        "port": endpoints[0].port if (endpoints := c.endpoints.get(backend.name)) else 80,
        "protocol": "Https" if tls else "Http",
        "cookieBasedAffinity": "Disabled",
        "requestTimeout": request_timeout_s(rule),
        "pickHostNameFromBackendAddress": False,
        "connectionDraining": connection_draining(
            lb.draining if (lb := c.load_balancing.get(backend.name)) else None
        ),
    }
    host_name = tls.sni if tls else (rule.rewrite.hostname if rule.rewrite else None)
    if host_name:
        props["hostName"] = host_name
    persistence = rule.session_persistence
    if persistence is not None and persistence.type == "Cookie":
        props["cookieBasedAffinity"] = "Enabled"
        props["affinityCookieName"] = persistence.name
    if tls is not None and (tls.ca_pem or tls.gateway_roots):
        props["trustedRootCertificates"] = [
            *(c.external_ref("trustedRootCertificates", name) for name in tls.gateway_roots),
            *(
                c.add(
                    "trustedRootCertificates",
                    naming.child_name(c.gateway, "root", naming.digest(der, 16)),
                    {"data": der},
                )
                for der in (der_certificates(tls.ca_pem) if tls.ca_pem else ())
            ),
        ]
    props["probe"] = add_probe(
        c,
        readable=backend.name,
        protocol=props["protocol"],
        has_host_name=bool(host_name),
        check=health.probe if (health := c.health_checks.get(backend.name)) else None,
    )
    readable = f"{backend.name}-{naming.digest(json.dumps(props, sort_keys=True))}"
    return c.add(
        "backendHttpSettingsCollection", naming.child_name(c.gateway, "be", readable), props
    )


def add_empty_settings(c: Collector) -> Json:
    """Settings for the empty pool (a path map's default must name some)."""
    return c.add(
        "backendHttpSettingsCollection",
        naming.child_name(c.gateway, "be", EMPTY),
        {
            "port": 80,
            "protocol": "Http",
            "cookieBasedAffinity": "Disabled",
            "requestTimeout": DEFAULT_TIMEOUT_S,
        },
    )
