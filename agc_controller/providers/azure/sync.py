"""Keep one Application Gateway in sync with every Gateway placed on it.

Invariants:
- At most one round (GET → merge → PUT → wait for the operation) runs per
  Application Gateway: a second PUT would only get 429 while the first runs.
- A round programs the latest desired state of every Gateway on it. Changes
  arriving during a round are coalesced into the next one, so a burst costs
  at most two PUTs, however long it is.
- A `submit` is answered by the first round that started after it, so its
  result always reflects the state it asked for (or a newer one).
- One Gateway's children ARM refuses never block the others': a rejected PUT
  is bisected — half of the Gateways whose children changed are held at what
  ARM has, and the PUT tried again — until the offender is isolated; it alone
  reports ARM's message (keeping its last good children), and its refused
  children are not PUT again, unchanged, for `rejection_retry_s`.
- A body ARM rejected that no changed Gateway explains is not PUT again while
  neither the Application Gateway (ETag) nor the desired children change, for
  `rejection_retry_s`; then it is.
- No Gateway is reported programmed while the operation of its PUT may still
  fail: when polling it fails, the round waits for the gateway to settle.
- An update whose operations keep failing is reported (`Programmed=False` with
  ARM's message) and tried again with the work queue's backoff.
- Every `resync_s` without a round, a round runs by itself with the latest
  desired state: what someone else changed or removed among our children (a
  Terraform run, a person in the portal) is put back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping

import attrs
import structlog

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import ApplyResult, GatewayAddress
from agc_controller.providers.azure import firewall
from agc_controller.providers.azure.arm import (
    ArmAccessError,
    ArmClient,
    ArmConflict,
    ArmOperationFailed,
    ArmPollingInterrupted,
    ArmRejected,
    ArmTemporaryError,
    Sleep,
)
from agc_controller.providers.azure.builder import build_children
from agc_controller.providers.azure.children import GatewayChildren, Json
from agc_controller.providers.azure.frontends import (
    FrontendIp,
    FrontendMode,
    frontend_ips,
    port_names,
)
from agc_controller.providers.azure.merge import EncodePfx, MergeResult, merge
from agc_controller.providers.azure.settings import Target
from agc_controller.translate.model import Certificate, LoadBalancer

log = structlog.get_logger(__name__)


@attrs.frozen
class Desired:
    model: LoadBalancer
    frontend: FrontendMode


# one Gateway's wish: its model, or None to remove it
Wish = Desired | None


class ApplicationGatewaySync:
    def __init__(
        self,
        target: Target,
        *,
        arm: ArmClient,
        encode_pfx: EncodePfx,
        conflict_attempts: int,
        failure_attempts: int,
        failure_backoff_s: float,
        addresses: AddressBook,
        sleep: Sleep = asyncio.sleep,
        rejection_retry_s: float = 300.0,
        settle_poll_s: float = 10.0,
        settle_timeout_s: float = 1800.0,
        resync_s: float = 300.0,
    ) -> None:
        self.target = target
        self._arm = arm
        self._encode_pfx = encode_pfx
        self._conflict_attempts = conflict_attempts
        self._failure_attempts = failure_attempts
        self._failure_backoff_s = failure_backoff_s
        self._sleep = sleep
        self._addresses = addresses
        self._rejection_retry_s = rejection_retry_s
        self._settle_poll_s = settle_poll_s
        self._settle_timeout_s = settle_timeout_s
        self._resync_s = resync_s
        # a round asked for by the resync timer (no one waits for it)
        self._resync_due = False
        self._resync_timer: asyncio.TimerHandle | None = None
        self._closed = False
        # latest wish per Gateway; removals stay until a round has removed them
        self._desired: dict[ObjectKey, Wish] = {}
        # bumped by every submit; a round serves every waiter up to the version it read
        self._version = 0
        # (version, gateway, answer) for submits not yet served by a round
        self._waiters: list[tuple[int, ObjectKey, asyncio.Future[ApplyResult | None]]] = []
        self._runner: asyncio.Task[None] | None = None
        # (ETag, digest of the children) of the last body ARM rejected, its message, and
        # when it may be PUT again (loop time)
        self._rejected: tuple[tuple[str, str], str, float] | None = None
        # PUTs issued (for tests and benchmarks)
        self.puts = 0
        # Gateways whose children ARM refused: (digest of those children, ARM's message,
        # when they may be PUT again)
        self._offenders: dict[ObjectKey, tuple[str, str, float]] = {}
        # WAF policies of ours this process created (or found) for this gateway, and the
        # ones its body referred to after the last cleanup (None: none done yet)
        self._firewall_policies: set[str] = set()
        self._referenced_policies: frozenset[str] | None = None

    async def submit(self, gateway: ObjectKey, wish: Wish) -> ApplyResult | None:
        """Program `wish` for `gateway` (with everyone else's latest); None for a removal."""
        self._desired[gateway] = wish
        self._version += 1
        answer: asyncio.Future[ApplyResult | None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._version, gateway, answer))
        self._start()
        return await answer

    def _start(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"azure-sync-{self.target}")

    def _resync(self) -> None:
        self._resync_due = True
        self._start()

    def close(self) -> None:
        self._closed = True
        if self._resync_timer is not None:
            self._resync_timer.cancel()
        if self._runner is not None:
            self._runner.cancel()

    async def _run(self) -> None:
        try:
            while self._waiters or self._resync_due:
                if self._resync_due:
                    log.info("azure_resync", target=str(self.target))
                self._resync_due = False
                version = self._version
                snapshot = dict(self._desired)
                results: Mapping[ObjectKey, ApplyResult] = {}
                error: BaseException | None = None
                try:
                    results = await self._round(snapshot)
                except Exception as e:
                    error = e
                if error is not None and not self._waiters:
                    log.warning("azure_resync_failed", target=str(self.target), error=str(error))
                served = [w for w in self._waiters if w[0] <= version]
                self._waiters = [w for w in self._waiters if w[0] > version]
                for _, gateway, answer in served:
                    if answer.done():
                        continue
                    if error is not None:
                        answer.set_exception(error)
                    else:
                        answer.set_result(results.get(gateway))
                if error is None:
                    for gateway, wish in snapshot.items():
                        if (
                            wish is None
                            and gateway in self._desired
                            and self._desired[gateway] is None
                        ):
                            del self._desired[gateway]
        finally:
            # cancelled (shutdown): nobody may wait forever
            for _, _, answer in self._waiters:
                if not answer.done():
                    answer.cancel()
            if self._resync_timer is not None:
                self._resync_timer.cancel()
            if (
                not self._closed
                and self._resync_s > 0
                and any(w is not None for w in self._desired.values())
            ):
                self._resync_timer = asyncio.get_running_loop().call_later(
                    self._resync_s, self._resync
                )

    async def _round(self, snapshot: Mapping[ObjectKey, Wish]) -> dict[ObjectKey, ApplyResult]:
        conflicts = failures = 0
        search = _Bisection()
        while True:
            current = await self._arm.get_gateway(self.target)
            etag = str(current.get("etag") or "")
            ips = frontend_ips(current)
            now = asyncio.get_running_loop().time()
            builds, merged, refused = self._plan(current, snapshot, ips, search, now)
            await self._create_firewall_policies(builds, refused)
            # a failed operation may have left the gateway half-configured: PUT it again
            failed = (current.get("properties") or {}).get("provisioningState") == "Failed"
            if not merged.changed and not failed:
                if search.release():
                    continue
                self._rejected = None
                await self._collect_firewall_policies(merged.body)
                return await self._results(builds, refused, ips)
            key = (etag, _digest(builds))
            if self._rejected is not None and self._rejected[0] == key and now < self._rejected[2]:
                return self._rejection(builds, self._rejected[1])
            self.puts += 1
            log.info("azure_put", target=str(self.target), gateways=len(builds))
            try:
                await self._arm.put_gateway(self.target, merged.body, etag or None)
            except ArmConflict:
                conflicts += 1
                log.info("azure_put_conflict", target=str(self.target), attempt=conflicts)
                if conflicts >= self._conflict_attempts:
                    raise ArmTemporaryError(
                        f"The Application Gateway {self.target} kept changing during "
                        f"{conflicts} attempts to update it"
                    ) from None
                continue
            except ArmOperationFailed as e:
                failures += 1
                log.warning("azure_operation_failed", target=str(self.target), reason=str(e))
                if failures >= self._failure_attempts:
                    # reported, and tried again with the queue's backoff (not in a loop here)
                    return self._rejection(builds, str(e), temporary=True)
                await self._sleep(self._failure_backoff_s * 2 ** (failures - 1))
                continue
            except ArmPollingInterrupted as e:
                failures += 1
                log.warning("azure_polling_interrupted", target=str(self.target), reason=str(e))
                if failures >= self._failure_attempts:
                    raise ArmTemporaryError(str(e)) from e
                await self._settle()
                continue
            except ArmRejected as e:
                if self._isolate(
                    str(e), current=current, builds=builds, refused=refused, search=search, now=now
                ):
                    continue
                self._rejected = (key, str(e), now + self._rejection_retry_s)
                return self._rejection(builds, str(e))
            self._rejected = None
            if search.release():
                continue
            await self._collect_firewall_policies(merged.body)
            return await self._results(builds, refused, ips)

    def _plan(
        self,
        current: Json,
        snapshot: Mapping[ObjectKey, Wish],
        ips: Mapping[str, FrontendIp],
        search: _Bisection,
        now: float,
    ) -> tuple[dict[ObjectKey, GatewayChildren | None], MergeResult, dict[ObjectKey, str]]:
        """The children each Gateway wants, the body with them (offenders and Gateways
        the search holds back keep theirs), and the Gateways refused, with why."""
        builds = self._builds(current, snapshot, ips)
        search.offenders.update(self._known_offenders(builds, now))
        merged = merge(current, builds, encode_pfx=self._encode_pfx, hold=search.holding())
        return builds, merged, {**merged.refused, **search.refusals(self.target)}

    def _builds(
        self, current: Json, snapshot: Mapping[ObjectKey, Wish], ips: Mapping[str, FrontendIp]
    ) -> dict[ObjectKey, GatewayChildren | None]:
        ports = port_names(current)
        sku_tier = str(((current.get("properties") or {}).get("sku") or {}).get("tier", ""))
        return {
            gateway: None
            if wish is None
            else build_children(
                wish.model,
                gateway_id=self.target.id,
                frontend_ips=ips,
                frontend_mode=wish.frontend,
                ports=ports,
                location=str(current.get("location") or ""),
                sku_tier=sku_tier,
            )
            for gateway, wish in snapshot.items()
        }

    def _isolate(
        self,
        message: str,
        *,
        current: Json,
        builds: Mapping[ObjectKey, GatewayChildren | None],
        refused: Mapping[ObjectKey, str],
        search: _Bisection,
        now: float,
    ) -> bool:
        """A step of the search for what ARM refused (`message`) among the Gateways whose
        children the PUT changed; False when none of them is left to explain it."""
        suspects = [
            g
            for g in sorted(builds, key=lambda g: (g.namespace, g.name))
            if g not in refused and g not in search.held and _changes(current, g, builds[g])
        ]
        log.warning(
            "azure_put_rejected",
            target=str(self.target),
            suspects=[str(g) for g in suspects],
            error=message,
        )
        offender = search.step(message, suspects)
        if offender is not None:
            digest = _digest({offender: builds[offender]})
            self._offenders[offender] = (digest, message, now + self._rejection_retry_s)
        return bool(suspects)

    def _known_offenders(
        self, builds: Mapping[ObjectKey, GatewayChildren | None], now: float
    ) -> dict[ObjectKey, str]:
        """The Gateways whose children ARM refused before, unchanged and not yet due
        again: held at what ARM has rather than PUT again."""
        known = {}
        for gateway, (digest, message, retry_at) in list(self._offenders.items()):
            same = gateway in builds and _digest({gateway: builds[gateway]}) == digest
            if same and now < retry_at:
                known[gateway] = message
                continue
            del self._offenders[gateway]
        return known

    async def _create_firewall_policies(
        self,
        builds: Mapping[ObjectKey, GatewayChildren | None],
        refused: Mapping[ObjectKey, str],
    ) -> None:
        """Create the WAF policies of ours that the children to PUT refer to and that
        this process has not seen created (names follow content: one there is right)."""
        for gateway, children in builds.items():
            if children is None or gateway in refused:
                continue
            for name, body in children.firewall_policies.items():
                if name not in self._firewall_policies:
                    log.info("azure_waf_policy_put", target=str(self.target), policy=name)
                    await self._arm.put_firewall_policy(self.target, name, body)
                    self._firewall_policies.add(name)

    async def _collect_firewall_policies(self, body: Json) -> None:
        """Delete the WAF policies we made for this Application Gateway that it no
        longer refers to: after every round that changed which ones it does (and after
        the first). A failure is logged and tried again next round."""
        referenced = firewall.referenced_names(body)
        if referenced == self._referenced_policies:
            return
        try:
            owned = await self._arm.firewall_policies(self.target)
            for name, tags in sorted(owned.items()):
                if firewall.serves(tags, self.target.name) and name not in referenced:
                    log.info("azure_waf_policy_delete", target=str(self.target), policy=name)
                    await self._arm.delete_firewall_policy(self.target, name)
                    self._firewall_policies.discard(name)
        except (ArmRejected, ArmAccessError, ArmTemporaryError, ArmOperationFailed) as e:
            log.warning("azure_waf_policy_cleanup_failed", target=str(self.target), error=str(e))
            return
        self._referenced_policies = referenced

    async def _settle(self) -> None:
        """Until the gateway's operation is over (its provisioningState is no longer
        Updating), however its polling went; the round then reads the outcome."""
        deadline = asyncio.get_running_loop().time() + self._settle_timeout_s
        while asyncio.get_running_loop().time() < deadline:
            current = await self._arm.get_gateway(self.target)
            if (current.get("properties") or {}).get("provisioningState") != "Updating":
                return
            await self._sleep(self._settle_poll_s)
        raise ArmTemporaryError(
            f"The Application Gateway {self.target} was still updating after "
            f"{self._settle_timeout_s:.0f} s"
        )

    def _rejection(
        self,
        builds: Mapping[ObjectKey, GatewayChildren | None],
        message: str,
        *,
        temporary: bool = False,
    ) -> dict[ObjectKey, ApplyResult]:
        text = f"Application Gateway {self.target} rejected the update: {message}"
        return {
            gateway: ApplyResult(
                programmed=False, reason=c.R_INVALID, message=text, temporary=temporary
            )
            for gateway, children in builds.items()
            if children is not None
        }

    async def _results(
        self,
        builds: Mapping[ObjectKey, GatewayChildren | None],
        refused: Mapping[ObjectKey, str],
        ips: Mapping[str, FrontendIp],
    ) -> dict[ObjectKey, ApplyResult]:
        results = {}
        for gateway, children in builds.items():
            if children is None:
                continue
            problem = children.problem or refused.get(gateway)
            if problem is not None:
                results[gateway] = ApplyResult(
                    programmed=False,
                    reason=c.R_INVALID,
                    message=f"Not programmed on Application Gateway {self.target}: {problem}",
                )
                continue
            wish = self._desired.get(gateway)
            mode: FrontendMode = wish.frontend if wish is not None else "public"
            labels = ("public", "private") if mode == "both" else (mode,)
            results[gateway] = ApplyResult(
                programmed=True,
                reason=c.R_PROGRAMMED,
                message=f"Programmed on Application Gateway {self.target}",
                addresses=await self._addresses.lookup([ips[label] for label in labels]),
                listener_problems=children.listener_problems,
            )
        return results


