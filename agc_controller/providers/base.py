"""The provider seam.

A provider programs one Gateway's ALB model onto a data plane and says what
came of it; the result drives the Gateway's `Programmed` conditions and its
`status.addresses`. `apply` is idempotent (level-triggered: it receives the
whole desired state every time) and must not raise for a model it rejects:
a rejection is an `ApplyResult(programmed=False, ...)`. Raise only for
temporary failures the work queue should retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import attrs

from agc_controller.status.model import GatewayAddress, ObjectKey
from agc_controller.translate.model import LoadBalancer


@attrs.frozen
class ApplyResult:
    programmed: bool
    # a Programmed reason: Programmed, Invalid, Pending, AddressNotAssigned, AddressNotUsable
    reason: str
    message: str
    # the addresses the Gateway is reachable at (status.addresses)
    addresses: tuple[GatewayAddress, ...] = ()
    # listener name -> why the provider could not program it
    listener_problems: Mapping[str, str] = attrs.field(factory=dict)


class Provider(Protocol):
    name: str

    async def apply(self, model: LoadBalancer) -> ApplyResult: ...

    async def delete(self, gateway: ObjectKey) -> None: ...
