"""Put the children of several Gateways onto the live Application Gateway (pure).

Given the Application Gateway as ARM returned it and, per Gateway being
reconciled, its children (None: the Gateway is gone):

1. Keep every child that is not ours to rewrite: anything unowned, and the
   children of Gateways not in this round (their owner will reconcile them).
2. Add each Gateway's children in Gateway order, refusing a Gateway whose
   children would make ARM reject the whole body (a listener on a port and
   host another listener serves, a v2 limit): a refused Gateway keeps the
   children it already had, so its last good configuration keeps serving and
   the others still get programmed.
3. Add the shared frontend ports the listeners use; drop unused ones.
4. Number our request routing rules in precedence order, skipping priorities
   taken by rules we keep.
5. Upload only certificates ARM lacks (names carry a digest of the PEM).
6. `changed` compares only what we own, and only the properties we set: ARM
   fills in defaults and read-only fields we must not mistake for drift.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import attrs

from agc_controller.core.keys import ObjectKey
from agc_controller.providers.azure import limits, naming
from agc_controller.providers.azure.children import (
    COLLECTIONS,
    NAMED_BY_DIGEST,
    GatewayChildren,
    Json,
    properties,
)
from agc_controller.translate.model import Certificate

# references we set on some children and not on others (ARM sets none of them by
# itself): one on ARM's side that ours lacks is a change, e.g. a WAF policy detached
_OPTIONAL_REFERENCES = frozenset(
    {"firewallPolicy", "rewriteRuleSet", "redirectConfiguration", "sslProfile", "probe"}
)
# our priorities start here, leaving 1..999 to rules the owner adds by hand
PRIORITY_BASE = 1000
MAX_PRIORITY = 20000

EncodePfx = Callable[[Certificate], tuple[str, str]]


@attrs.frozen
class MergeResult:
    # the whole Application Gateway to PUT
    body: Json
    # whether anything we own differs from what ARM has
    changed: bool
    # Gateway -> why its new children were not put (its old ones were kept)
    refused: Mapping[ObjectKey, str]


def merge(
    current: Mapping[str, Any],
    builds: Mapping[ObjectKey, GatewayChildren | None],
    *,
    encode_pfx: EncodePfx,
    hold: Collection[ObjectKey] = (),
) -> MergeResult:
    """The body to PUT; Gateways in `hold` keep the children they have on ARM (as
    refused ones do, without being refused: sync.py's bisection holds some back)."""
    rebuilt = {naming.gateway_tag(g) for g in builds}
    props = current.get("properties") or {}

    def ours(name: str) -> bool:
        return naming.owner_tag(name) in rebuilt or naming.is_shared_port(name)

    merged: dict[str, list[Json]] = {
        collection: [
            copy.deepcopy(ch) for ch in props.get(collection) or [] if not ours(ch["name"])
        ]
        for collection in COLLECTIONS
    }
    refused: dict[ObjectKey, str] = {}
    added: list[GatewayChildren] = []
    for gateway in sorted(builds, key=lambda g: (g.namespace, g.name)):
        children = builds[gateway]
        if children is None:
            continue
        if gateway in hold:
            _keep_existing(merged, props, naming.gateway_tag(gateway))
            continue
        problem = (
            children.problem
            or _missing_external(props, children)
            or _key_vault_without_identity(current, children)
            or _conflict(merged, children)
            or _over_limit(props, merged, children)
        )
        if problem is None:
            for collection, items in children.collections.items():
                merged[collection].extend(copy.deepcopy(list(items)))
            added.append(children)
        else:
            refused[gateway] = problem
            _keep_existing(merged, props, naming.gateway_tag(gateway))
    _add_shared_ports(merged, current)
    _assign_priorities(merged, added)
    _fill_certificates(merged, props, added, encode_pfx)

    body = copy.deepcopy(dict(current))
    # a collection the Application Gateway never had stays absent rather than empty
    body["properties"] = {
        **copy.deepcopy(dict(props)),
        **{k: v for k, v in merged.items() if v or k in props},
    }
    changed = any(
        not _same(
            _owned(props.get(collection) or [], ours), _owned(merged[collection], ours), collection
        )
        for collection in COLLECTIONS
    )
    return MergeResult(body=body, changed=changed, refused=refused)


def _owned(children: Iterable[Json], ours: Callable[[str], bool]) -> dict[str, Json]:
    return {ch["name"]: ch for ch in children if ours(ch["name"])}


def _same(current: Mapping[str, Json], desired: Mapping[str, Json], collection: str) -> bool:
    if current.keys() != desired.keys():
        return False
    if collection in NAMED_BY_DIGEST:
        return True
    return all(_covers(current[n].get("properties"), desired[n].get("properties")) for n in desired)


def _covers(current: Any, desired: Any) -> bool:
    """Whether `current` holds every value `desired` sets (extra keys in `current` are
    ARM's defaults and read-only fields), and none of the references we set on some
    children only. IDs compare case-insensitively, as ARM does."""
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return False
        if any(key in current and key not in desired for key in _OPTIONAL_REFERENCES):
            return False
        for key, value in desired.items():
            if key == "id" and isinstance(value, str):
                if str(current.get(key, "")).lower() != value.lower():
                    return False
            elif not _covers(current.get(key), value):
                return False
        return True
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(_covers(c, d) for c, d in zip(current, desired, strict=True))
        )
    return bool(current == desired)


