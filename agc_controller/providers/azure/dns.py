"""Azure DNS records for a Gateway's host names (opt-in: the dns-zone annotation).

For every host name of the Gateway inside the zone (listener and route host
names as the model's hosts carry them; `*.suffix` is the zone's `*` record
set) the zone holds, under the name relative to the zone (`@` at its apex):

- an A record set (AAAA for IPv6) with the Gateway's frontend addresses, and
- a TXT record set at the same name holding the owner string
  `heritage=agc-controller,agc-controller/owner=<namespace>/<name>`, which
  marks both as this Gateway's (external-dns's TXT registry, without prefix).

Invariants:
- Only record sets under an owner TXT of this Gateway are ever written or
  deleted. A name whose TXT is someone else's (another Gateway's, or not
  ours at all), or that has an A, AAAA or CNAME record set but no TXT, is a
  conflict: reported, never touched.
- Every write is conditional: a creation sends `If-None-Match: *`, a change or
  deletion `If-Match` with the ETag read. A 412 (someone wrote in between)
  re-reads the name and decides again, so a concurrent writer is never
  clobbered.
- The TXT is created before its A/AAAA and deleted after them: no address
  record of ours is ever without its owner mark.
- Names of ours the Gateway no longer serves are found by listing the zone's
  TXT record sets (ownership lives in the zone, not in this process) and are
  deleted, A/AAAA first. A Gateway that leaves the zone (deleted, annotation
  removed or changed) has all of its records deleted from it.
- A Gateway whose names, addresses and zone did not change since its records
  were last all in place is not read again for `resync_s`: an endpoint change
  costs no DNS call.
- Nothing here fails the Application Gateway's part: every outcome, ARM's
  errors included, is the Gateway's `agc-controller.io/DNSRecords` condition.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Mapping, Sequence

import attrs
import structlog

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import GatewayAddress, ProviderCondition
from agc_controller.providers.azure.arm import ArmClient, ArmConflict, ArmError, ArmRejected
from agc_controller.providers.azure.children import Json
from agc_controller.providers.azure.settings import DnsZone

log = structlog.get_logger(__name__)

HERITAGE = "heritage=agc-controller"
# the TTL of the record sets we write (seconds): short, so a moved frontend address
# is seen soon
RECORD_TTL_S = 300
# how often a name is re-read and decided again after a 412 before giving up for now
CONFLICT_ATTEMPTS = 5
# what an address record set is called in ARM, and where its addresses live in it
_ADDRESS_TYPES = {"A": ("ARecords", "ipv4Address"), "AAAA": ("AAAARecords", "ipv6Address")}


def owner_value(gateway: ObjectKey) -> str:
    """The owner TXT string that marks a record set as this Gateway's."""
    return f"{HERITAGE},agc-controller/owner={gateway.namespace}/{gateway.name}"


def relative_name(hostname: str, zone: str) -> str | None:
    """`hostname` relative to `zone` (`@` for the apex), or None outside the zone."""
    host = hostname.lower().rstrip(".")
    if host == zone:
        return "@"
    if host.endswith("." + zone):
        return host[: -len(zone) - 1]
    return None


def address_records(addresses: Iterable[GatewayAddress]) -> dict[str, tuple[str, ...]]:
    """Record type -> the sorted addresses a record set of that type holds (IP
    addresses only: a host name address is no A/AAAA record)."""
    found: dict[str, set[str]] = {"A": set(), "AAAA": set()}
    for address in addresses:
        if address.type != "IPAddress":
            continue
        try:
            ip = ipaddress.ip_address(address.value)
        except ValueError:
            continue
        found["A" if ip.version == 4 else "AAAA"].add(str(ip))
    return {kind: tuple(sorted(values)) for kind, values in found.items()}


def record_set_body(record_type: str, values: Sequence[str]) -> Json:
    """The ARM JSON of one record set of ours (A, AAAA, or the owner TXT)."""
    if record_type == "TXT":
        return {"properties": {"TTL": RECORD_TTL_S, "TXTRecords": [{"value": list(values)}]}}
    collection, field = _ADDRESS_TYPES[record_type]
    return {"properties": {"TTL": RECORD_TTL_S, collection: [{field: value} for value in values]}}


