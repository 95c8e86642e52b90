"""The local provider's deployment mode, controller side: a data-plane Deployment per Gateway.

apply(model): build the state's parts by difference and spread them over
shards (shards.py: a ShardedState per Gateway, kept between applies) with the
static needs, and refuse early what no NGINX would take (`check_static`) →
server-side apply the ServiceAccount, Role, RoleBinding, the shard Secrets
that changed, the manifest Secret, the Service and Deployment (manifests.py),
then delete the shards the manifest no longer lists (config.py says why in
this order) → addresses from the Service (the requested ones, its external IPs,
if any: addresses.py) → `Programmed` from the agents' report.
A shard too large for a Secret is refused before anything is written.

Programmed means "the data plane runs this configuration": True only when an
agent reported the Secret's current version as applied, False/Invalid when one
refused it (it keeps serving the last good one), False/Pending while no agent
has reported it yet. An agent that has reported before is given REPORT_WAIT
seconds to report the new version within the same reconcile, so an ordinary
route change goes from Programmed to Programmed without a Pending in between;
a data plane that is not up yet is not waited for. Either way, a report that
arrives later re-queues the Gateway: this provider watches its own Secrets and
Services (label-selected by controller) and calls `requeue` when a report, a
Service address or an object's existence changes.

Writes are skipped when the object is what this replica last applied for the
same Gateway uid, less than RESYNC seconds ago. A shard is known by its Secret
without the data, whose digest annotation stands for the data: an unchanged
shard is skipped without being encoded, and a re-created Gateway (another
uid) gets every shard again. A deleted manifest Secret or Service forgets the
Gateway's records other than its shards', so the next reconcile recreates it
(and whatever else went with it: no informer watches the other kinds).
Shards are no part of the status, so their events re-queue the Gateway only
when one this replica wrote is deleted (by someone else: the provider forgets
the record of a shard it deletes itself), to write it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Collection
from typing import Any

import attrs
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.core import conditions as c
from agc_controller.core.clock import Clock, SystemClock
from agc_controller.core.keys import ObjectKey, namespaced_name
from agc_controller.core.resources import GATEWAY, INGRESS_CLASS, SECRET, SERVICE, Resource
from agc_controller.core.status import ApplyResult, GatewayAddress, ProviderCondition
from agc_controller.dataplane.addresses import (
    address_problems,
    held_elsewhere,
    requested_addresses,
)
from agc_controller.dataplane.config import (
    SHARDS,
    Manifest,
    Report,
    encode_manifest,
    shard_name,
)
from agc_controller.dataplane.manifests import (
    FIELD_MANAGER,
    LABEL_CONTROLLER,
    DataPlane,
    Owner,
    controller_label,
    gateway_of,
    object_name,
    serves_ingress,
)
from agc_controller.dataplane.settings import DataPlaneSettings
from agc_controller.dataplane.shards import ShardedState
from agc_controller.informers import (
    ApiListWatcher,
    Informer,
    KubeObject,
    drop_managed_fields,
    trim_secret,
)
from agc_controller.kube import server_side_apply
from agc_controller.mesh import WorkloadCertificate
from agc_controller.mesh.support import MeshSupport, Presented
from agc_controller.providers.local import check_static
from agc_controller.providers.local.static import StaticSettings
from agc_controller.runtime.permissions import (
    PermissionProblems,
    PermissionReportingListWatcher,
)
from agc_controller.translate.model import LoadBalancer

log = structlog.get_logger(__name__)

# seconds a reconcile waits for a live data plane to report a new version
REPORT_WAIT = 5.0
# seconds after which an unchanged manifest is applied again (heals manual edits)
RESYNC = 600.0

SERVICE_ACCOUNT = Resource("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True)
ROLE = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", namespaced=True)
ROLE_BINDING = Resource(
    "rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", namespaced=True
)
DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment", namespaced=True)
# apply order: the agent's identity and rights, its configuration (the shards
# first), then the pods
APPLY_ORDER = (SERVICE_ACCOUNT, ROLE, ROLE_BINDING, SECRET, SERVICE, DEPLOYMENT)
_BY_KIND = {r.kind: r for r in APPLY_ORDER}


def service_addresses(service: KubeObject | None) -> tuple[GatewayAddress, ...]:
    """The load balancer's addresses if it has any, else the cluster IP."""
    if service is None:
        return ()
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addresses = [
        GatewayAddress(type="IPAddress", value=i["ip"])
        if i.get("ip")
        else GatewayAddress(type="Hostname", value=i["hostname"])
        for i in ingress
        if i.get("ip") or i.get("hostname")
    ]
    if addresses:
        return tuple(addresses)
    cluster_ip = (service.get("spec") or {}).get("clusterIP") or ""
    return (
        (GatewayAddress(type="IPAddress", value=cluster_ip),)
        if cluster_ip not in ("", "None")
        else ()
    )