@attrs.define
class _Bisection:
    """A round's search for the Gateway whose children ARM refuses."""

    # held at their children on ARM for the next PUT
    held: set[ObjectKey] = attrs.field(factory=set)
    # isolated: Gateway -> ARM's message
    offenders: dict[ObjectKey, str] = attrs.field(factory=dict)

    def holding(self) -> set[ObjectKey]:
        return self.held | self.offenders.keys()

    def refusals(self, target: Target) -> dict[ObjectKey, str]:
        return {
            g: f"Application Gateway {target} rejected its update: {message}"
            for g, message in self.offenders.items()
        }

    def step(self, message: str, suspects: list[ObjectKey]) -> ObjectKey | None:
        """After ARM refused a PUT whose changed Gateways were `suspects`: one suspect
        is the offender (returned; the others go on); of several, half are held back."""
        if len(suspects) == 1:
            self.offenders[suspects[0]] = message
            return suspects[0]
        self.held.update(suspects[len(suspects) // 2 :])
        return None

    def release(self) -> bool:
        """After a PUT went through with some held back: those go next (True)."""
        if not self.held:
            return False
        self.held.clear()
        return True


@attrs.define
class AddressBook:
    """Frontend addresses; a public IP's address is read from its resource once."""

    arm: ArmClient
    # public IP resource ID -> its addresses (static on Application Gateway v2)
    _public: dict[str, tuple[GatewayAddress, ...]] = attrs.field(factory=dict)

    async def lookup(self, ips: list[FrontendIp]) -> tuple[GatewayAddress, ...]:
        out: list[GatewayAddress] = []
        for ip in ips:
            if ip.private_address:
                out.append(GatewayAddress(type="IPAddress", value=ip.private_address))
            elif ip.public_ip_id:
                out.extend(await self._public_addresses(ip.public_ip_id))
        return tuple(out)

    async def _public_addresses(self, resource_id: str) -> tuple[GatewayAddress, ...]:
        key = resource_id.lower()
        if key not in self._public:
            try:
                props: Json = (await self.arm.get_public_ip(resource_id)).get("properties") or {}
            except (ArmAccessError, ArmRejected) as e:
                # e.g. no Reader on a public IP in another resource group: the Gateway is
                # programmed all the same, its address unknown until this is fixed
                log.warning("azure_public_ip_unreadable", public_ip=resource_id, error=str(e))
                return ()
            found = []
            if props.get("ipAddress"):
                found.append(GatewayAddress(type="IPAddress", value=str(props["ipAddress"])))
            fqdn = (props.get("dnsSettings") or {}).get("fqdn")
            if fqdn:
                found.append(GatewayAddress(type="Hostname", value=str(fqdn)))
            if not found:
                # not allocated yet: ask again next time
                return ()
            self._public[key] = tuple(found)
        return self._public[key]


def _changes(current: Json, gateway: ObjectKey, children: GatewayChildren | None) -> bool:
    """Whether putting `children` (None: removing the Gateway) changes what ARM has."""
    return merge(current, {gateway: children}, encode_pfx=_no_pfx).changed


def _no_pfx(_: Certificate) -> tuple[str, str]:
    # a comparison only: certificates are compared by name, never uploaded here
    return "", ""


def _digest(builds: Mapping[ObjectKey, GatewayChildren | None]) -> str:
    plain = {
        g.namespaced_name: None if b is None else {k: list(v) for k, v in b.collections.items()}
        for g, b in sorted(builds.items(), key=lambda kv: (kv[0].namespace, kv[0].name))
    }
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()
