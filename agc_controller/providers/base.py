"""The provider seam.

A provider programs one Gateway's ALB model onto a data plane and says what
came of it; the result drives the Gateway's `Programmed` conditions and its
`status.addresses`. `apply` is idempotent (level-triggered: it receives the
whole desired state every time) and must not raise for a model it rejects:
a rejection is an `ApplyResult(programmed=False, ...)`, with `temporary=True`
when the same model may succeed later (the Gateway reports it and is retried).
Raise only `core.errors.TemporaryError` for failures the work queue should
retry without a word in the Gateway's status.
"""

from __future__ import annotations

from typing import Protocol

from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import ApplyResult
from agc_controller.translate.model import LoadBalancer


class Provider(Protocol):
    name: str

    async def apply(self, model: LoadBalancer) -> ApplyResult: ...

    async def delete(self, gateway: ObjectKey) -> None: ...