def _txt_values(record_set: Json) -> list[str]:
    return [
        "".join(record.get("value") or [])
        for record in (record_set.get("properties") or {}).get("TXTRecords") or []
    ]


def _addresses(record_set: Json, record_type: str) -> tuple[str, ...]:
    collection, field = _ADDRESS_TYPES[record_type]
    props = record_set.get("properties") or {}
    return tuple(sorted(str(r.get(field)) for r in props.get(collection) or []))


def _owner_of(txt: Json) -> str | None:
    """The Gateway another agc-controller owner TXT names, if it is one."""
    for value in _txt_values(txt):
        if value.startswith(HERITAGE + ",agc-controller/owner="):
            return value.split("=", 2)[2]
    return None


@attrs.frozen
class _Outcome:
    """What one pass over a Gateway's names found."""

    # relative names whose records are in place
    kept: tuple[str, ...]
    # host name -> why its records are someone else's
    conflicts: Mapping[str, str]
    # host name -> ARM's refusal of its records
    refused: Mapping[str, str]
    deleted: int


class DnsRecords:
    """The DNS records of every Gateway that asked for them."""

    def __init__(self, arm: ArmClient, *, resync_s: float) -> None:
        self._arm = arm
        self._resync_s = resync_s
        # the zone each Gateway last kept records in: where to delete them when it goes
        self._zones: dict[ObjectKey, DnsZone] = {}
        # Gateway -> (what was asked, loop time, its condition) of its last pass that put
        # every record in place
        self._done: dict[ObjectKey, tuple[object, float, ProviderCondition]] = {}

    async def keep(
        self,
        gateway: ObjectKey,
        zone: DnsZone,
        hostnames: Iterable[str],
        addresses: Sequence[GatewayAddress],
    ) -> ProviderCondition:
        """Put `gateway`'s records for `hostnames` in `zone` (and only them)."""
        previous = self._zones.get(gateway)
        if previous is not None and previous != zone:
            await self.forget(gateway)
        self._zones[gateway] = zone
        names: dict[str, str] = {}
        outside: list[str] = []
        for hostname in sorted(set(hostnames)):
            if hostname == "*":
                # a catch-all listener serves no name DNS could point at
                continue
            name = relative_name(hostname, zone.name)
            if name is None:
                outside.append(hostname)
            else:
                names[name] = hostname
        records = address_records(addresses)
        asked = (zone, tuple(sorted(names)), tuple(sorted(records.items())))
        now = asyncio.get_running_loop().time()
        # taken out: a pass that asks for something else makes it stale for good
        done = self._done.pop(gateway, None)
        if done is not None and done[0] == asked and now - done[1] < self._resync_s:
            self._done[gateway] = done
            return done[2]
        if not any(records.values()):
            return _condition(
                False,
                c.R_PENDING,
                "The Application Gateway has no IP address yet to point DNS records at",
            )
        try:
            outcome = await self._sync(gateway, zone, names, records)
        except ArmError as e:
            log.warning("azure_dns_failed", gateway=str(gateway), zone=str(zone), error=str(e))
            return _condition(False, c.R_PENDING, f"DNS zone {zone.name}: {e}")
        condition = _report(zone, names, outside, outcome)
        if condition.status:
            self._done[gateway] = (asked, now, condition)
        return condition

    async def forget(self, gateway: ObjectKey) -> None:
        """Delete every record of `gateway` from the zone it last kept records in
        (failures are logged: the records stay until the zone is cleaned by hand)."""
        self._done.pop(gateway, None)
        zone = self._zones.pop(gateway, None)
        if zone is None:
            return
        try:
            await self._sync(gateway, zone, {}, {})
        except ArmError as e:
            log.warning(
                "azure_dns_cleanup_failed", gateway=str(gateway), zone=str(zone), error=str(e)
            )

    async def _sync(
        self,
        gateway: ObjectKey,
        zone: DnsZone,
        names: Mapping[str, str],
        records: Mapping[str, tuple[str, ...]],
    ) -> _Outcome:
        owner = owner_value(gateway)
        # the listing comes first: it also tells a missing zone or a missing permission
        owned = {
            str(txt.get("name")).lower()
            for txt in await self._arm.list_record_sets(zone, "TXT")
            if owner in _txt_values(txt)
        }
        kept: list[str] = []
        conflicts: dict[str, str] = {}
        refused: dict[str, str] = {}
        for name, hostname in sorted(names.items()):
            try:
                problem = await self._settle(zone, name, owner, records, keep=True)
            except ArmRejected as e:
                refused[hostname] = str(e)
                continue
            if problem is None:
                kept.append(name)
            else:
                conflicts[hostname] = problem
        deleted = 0
        for name in sorted(owned - names.keys()):
            if await self._settle(zone, name, owner, records, keep=False) is None:
                log.info("azure_dns_deleted", gateway=str(gateway), zone=str(zone), name=name)
                deleted += 1
        return _Outcome(kept=tuple(kept), conflicts=conflicts, refused=refused, deleted=deleted)

    async def _settle(
        self,
        zone: DnsZone,
        name: str,
        owner: str,
        records: Mapping[str, tuple[str, ...]],
        *,
        keep: bool,
    ) -> str | None:
        """Make one name's records what they should be (`keep`: `records` under our
        owner TXT; else none of ours), deciding again after every 412; why not, if
        they are not ours."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return await self._settle_once(zone, name, owner, records, keep=keep)
            except ArmConflict:
                log.info("azure_dns_conflict", zone=str(zone), name=name, attempt=attempt)
        raise ArmConflict(f"the record sets at {name!r} kept changing while being written")

    async def _settle_once(
        self,
        zone: DnsZone,
        name: str,
        owner: str,
        records: Mapping[str, tuple[str, ...]],
        *,
        keep: bool,
    ) -> str | None:
        txt = await self._arm.get_record_set(zone, "TXT", name)
        if txt is None or owner not in _txt_values(txt):
            if not keep:
                # not ours (any more): nothing to delete
                return None
            if txt is not None:
                other = _owner_of(txt)
                if other is not None:
                    return f"its TXT record set is owned by Gateway {other}"
                return "it has a TXT record set that is not this controller's"
            for record_type in ("A", "AAAA", "CNAME"):
                if await self._arm.get_record_set(zone, record_type, name) is not None:
                    return f"it holds {record_type} records without an owner TXT record"
            await self._arm.put_record_set(
                zone, "TXT", name, record_set_body("TXT", [owner]), etag=None
            )
        for record_type in _ADDRESS_TYPES:
            wanted = records.get(record_type, ()) if keep else ()
            # no TXT was there: neither were these (just read)
            current = (
                None if txt is None else await self._arm.get_record_set(zone, record_type, name)
            )
            if wanted and (current is None or _addresses(current, record_type) != wanted):
                etag = None if current is None else str(current.get("etag") or "")
                await self._arm.put_record_set(
                    zone, record_type, name, record_set_body(record_type, wanted), etag=etag
                )
            elif not wanted and current is not None:
                await self._arm.delete_record_set(
                    zone, record_type, name, etag=str(current.get("etag") or "")
                )
        if not keep and txt is not None:
            await self._arm.delete_record_set(zone, "TXT", name, etag=str(txt.get("etag") or ""))
        return None


def _condition(status: bool, reason: str, text: str) -> ProviderCondition:
    return ProviderCondition(type=c.DNS_RECORDS, status=status, reason=reason, message=text)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _listed(items: Iterable[str], limit: int = 10) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _report(
    zone: DnsZone, names: Mapping[str, str], outside: Sequence[str], outcome: _Outcome
) -> ProviderCondition:
    parts = [
        f"{len(outcome.kept)} of {_count(len(names), 'host name')} in DNS zone {zone.name} "
        "have their records"
    ]
    if outcome.conflicts:
        parts.append(
            "left untouched, as records this Gateway does not own hold them: "
            + _listed(f"{host} ({why})" for host, why in sorted(outcome.conflicts.items()))
        )
    if outcome.refused:
        parts.append(
            "ARM refused the records of "
            + _listed(f"{host} ({why})" for host, why in sorted(outcome.refused.items()))
        )
    if outside:
        parts.append(f"skipped outside the zone: {_listed(outside)}")
    if outcome.deleted:
        parts.append(f"deleted the records of {_count(outcome.deleted, 'name')} no longer served")
    text = "; ".join(parts)
    if outcome.refused:
        return _condition(False, c.R_INVALID, text)
    if outcome.conflicts:
        return _condition(False, c.R_CONFLICTED, text)
    return _condition(True, c.R_PROGRAMMED, text)