def _service_signature(obj: KubeObject) -> Any:
    spec = obj.get("spec") or {}
    # external IPs: another Gateway may be waiting for one this Service gives up
    return (
        spec.get("clusterIP"),
        spec.get("externalIPs"),
        (obj.get("status") or {}).get("loadBalancer"),
    )


def _report_signature(obj: KubeObject) -> Any:
    return Report.from_annotations((obj.get("metadata") or {}).get("annotations"))


@attrs.frozen
class _Changes:
    """Informer handler: report an object whose status-deciding part changed, or that went."""

    # the informer's kind
    kind: str
    # what decides the Gateway's status in an object (a report, an address)
    signature: Callable[[KubeObject], Any]
    # called with the kind, the object and whether it is gone
    changed: Callable[[str, KubeObject, bool], None]

    def on_add(self, obj: KubeObject) -> None:
        self.changed(self.kind, obj, False)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        if self.signature(old) != self.signature(new):
            self.changed(self.kind, new, False)

    def on_delete(self, obj: KubeObject) -> None:
        self.changed(self.kind, obj, True)


# an applied object: its Gateway, kind and name
_Record = tuple[ObjectKey, str, str]


@attrs.frozen
class _Applied:
    # the Gateway's uid when applied: a re-created Gateway gets everything again
    uid: str
    # of the manifest as sent (of a shard: without its data)
    digest: str
    # monotonic time of the write
    at: float
    # the object as the apiserver returned it, trimmed like the informers' copies
    stored: KubeObject


