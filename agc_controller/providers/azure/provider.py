"""The azure provider: Gateways → Azure Application Gateway v2 through ARM.

`apply` places the Gateway (settings, overridden by its annotations), hands
its model to the sync of that Application Gateway and waits for the round
that programs it (see sync.py). A permanent ARM refusal is a result, not an
exception; transient trouble raises `ArmTemporaryError` so the work queue
retries the Gateway with backoff, keeping its previous `Programmed` status.
A Gateway moved to another Application Gateway (annotation change) is first
removed from the old one.

A Gateway that names an Azure DNS zone (annotation) then has its host names'
records kept there (dns.py), whatever became of the Application Gateway part:
their outcome is a condition of their own, and never changes `Programmed`.
"""

from __future__ import annotations

import asyncio
import types

import attrs
import structlog
from azure.core.credentials_async import AsyncTokenCredential

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import ApplyResult, ProviderCondition
from agc_controller.providers.azure.arm import (
    ArmAccessError,
    ArmClient,
    ArmRejected,
    OnArmCall,
    Sleep,
)
from agc_controller.providers.azure.credentials import azure_credential
from agc_controller.providers.azure.dns import DnsRecords
from agc_controller.providers.azure.merge import EncodePfx
from agc_controller.providers.azure.pfx import encode_pfx
from agc_controller.providers.azure.settings import (
    AzureSettings,
    Target,
    dns_zone,
    placement,
)
from agc_controller.providers.azure.sync import AddressBook, ApplicationGatewaySync, Desired
from agc_controller.translate.model import LoadBalancer

log = structlog.get_logger(__name__)


class AzureProvider:
    name = "azure"

    def __init__(
        self,
        *,
        settings: AzureSettings,
        credential: AsyncTokenCredential | None = None,
        on_arm_call: OnArmCall | None = None,
        sleep: Sleep = asyncio.sleep,
        encode: EncodePfx = encode_pfx,
    ) -> None:
        """`credential` defaults to the one `settings.credential` names (credentials.py:
        workload identity alone in a cluster); `on_arm_call(method, status)` is called
        for every ARM HTTP response (e.g. to count them in metrics)."""
        self.settings = settings
        self._owns_credential = credential is None
        if credential is None:
            credential = azure_credential(settings.credential)
        self._credential = credential
        self._arm = ArmClient(
            credential=credential, settings=settings, on_arm_call=on_arm_call, sleep=sleep
        )
        self._encode = encode
        self._sleep = sleep
        self._addresses = AddressBook(self._arm)
        self._syncs: dict[Target, ApplicationGatewaySync] = {}
        # where each Gateway was last placed, to remove it from there when it moves or goes
        self._placements: dict[ObjectKey, Target] = {}
        # the Azure DNS records of the Gateways that name a zone (opt-in)
        self._dns = DnsRecords(self._arm, resync_s=settings.resync_s)

    def sync_for(self, target: Target) -> ApplicationGatewaySync:
        sync = self._syncs.get(target)
        if sync is None:
            sync = ApplicationGatewaySync(
                target,
                arm=self._arm,
                encode_pfx=self._encode,
                conflict_attempts=self.settings.conflict_attempts,
                failure_attempts=self.settings.retry_attempts,
                failure_backoff_s=self.settings.retry_min_s,
                addresses=self._addresses,
                sleep=self._sleep,
                rejection_retry_s=self.settings.rejection_retry_s,
                settle_poll_s=self.settings.polling_interval_s,
                settle_timeout_s=self.settings.operation_timeout_s,
                resync_s=self.settings.resync_s,
            )
            self._syncs[target] = sync
        return sync

    async def apply(self, model: LoadBalancer) -> ApplyResult:
        result = await self._program(model)
        zone = dns_zone(model)
        if zone is None:
            # not (or no longer) asked for: none of its records may stay behind
            await self._dns.forget(model.gateway)
            return result
        if isinstance(zone, str):
            dns = ProviderCondition(
                type=c.DNS_RECORDS, status=False, reason=c.R_INVALID, message=zone
            )
        elif not result.programmed:
            dns = ProviderCondition(
                type=c.DNS_RECORDS,
                status=False,
                reason=c.R_PENDING,
                message="Waiting for the Application Gateway to be programmed",
            )
        else:
            dns = await self._dns.keep(
                model.gateway, zone, (host.hostname for host in model.hosts), result.addresses
            )
        return attrs.evolve(
            result,
            conditions=(*result.conditions, dns),
            # ARM access trouble with the zone (or no address yet): tried again, like
            # the Application Gateway's
            temporary=result.temporary or (result.programmed and dns.reason == c.R_PENDING),
        )

    async def _program(self, model: LoadBalancer) -> ApplyResult:
        where = placement(model, self.settings)
        if isinstance(where, str):
            return ApplyResult(programmed=False, reason=c.R_INVALID, message=where)
        previous = self._placements.get(model.gateway)
        if previous is not None and previous != where.target:
            await self._remove(model.gateway, previous)
        self._placements[model.gateway] = where.target
        try:
            result = await self.sync_for(where.target).submit(
                model.gateway, Desired(model=model, frontend=where.frontend)
            )
        except ArmRejected as e:
            return ApplyResult(
                programmed=False,
                reason=c.R_INVALID,
                message=f"Application Gateway {where.target}: {e}",
            )
        except ArmAccessError as e:
            # sign-in, permissions or a missing resource: reported, and tried again
            return ApplyResult(
                programmed=False,
                reason=c.R_PENDING,
                message=f"Application Gateway {where.target}: {e}",
                temporary=True,
            )
        assert result is not None
        return result

    async def delete(self, gateway: ObjectKey) -> None:
        await self._dns.forget(gateway)
        target = self._placements.pop(gateway, None)
        if target is None:
            # not applied by this process (e.g. deleted while the controller was down):
            # its children can only be on the default Application Gateway
            default = self.settings
            if not (
                default.subscription_id and default.resource_group and default.application_gateway
            ):
                return
            target = Target(
                default.subscription_id, default.resource_group, default.application_gateway
            )
        await self._remove(gateway, target)

    async def _remove(self, gateway: ObjectKey, target: Target) -> None:
        try:
            await self.sync_for(target).submit(gateway, None)
        except (ArmRejected, ArmAccessError) as e:
            # e.g. the Application Gateway itself is gone: nothing of ours is left there
            log.warning(
                "azure_remove_refused", gateway=str(gateway), target=str(target), reason=str(e)
            )

    async def close(self) -> None:
        for sync in self._syncs.values():
            sync.close()
        await self._arm.close()
        if self._owns_credential:
            await self._credential.close()

    async def __aenter__(self) -> AzureProvider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.close()
