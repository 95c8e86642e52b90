"""A Gateway's `spec.addresses` in deployment mode: external IPs of its Service.

A data-plane Service gets its cluster IP (and a load balancer's address) from
the cluster; the addresses a Gateway requests become the Service's
`spec.externalIPs`, for which kube-proxy on every node forwards the listener
ports to the data-plane pods. Whoever may create a Service with external IPs
may take traffic for any address (CVE-2020-8554), so the controller assigns
only addresses inside the ranges its administrator allows
(`--dataplane-static-addresses`, the chart's `dataplane.staticAddresses`;
none by default), each to one Gateway at a time. Every requested address
must be usable, or the Gateway is not programmed (AddressNotUsable); an entry
without a value asks for nothing more than the cluster's address. A Gateway
refused an address another one holds is tried again when a data-plane Service's
external IPs change (provider.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from agc_controller.core.keys import ObjectKey
from agc_controller.translate.model import RequestedAddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def requested_addresses(requested: Iterable[RequestedAddress]) -> tuple[str, ...]:
    """The addresses asked for by value, each once, in the order given."""
    return tuple(dict.fromkeys(r.value for r in requested if r.value))


def held_elsewhere(
    gateway: ObjectKey, wanted: Iterable[str], holders: Mapping[str, ObjectKey]
) -> bool:
    """Whether another Gateway holds one of `wanted` (which may free it later)."""
    return any(
        holders.get(str(ip), gateway) != gateway
        for value in wanted
        if (ip := _ip(value)) is not None
    )


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def address_problems(
    gateway: ObjectKey,
    wanted: Iterable[str],
    *,
    ranges: tuple[IPNetwork, ...],
    holders: Mapping[str, ObjectKey],
) -> list[str]:
    """Why each of `wanted` cannot be `gateway`'s: outside `ranges`, or held by
    another Gateway (`holders`: external IP → the Gateway whose Service has it)."""
    problems = []
    for value in wanted:
        ip = _ip(value)
        if ip is None:
            problems.append(f"{value!r} is not an IP address")
            continue
        if not any(ip in network for network in ranges):
            allowed = ", ".join(str(n) for n in ranges)
            problems.append(
                f"{value} is outside the ranges this controller assigns ({allowed})"
                if ranges
                else f"{value} cannot be assigned: this controller assigns no static addresses "
                "(--dataplane-static-addresses, the chart's dataplane.staticAddresses, is empty)"
            )
            continue
        holder = holders.get(str(ip))
        if holder is not None and holder != gateway:
            problems.append(f"{value} is in use by Gateway {holder.namespace}/{holder.name}")
    return problems
