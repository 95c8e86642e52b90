"""Small ALB models for provider tests that need no kube-apiserver."""

from __future__ import annotations

from agc_controller.core.keys import ObjectKey
from agc_controller.translate.model import (
    Backend,
    Endpoint,
    Frontend,
    Host,
    LoadBalancer,
    Match,
    PathMatch,
    Rule,
)


def model(
    name: str = "gw",
    *,
    paths: tuple[str, ...] = ("/app",),
    hostname: str = "www.example.com",
    port: int = 80,
    addresses: tuple[str, ...] = ("10.2.0.1",),
    annotations: tuple[tuple[str, str], ...] = (),
) -> LoadBalancer:
    route = ObjectKey("HTTPRoute", "default", f"{name}-web")
    backend = Backend(name="default/web:80", weight=1, valid=True)
    return LoadBalancer(
        gateway=ObjectKey("Gateway", "default", name),
        gateway_class="agc",
        generation=1,
        addresses=(),
        frontends=(Frontend(name="http", port=port, protocol="HTTP", hostname=None),),
        hosts=(
            Host(
                port=port,
                hostname=hostname,
                listener="http",
                rules=tuple(
                    Rule(
                        route=route,
                        rule_index=i,
                        match_index=0,
                        rule_name=None,
                        match=Match(path=PathMatch("PathPrefix", p)),
                        backends=(backend,),
                    )
                    for i, p in enumerate(paths)
                ),
            ),
        ),
        endpoints={backend.name: tuple(Endpoint(a, 9000) for a in addresses)},
        annotations=annotations,
    )