class DeploymentProvider:
    name = "local"

    def __init__(
        self,
        api: client.ApiClient,
        *,
        controller_name: str,
        settings: DataPlaneSettings,
        requeue: Callable[[ObjectKey], None],
        static_settings: StaticSettings | None = None,
        clock: Clock | None = None,
        report_wait: float = REPORT_WAIT,
    ) -> None:
        self._api = api
        self._controller_name = controller_name
        self._settings = settings
        self._requeue = requeue
        self._static_settings = static_settings or StaticSettings()
        self._clock = clock or SystemClock()
        self._report_wait = report_wait
        selector = f"{LABEL_CONTROLLER}={controller_label(controller_name)}"
        self.permissions = PermissionProblems()
        self._secrets = self._informer(SECRET, selector, trim_secret, _report_signature)
        self._services = self._informer(SERVICE, selector, drop_managed_fields, _service_signature)
        self._tasks: list[asyncio.Task[None]] = []
        # each Gateway's state as shards, kept between applies; dropped with its data plane
        self._states: dict[ObjectKey, ShardedState] = {}
        # (Gateway, kind, name) -> what this replica last applied
        self._applied: dict[_Record, _Applied] = {}
        # Gateway -> set when its Secret's report may have changed (one reconcile waits per key)
        self._waiters: dict[ObjectKey, asyncio.Event] = {}
        # Gateways refused an address another Gateway's Service holds: re-queued when
        # a data-plane Service's external IPs change or it goes
        self._waiting_for_addresses: set[ObjectKey] = set()
        # mesh mTLS (docs/mesh.md): every pod presents its own certificate (the agent
        # obtains it); the controller checks mesh endpoints as its own identity
        self.mesh = MeshSupport(requeue=requeue)

    def _informer(
        self,
        resource: Resource,
        selector: str,
        transform: Callable[[KubeObject], KubeObject],
        signature: Callable[[KubeObject], Any],
    ) -> Informer:
        informer = Informer(
            resource,
            PermissionReportingListWatcher(
                ApiListWatcher(self._api, resource, label_selector=selector),
                resource,
                self.permissions,
            ),
            clock=self._clock,
            transform=transform,
            name=f"dataplane-{resource.plural}",
        )
        informer.add_handler(
            _Changes(kind=resource.kind, signature=signature, changed=self._changed)
        )
        return informer

    def start(self) -> None:
        """Start watching this controller's data-plane Secrets and Services."""
        for informer in (self._secrets, self._services):
            self._tasks.append(
                asyncio.create_task(informer.run(), name=f"informer-{informer.name}")
            )

    async def use_mesh_certificate(self, certificate: WorkloadCertificate) -> None:
        """Check mesh endpoints as `certificate` from now on."""
        self.mesh.use_certificate(certificate)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def apply(self, model: LoadBalancer) -> ApplyResult:
        key = model.gateway
        wanted = requested_addresses(model.addresses)
        holders = self._external_ip_holders() if wanted else {}
        problems = address_problems(
            key, wanted, ranges=self._settings.static_addresses, holders=holders
        )
        if held_elsewhere(key, wanted, holders):
            self._waiting_for_addresses.add(key)
        else:
            self._waiting_for_addresses.discard(key)
        if problems:
            return ApplyResult(
                programmed=False,
                reason=c.R_ADDRESS_NOT_USABLE,
                message=f"spec.addresses: {'; '.join(problems)}.",
            )
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = ShardedState()
        config = await self.mesh.build(lambda verifier: state.build(model, verifier))
        self.mesh.used(
            key, uses_mesh=config.needs.mesh, endpoints=lambda: state.mesh_endpoints(model)
        )
        # UnsafeValue, ConfigTooLarge and InvalidOverride are permanent: the worker
        # reports them as Programmed=False
        check_static(config.needs, self._static_settings)
        owner = await self._owner(key)
        if owner is None:
            return ApplyResult(
                programmed=False, reason=c.R_PENDING, message="The Gateway is being deleted."
            )
        uid = owner.uid
        plane = DataPlane.for_model(
            model,
            namespace=self._home(key),
            owner=owner,
            controller_name=self._controller_name,
            settings=self._settings,
        )
        # everything that can be too large is encoded before anything is written
        shards = self._shards_to_write(key, uid, plane, state, config)
        secret = plane.secret(encode_manifest(config), config.version)
        try:
            for manifest in (plane.service_account(), plane.role(), plane.role_binding()):
                await self._apply(key, uid, manifest)
            for shard, digest in shards:
                await self._apply(key, uid, shard, digest=digest)
            sent = [shard for shard, _ in shards]
            if await self._apply(key, uid, secret):
                sent.append(secret)
            if plane.ports:
                await self._apply(key, uid, plane.service())
            await self._apply(key, uid, plane.deployment())
            stale = self._shards_present(key, keep=config.shards.keys())
            for name in stale:
                await self._delete(key, SECRET, name)
            if not plane.ports and self._service(key) is not None:
                # a Service needs a port: none while the Gateway has no listener to expose
                await self._delete(key, SERVICE)
        except ApiException as e:
            # refused as they are: invalid, or forbidden by an admission check (e.g.
            # DenyServiceExternalIPs) rather than by the controller's RBAC
            if e.status in (400, 422) or (e.status == 403 and not _denied_by_rbac(e)):
                return ApplyResult(
                    programmed=False,
                    reason=c.R_INVALID,
                    message=f"The data-plane objects were refused: {_api_message(e)}",
                )
            raise
        if sent or stale:
            log.info(
                "dataplane_configuration_written",
                gateway=str(key),
                version=config.version,
                shards_written=[shard["metadata"]["name"] for shard, _ in shards],
                shards_deleted=stale,
                # base64, as sent
                data_bytes=sum(len(v) for obj in sent for v in obj["data"].values()),
            )
        return await self._result(key, plane, config.version, mesh=config.needs.mesh)

    async def _result(
        self, key: ObjectKey, plane: DataPlane, version: str, *, mesh: bool
    ) -> ApplyResult:
        addresses = (
            tuple(GatewayAddress(type="IPAddress", value=ip) for ip in plane.external_ips)
            if plane.external_ips and plane.ports
            else service_addresses(self._service(key))
        )
        if not addresses:
            return ApplyResult(
                programmed=False,
                reason=c.R_ADDRESS_NOT_ASSIGNED,
                message=f"The data-plane Service {plane.name} has no address yet.",
            )
        report = await self._report_for(key, version)
        if report is None or report.version != version:
            return ApplyResult(
                programmed=False,
                reason=c.R_PENDING,
                message=f"Waiting for the data plane (Deployment {plane.name}) to apply "
                f"configuration {version}.",
                addresses=addresses,
            )
        if not report.accepted:
            return ApplyResult(
                programmed=False,
                reason=c.R_INVALID,
                message=f"The data plane refused configuration {version} and keeps "
                f"serving the previous one: {report.message}",
                addresses=addresses,
            )
        return ApplyResult(
            programmed=True,
            reason=c.R_PROGRAMMED,
            message=f"Programmed on the data plane Deployment {plane.name}.",
            addresses=addresses,
            conditions=(self._mesh_identity(report),) if mesh else (),
        )

    def _mesh_identity(self, report: Report) -> ProviderCondition:
        """Whether a Gateway's mesh backends can be reached: the certificate of the pod
        that reported last (every pod obtains its own the same way), and the one the
        controller checks mesh endpoints with (without it none gets traffic)."""
        checks = self.mesh.problem()
        if self.mesh.certificate is None:
            return self.mesh.condition(None, checks, who="the controller")
        presented = (
            Presented(report.mesh_identity, report.mesh_expires) if report.mesh_identity else None
        )
        problems = [report.mesh_problem] if report.mesh_problem else []
        if checks:
            problems.append(f"the controller's, which mesh endpoints are checked with: {checks}")
        return self.mesh.condition(
            presented, "; ".join(problems) or None, who=f"data-plane pod {report.pod}"
        )

    def _shards_to_write(
        self,
        key: ObjectKey,
        uid: str,
        plane: DataPlane,
        state: ShardedState,
        config: Manifest,
    ) -> list[tuple[dict[str, Any], str]]:
        """The shard Secrets of `config` not known written, each with its digest,
        encoded (ConfigTooLarge if one does not fit). An unchanged shard is known by
        its Secret without the data (whose digest annotation stands for the data),
        so it is skipped without being encoded."""
        writes = []
        for shard, content in config.shards.items():
            secret = plane.shard_secret(shard, {}, content)
            digest = _digest(secret)
            if not self._fresh((key, SECRET.kind, secret["metadata"]["name"]), uid, digest):
                writes.append(({**secret, "data": state.data(shard)}, digest))
        return writes

    def _shards_present(self, key: ObjectKey, *, keep: Collection[int]) -> list[str]:
        """The names of `key`'s shard Secrets that exist, as far as this replica knows
        (its record or its informer), other than the shards `keep`."""
        present = []
        for shard in range(SHARDS):
            name = shard_name(object_name(key), shard)
            if shard not in keep and (
                (key, SECRET.kind, name) in self._applied
                or self._secrets.store.get(namespaced_name(self._home(key), name)) is not None
            ):
                present.append(name)
        return present

    async def delete(self, gateway: ObjectKey) -> None:
        """Remove the data plane of a Gateway that is no longer ours (a deleted Gateway's
        objects go with it through their owner references anyway)."""
        self._states.pop(gateway, None)
        self._waiting_for_addresses.discard(gateway)
        self.mesh.forget(gateway)
        name = object_name(gateway)
        managed = self._secrets.store.get(
            namespaced_name(self._home(gateway), name)
        ) is not None or any(record[0] == gateway for record in self._applied)
        if not managed:
            return
        for resource in reversed(APPLY_ORDER):
            await self._delete(gateway, resource)
            if resource == SECRET:
                # the manifest first: no agent reads a shard it lists that is gone
                for shard in self._shards_present(gateway, keep=()):
                    await self._delete(gateway, SECRET, shard)
        log.info("dataplane_deleted", gateway=str(gateway), name=name)

    async def _delete(self, gateway: ObjectKey, resource: Resource, name: str = "") -> None:
        """Delete `gateway`'s `resource` object, or the one named `name`."""
        name = name or object_name(gateway)
        self._applied.pop((gateway, resource.kind, name), None)
        with contextlib.suppress(_NotFound):
            await self._call("DELETE", resource.object_path(name, self._home(gateway)))

    def _fresh(self, record: _Record, uid: str, digest: str) -> bool:
        """Whether `record` was applied with `digest` for `uid` less than RESYNC ago."""
        last = self._applied.get(record)
        return (
            last is not None
            and last.uid == uid
            and last.digest == digest
            and self._clock.monotonic() - last.at < RESYNC
        )

    async def _apply(
        self, key: ObjectKey, uid: str, manifest: dict[str, Any], *, digest: str = ""
    ) -> bool:
        """Server-side apply `manifest` unless it is fresh; True if it was written.
        `digest` identifies it (by default, the digest of the whole manifest)."""
        kind = manifest["kind"]
        record = (key, kind, manifest["metadata"]["name"])
        digest = digest or _digest(manifest)
        if self._fresh(record, uid, digest):
            return False
        resource = _BY_KIND[kind]
        try:
            stored = await server_side_apply(
                self._api, manifest, plural=resource.plural, field_manager=FIELD_MANAGER
            )
        except ApiException as e:
            if e.status == 403 and _denied_by_rbac(e):
                log.error(
                    "permission_denied",
                    verb="patch",
                    resource=resource.plural,
                    api_group=resource.group or "core",
                    message=_api_message(e),
                    fix=f"grant 'create' and 'patch' on '{resource.plural}' to the controller's "
                    "ServiceAccount (the chart's ClusterRole does with provider local)",
                )
            raise
        trim = trim_secret if resource == SECRET else drop_managed_fields
        self._applied[record] = _Applied(
            uid=uid, digest=digest, at=self._clock.monotonic(), stored=trim(stored)
        )
        return True

    def _stored(self, key: ObjectKey, resource: Resource) -> KubeObject | None:
        """`key`'s `resource` object: the informer's copy, else as this replica wrote it."""
        informer = self._secrets if resource == SECRET else self._services
        cached = informer.store.get(namespaced_name(self._home(key), object_name(key)))
        if cached is not None:
            return cached
        applied = self._applied.get((key, resource.kind, object_name(key)))
        return applied.stored if applied is not None else None

    def _service(self, key: ObjectKey) -> KubeObject | None:
        return self._stored(key, SERVICE)

    def _external_ip_holders(self) -> dict[str, ObjectKey]:
        """External IP → the Gateway whose data-plane Service has it: the informer's
        Services, where this replica wrote one since, as it wrote it."""
        services = {
            (gateway, object_name(gateway)): service
            for service in self._services.store.list()
            if (gateway := gateway_of(service)) is not None
        }
        for (gateway, kind, name), applied in self._applied.items():
            if kind == SERVICE.kind:
                services[gateway, name] = applied.stored
        return {
            str(ipaddress.ip_address(ip)): gateway
            for (gateway, _), service in services.items()
            for ip in (service.get("spec") or {}).get("externalIPs") or []
        }

    def _report(self, key: ObjectKey) -> Report | None:
        secret = self._stored(key, SECRET)
        return _report_signature(secret) if secret is not None else None

    async def _report_for(self, key: ObjectKey, version: str) -> Report | None:
        """The latest report, after waiting a little for `version` if an agent is alive."""
        report = self._report(key)
        if report is None or report.version == version:
            return report
        event = self._waiters[key] = asyncio.Event()
        try:
            async with asyncio.timeout(self._report_wait):
                while report is None or report.version != version:
                    await event.wait()
                    event.clear()
                    report = self._report(key)
        except TimeoutError:
            pass
        finally:
            self._waiters.pop(key, None)
        return report

    def _changed(self, kind: str, obj: KubeObject, gone: bool) -> None:
        key = gateway_of(obj)
        if key is None:
            return
        if kind == SERVICE.kind:
            for waiting in self._waiting_for_addresses - {key}:
                self._requeue(waiting)
        name = obj["metadata"]["name"]
        if name != object_name(key):
            # a shard: what it holds decides nothing in the status; a deleted one is
            # written again at the next reconcile, unless this replica deleted it
            # itself (then it left no record)
            if gone and self._applied.pop((key, kind, name), None) is not None:
                self._requeue(key)
            return
        if gone:
            # recreate it (and the objects no informer watches) at the next reconcile
            # instead of trusting the records
            for other in _BY_KIND:
                self._applied.pop((key, other, name), None)
        event = self._waiters.get(key)
        if event is not None:
            event.set()
        self._requeue(key)

    def _home(self, key: ObjectKey) -> str:
        """The namespace `key`'s data plane lives in: the Gateway's, or for the Gateway
        an IngressClass's Ingresses are served as, the controller's."""
        return self._settings.home_namespace if serves_ingress(key) else key.namespace

    async def _owner(self, key: ObjectKey) -> Owner | None:
        """What owns `key`'s data plane: the Gateway, or the IngressClass; None if it is
        gone or going (owner references need its uid)."""
        resource = INGRESS_CLASS if serves_ingress(key) else GATEWAY
        try:
            owner = await self._call(
                "GET",
                resource.object_path(key.name, None if serves_ingress(key) else key.namespace),
            )
        except _NotFound:
            return None
        metadata = owner.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            return None
        return Owner(
            api_version=resource.api_version,
            kind=resource.kind,
            name=key.name,
            uid=str(metadata["uid"]),
        )

    async def _call(self, method: str, path: str) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self._api.call_api(
                path,
                method,
                header_params={"Accept": "application/json"},
                response_types_map={200: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )
        except ApiException as e:
            if e.status == 404:
                raise _NotFound from e
            raise
        return result


class _NotFound(Exception):
    pass


def _digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


# how the authorizer words a refusal: '... is forbidden: User "..." cannot patch
# resource "services" in API group ""...'
_RBAC_DENIAL = re.compile(r"\bcannot \w+ resource\b")


def _denied_by_rbac(error: ApiException) -> bool:
    """Whether a 403 is the authorizer's, not an admission plugin's or policy's
    refusal of the object itself."""
    return _RBAC_DENIAL.search(_api_message(error)) is not None


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message", error.reason))
    except (AttributeError, ValueError):
        return str(error.reason)
