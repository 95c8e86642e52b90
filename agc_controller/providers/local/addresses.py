"""Loopback addresses for Gateways: one per Gateway, stable for its lifetime.

A Gateway without `spec.addresses` gets a deterministic address from the pool
(a hash of its name, probing on collision), so a restarted controller tends to
hand out the same one. A requested IPAddress is honoured when it is a loopback
address not held by another Gateway; a Gateway gets one address, so several
requested addresses, or any unusable one, leave it unprogrammed
(AddressNotUsable). An entry with an empty value asks for one from the pool.
A Gateway refused an address another Gateway holds waits for it: once any
Gateway lets an address go, `to_retry()` names the waiting ones.
"""

from __future__ import annotations

import hashlib
import ipaddress

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.translate.model import RequestedAddress

DEFAULT_POOL = ipaddress.IPv4Network("127.77.0.0/16")


class AddressProblem(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@attrs.define
class LoopbackAllocator:
    pool: ipaddress.IPv4Network = DEFAULT_POOL
    # Gateway -> its address; values are unique
    _held: dict[ObjectKey, str] = attrs.field(factory=dict)
    # Gateways refused an address another Gateway holds
    _waiting: set[ObjectKey] = attrs.field(factory=set)
    # whether an address was let go since to_retry() last named the waiting Gateways
    _freed: bool = False

    def address_for(self, gateway: ObjectKey, requested: tuple[RequestedAddress, ...]) -> str:
        wanted = list(dict.fromkeys(r.value for r in requested if r.value))
        if wanted:
            # every requested address must be served, or the Gateway is not programmed
            problems = [p for value in wanted if (p := self._usable(gateway, value))]
            if any(self._holder(value) not in (None, gateway) for value in wanted):
                self._waiting.add(gateway)
            else:
                self._waiting.discard(gateway)
            if problems:
                raise AddressProblem(c.R_ADDRESS_NOT_USABLE, "; ".join(problems))
            if len(wanted) > 1:
                raise AddressProblem(
                    c.R_ADDRESS_NOT_USABLE,
                    f"the local data plane serves one address per Gateway; {len(wanted)} "
                    f"were requested ({', '.join(wanted)})",
                )
            self._hold(gateway, wanted[0])
            return wanted[0]
        current = self._held.get(gateway)
        if current is not None and ipaddress.ip_address(current) in self.pool:
            self._waiting.discard(gateway)
            return current
        return self._allocate(gateway)

    def release(self, gateway: ObjectKey) -> None:
        self._waiting.discard(gateway)
        if self._held.pop(gateway, None) is not None:
            self._freed = True

    def to_retry(self) -> set[ObjectKey]:
        """The Gateways refused an address another Gateway held, if an address was let
        go since the last call (each named once: a new refusal names it again)."""
        if not self._freed:
            return set()
        self._freed = False
        waiting, self._waiting = self._waiting, set()
        return waiting

    def _hold(self, gateway: ObjectKey, address: str) -> None:
        previous = self._held.get(gateway)
        if previous is not None and previous != address:
            self._freed = True
        self._held[gateway] = address
        self._waiting.discard(gateway)

    def _holder(self, value: str) -> ObjectKey | None:
        return next((k for k, v in self._held.items() if v == value), None)

    def _usable(self, gateway: ObjectKey, value: str) -> str | None:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return f"{value!r} is not an IP address"
        if not ip.is_loopback:
            return f"{value} is not a loopback address (the local data plane binds loopback only)"
        holder = self._holder(value)
        if holder is not None and holder != gateway:
            return f"{value} is in use by Gateway {holder.namespace}/{holder.name}"
        return None

    def _allocate(self, gateway: ObjectKey) -> str:
        size = self.pool.num_addresses - 2
        digest = hashlib.sha256(gateway.namespaced_name.encode()).digest()
        start = int.from_bytes(digest[:4], "big") % size
        taken = set(self._held.values())
        for step in range(size):
            candidate = str(self.pool.network_address + 1 + (start + step) % size)
            if candidate not in taken:
                self._hold(gateway, candidate)
                return candidate
        raise AddressProblem(c.R_ADDRESS_NOT_ASSIGNED, f"The address pool {self.pool} is exhausted")
