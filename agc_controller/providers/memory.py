"""An in-memory provider: keeps the last model per Gateway and programs nothing.

Used by tests of the reconcile loop and by `agc-controller run --provider memory`
to check translation and status against a cluster without a data plane.
Addresses come from a per-instance pool so status.addresses is exercised.
"""

from __future__ import annotations

import ipaddress

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import ApplyResult, GatewayAddress
from agc_controller.translate.model import LoadBalancer

# RFC 5737 documentation range: never routed anywhere
_TEST_NET = ipaddress.IPv4Network("192.0.2.0/24")


@attrs.define
class MemoryProvider:
    name: str = "memory"
    # the network addresses are handed out from
    pool: ipaddress.IPv4Network = _TEST_NET
    # last applied model per Gateway
    models: dict[ObjectKey, LoadBalancer] = attrs.field(factory=dict)
    # Gateway -> address handed out, stable for the Gateway's lifetime
    _addresses: dict[ObjectKey, str] = attrs.field(factory=dict)
    applies: int = 0

    async def apply(self, model: LoadBalancer) -> ApplyResult:
        self.applies += 1
        self.models[model.gateway] = model
        if model.gateway not in self._addresses:
            used = set(self._addresses.values())
            free = next(str(ip) for ip in self.pool.hosts() if str(ip) not in used)
            self._addresses[model.gateway] = free
        return ApplyResult(
            programmed=True,
            reason=c.R_PROGRAMMED,
            message="Programmed in memory only: no data plane serves this Gateway",
            addresses=(GatewayAddress(type="IPAddress", value=self._addresses[model.gateway]),),
        )

    async def delete(self, gateway: ObjectKey) -> None:
        self.models.pop(gateway, None)
        self._addresses.pop(gateway, None)