def _listener_hosts(listener: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(frontend IP, port, host name) each request a listener takes is keyed by: one per
    host name (`hostNames`, or the older singular `hostName` unowned listeners may
    use), or "" for a basic listener. Two listeners sharing one are refused by ARM."""
    p = properties(listener)
    ip = str((p.get("frontendIPConfiguration") or {}).get("id", "")).lower()
    port = naming.last_segment(str((p.get("frontendPort") or {}).get("id", ""))).lower()
    hosts = list(p.get("hostNames") or []) + ([p["hostName"]] if p.get("hostName") else [])
    return [(ip, port, h.lower()) for h in hosts] or [(ip, port, "")]


def _missing_external(props: Mapping[str, Any], children: GatewayChildren) -> str | None:
    """Why a child someone else made, which the Gateway names, cannot be used: it is not
    on the Application Gateway (ARM would refuse the whole body), or it is ours (it
    comes and goes with a Gateway)."""
    present = {
        (collection, str(ch.get("name", "")).lower())
        for collection in {collection for collection, _ in children.external}
        for ch in props.get(collection) or []
    }
    for collection, name in children.external:
        if naming.owner_tag(name) is not None:
            return f"{collection} {name} belongs to agc-controller: name one made outside it"
        if (collection, name.lower()) not in present:
            return f"{collection} {name} is not on the Application Gateway"
    return None


def _key_vault_without_identity(
    current: Mapping[str, Any], children: GatewayChildren
) -> str | None:
    """Why the Gateway's Key Vault certificates cannot be read: Application Gateway
    reads them with a user-assigned identity of its own, which it lacks."""
    from_key_vault = [
        cert["name"]
        for cert in children.collections.get("sslCertificates", ())
        if properties(cert).get("keyVaultSecretId")
    ]
    identity = current.get("identity") or {}
    if from_key_vault and not identity.get("userAssignedIdentities"):
        return (
            f"sslCertificates {from_key_vault[0]} comes from Key Vault, which the Application "
            "Gateway reads with a user-assigned managed identity: it has none (assign one with "
            "get on the vault's secrets; docs/azure.md)"
        )
    return None


def _conflict(merged: Mapping[str, list[Json]], children: GatewayChildren) -> str | None:
    taken = {key: ls["name"] for ls in merged["httpListeners"] for key in _listener_hosts(ls)}
    for listener in children.collections.get("httpListeners", ()):
        for key in _listener_hosts(listener):
            other = taken.get(key)
            if other is not None:
                _, port, host = key
                return (
                    f"frontend port {port} with host name {host or 'any'} is already "
                    f"served by listener {other} on the Application Gateway"
                )
    if children.collections.get("requestRoutingRules"):
        unprioritised = [
            rule["name"]
            for rule in merged["requestRoutingRules"]
            if properties(rule).get("priority") is None
        ]
        if unprioritised:
            return (
                f"request routing rules {', '.join(unprioritised[:3])} on the Application "
                "Gateway have no priority, and ARM refuses rules with and without priorities "
                "on one gateway: give them priorities (below 1000 keeps them first)"
            )
    return None


def _over_limit(
    props: Mapping[str, Any], merged: Mapping[str, list[Json]], children: GatewayChildren
) -> str | None:
    trial = {k: list(v) for k, v in merged.items()}
    for collection, items in children.collections.items():
        trial[collection].extend(items)
    # the gateway's own properties too: its SKU and firewall set some limits
    return limits.check({"properties": {**props, **trial}})


def _keep_existing(merged: dict[str, list[Json]], props: Mapping[str, Any], tag: str) -> None:
    for collection in COLLECTIONS:
        merged[collection].extend(
            copy.deepcopy(ch)
            for ch in props.get(collection) or []
            if naming.owner_tag(ch["name"]) == tag
        )


def _add_shared_ports(merged: dict[str, list[Json]], current: Mapping[str, Any]) -> None:
    used = {
        naming.last_segment(str((properties(ls).get("frontendPort") or {}).get("id", "")))
        for ls in merged["httpListeners"]
    }
    existing = {p["name"]: p for p in (current.get("properties") or {}).get("frontendPorts") or []}
    for name in sorted(n for n in used if naming.is_shared_port(n)):
        port = existing.get(name) or {
            "name": name,
            "properties": {"port": int(name.rsplit("-", 1)[1])},
        }
        merged["frontendPorts"].append(copy.deepcopy(port))


def _assign_priorities(merged: dict[str, list[Json]], added: list[GatewayChildren]) -> None:
    order = sorted(
        ((key, name) for children in added for name, key in children.rule_order.items()),
        key=lambda item: (item[0], item[1]),
    )
    ours = {name for _, name in order}
    taken = {
        int(properties(rule).get("priority") or 0)
        for rule in merged["requestRoutingRules"]
        if rule["name"] not in ours
    }
    numbers: dict[str, int] = {}
    priority = PRIORITY_BASE
    for _, name in order:
        while priority in taken:
            priority += 1
        numbers[name] = min(priority, MAX_PRIORITY)
        priority += 1
    for rule in merged["requestRoutingRules"]:
        if rule["name"] in numbers:
            rule["properties"]["priority"] = numbers[rule["name"]]


def _fill_certificates(
    merged: dict[str, list[Json]],
    props: Mapping[str, Any],
    added: list[GatewayChildren],
    encode_pfx: EncodePfx,
) -> None:
    existing = {c["name"]: c for c in props.get("sslCertificates") or []}
    material = {name: cert for children in added for name, cert in children.certificates.items()}
    certificates = []
    for cert in merged["sslCertificates"]:
        if cert["name"] in existing:
            certificates.append(copy.deepcopy(existing[cert["name"]]))
        elif cert["name"] in material:
            data, password = encode_pfx(material[cert["name"]])
            certificates.append(
                {"name": cert["name"], "properties": {"data": data, "password": password}}
            )
        else:
            certificates.append(cert)
    merged["sslCertificates"] = certificates
