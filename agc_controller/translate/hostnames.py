"""Hostname validation and the Gateway API intersection rules (listener and route)."""

from __future__ import annotations

import re

# RFC 1123 names with an optional leading "*." label (Gateway API `Hostname`).
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_PRECISE_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
MAX_HOSTNAME = 253


def is_valid_hostname(value: str, *, wildcard: bool = True) -> bool:
    """True for a lower-case RFC 1123 name (optionally `*.`-prefixed), never an IP."""
    if not value or len(value) > MAX_HOSTNAME or _IPV4.match(value):
        return False
    pattern = _HOSTNAME if wildcard else _PRECISE_HOSTNAME
    return pattern.match(value) is not None


def _suffix(wildcard: str) -> str:
    return wildcard[1:]  # "*.example.com" -> ".example.com"


def intersect(listener: str | None, route: str | None) -> str | None:
    """The hostname a listener and a route hostname both match, or None.

    Unset means "*". Wildcards match one or more labels, never the bare suffix.
    The result is the more specific of the two.
    """
    if not listener:
        return route or "*"
    if not route:
        return listener
    listener_wild, route_wild = listener.startswith("*."), route.startswith("*.")
    if not listener_wild and not route_wild:
        return listener if listener == route else None
    if listener_wild and not route_wild:
        return route if route.endswith(_suffix(listener)) else None
    if route_wild and not listener_wild:
        return listener if listener.endswith(_suffix(route)) else None
    if listener.endswith(_suffix(route)):
        return listener
    if route.endswith(_suffix(listener)):
        return route
    return None


def matches(pattern: str | None, host: str) -> bool:
    """Whether a listener hostname (None = any) matches a concrete or wildcard host."""
    return intersect(pattern, host) == host


def specificity(hostname: str | None) -> tuple[int, int]:
    """Sort key, most specific first: exact names, then longer wildcards, then none."""
    if not hostname or hostname == "*":
        return (2, 0)
    if hostname.startswith("*."):
        return (1, -len(hostname))
    return (0, -len(hostname))
