"""Backend address pools: the pod IPs of a backendRef's EndpointSlices.

Pods are targets directly (no kube-proxy or NodePort hop). A backendRef that
cannot be served (invalid, no ready endpoints, weight 0) gets the Gateway's
empty pool: Application Gateway answers 502 where Gateway API asks for 500,
the closest it can do. A request no rule matches goes to the same empty pool.
"""

from __future__ import annotations

import ipaddress

from agc_controller.providers.azure import naming
from agc_controller.providers.azure.children import Collector, Json
from agc_controller.translate.model import Backend

EMPTY = "empty"


def add_pool(c: Collector, backend: Backend) -> Json:
    endpoints = c.endpoints.get(backend.name, ())
    addresses = sorted({e.address for e in endpoints}, key=ipaddress.ip_address)
    return c.add(
        "backendAddressPools",
        naming.child_name(c.gateway, "pool", backend.name),
        {"backendAddresses": [{"ipAddress": a} for a in addresses]},
    )


def add_empty_pool(c: Collector) -> Json:
    return c.add("backendAddressPools", naming.child_name(c.gateway, "pool", EMPTY), {})
