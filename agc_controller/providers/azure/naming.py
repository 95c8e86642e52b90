"""Deterministic names and resource IDs of the Application Gateway children we own.

Invariants:
- Every child owned by one Gateway is named `agc-<tag>-<kind>-<slug>`, where
  `<tag>` is 8 hex digits of the SHA-256 of `namespace/name`: the prefix alone
  says which Gateway owns a child, and two Gateways never share a prefix in
  practice (a collision needs 2^32 Gateways).
- Children shared by every Gateway on one Application Gateway (frontend ports)
  are named `agc-port-<number>` and are kept while any listener uses them.
- Anything else on the Application Gateway is not ours and is never modified.
- Names fit ARM's rule (1-80 characters, `[A-Za-z0-9_.-]`, starting with an
  alphanumeric and ending with an alphanumeric or `_`); readable parts are cut
  and a digest of the full text keeps truncated names unique.
"""

from __future__ import annotations

import hashlib
import re

from agc_controller.core.keys import ObjectKey

MAX_NAME = 80
_OWNED = re.compile(r"^agc-([0-9a-f]{8})-")
_SHARED_PORT = re.compile(r"^agc-port-[0-9]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def gateway_tag(gateway: ObjectKey) -> str:
    return digest(gateway.namespaced_name)


def gateway_prefix(gateway: ObjectKey) -> str:
    return f"agc-{gateway_tag(gateway)}-"


def child_name(gateway: ObjectKey, kind: str, readable: str) -> str:
    """`agc-<tag>-<kind>-<readable>`, cut to ARM's length with a digest when needed."""
    prefix = f"{gateway_prefix(gateway)}{kind}-"
    slug = _UNSAFE.sub("-", readable).strip("-.") or "x"
    name = prefix + slug
    if len(name) > MAX_NAME:
        tail = digest(readable)
        name = f"{prefix}{slug[: MAX_NAME - len(prefix) - len(tail) - 1].rstrip('-.')}-{tail}"
    return name


def shared_port_name(port: int) -> str:
    return f"agc-port-{port}"


def owner_tag(name: str) -> str | None:
    """The tag of the Gateway owning a child, or None for a child no Gateway owns."""
    m = _OWNED.match(name)
    return m.group(1) if m else None


def is_shared_port(name: str) -> bool:
    return bool(_SHARED_PORT.match(name))


def application_gateway_id(subscription: str, resource_group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.Network/applicationGateways/{name}"
    )


def child_id(gateway_id: str, collection: str, name: str) -> str:
    return f"{gateway_id}/{collection}/{name}"


def ref(gateway_id: str, collection: str, name: str) -> dict[str, str]:
    """A sub-resource reference, as ARM bodies carry them."""
    return {"id": child_id(gateway_id, collection, name)}


def last_segment(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]
