"""The local provider's deployment mode, controller side: a data-plane Deployment per Gateway.

apply(model): build the state and static needs (as the process mode does) and
refuse early what no NGINX would take (`check_static`) → encode it into the
Gateway's configuration Secret → server-side apply the Secret and the
ServiceAccount, Role, RoleBinding, Service and Deployment (manifests.py) →
addresses from the Service → `Programmed` from the agents' report.

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

Writes are skipped when the manifest is what this replica last applied for the
same Gateway uid, less than RESYNC seconds ago; a deleted Secret or Service
forgets that Gateway's record, so the next reconcile recreates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any

import attrs
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.core import conditions as c
from agc_controller.core.clock import Clock, SystemClock
from agc_controller.core.keys import ObjectKey, namespaced_name
from agc_controller.core.resources import GATEWAY, SECRET, SERVICE, Resource
from agc_controller.core.status import ApplyResult, GatewayAddress
from agc_controller.dataplane.config import DataPlaneConfig, Report, encode
from agc_controller.dataplane.manifests import (
    FIELD_MANAGER,
    LABEL_CONTROLLER,
    DataPlane,
    controller_label,
    gateway_of,
    object_name,
)
from agc_controller.dataplane.settings import DataPlaneSettings
from agc_controller.informers import (
    ApiListWatcher,
    Informer,
    KubeObject,
    drop_managed_fields,
    trim_secret,
)
from agc_controller.kube import server_side_apply
from agc_controller.providers.local import check_static
from agc_controller.providers.local.dynamic import build_state
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
# apply order: the agent's identity and rights, its configuration, then the pods
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
    return ((obj.get("spec") or {}).get("clusterIP"), (obj.get("status") or {}).get("loadBalancer"))


def _report_signature(obj: KubeObject) -> Any:
    return Report.from_annotations((obj.get("metadata") or {}).get("annotations"))


@attrs.frozen
class _Changes:
    """Informer handler: report an object whose status-deciding part changed, or that went."""

    # what decides the Gateway's status in an object (a report, an address)
    signature: Callable[[KubeObject], Any]
    # called with the object and whether it is gone
    changed: Callable[[KubeObject, bool], None]

    def on_add(self, obj: KubeObject) -> None:
        self.changed(obj, False)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        if self.signature(old) != self.signature(new):
            self.changed(new, False)

    def on_delete(self, obj: KubeObject) -> None:
        self.changed(obj, True)


@attrs.frozen
class _Applied:
    # the Gateway's uid when applied: a re-created Gateway gets everything again
    uid: str
    # of the manifest as sent
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
        # (Gateway, kind) -> what this replica last applied
        self._applied: dict[tuple[ObjectKey, str], _Applied] = {}
        # Gateway -> set when its Secret's report may have changed (one reconcile waits per key)
        self._waiters: dict[ObjectKey, asyncio.Event] = {}

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
        informer.add_handler(_Changes(signature=signature, changed=self._changed))
        return informer

    def start(self) -> None:
        """Start watching this controller's data-plane Secrets and Services."""
        for informer in (self._secrets, self._services):
            self._tasks.append(
                asyncio.create_task(informer.run(), name=f"informer-{informer.name}")
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def apply(self, model: LoadBalancer) -> ApplyResult:
        key = model.gateway
        if any(a.value for a in model.addresses):
            return ApplyResult(
                programmed=False,
                reason=c.R_ADDRESS_NOT_USABLE,
                message="spec.addresses: the data-plane Service gets its addresses from the "
                "cluster; requesting specific ones is not supported.",
            )
        state, needs = build_state(model)
        # UnsafeValue, ConfigTooLarge and InvalidOverride are permanent: the worker
        # reports them as Programmed=False
        check_static(needs, self._static_settings)
        config = DataPlaneConfig(state=state, needs=needs)
        data = encode(config)
        uid = await self._gateway_uid(key)
        if uid is None:
            return ApplyResult(
                programmed=False, reason=c.R_PENDING, message="The Gateway is being deleted."
            )
        plane = DataPlane.for_model(
            model,
            gateway_uid=uid,
            controller_name=self._controller_name,
            settings=self._settings,
        )
        manifests = [
            plane.service_account(),
            plane.role(),
            plane.role_binding(),
            plane.secret(data, config.version),
            *([plane.service()] if plane.ports else []),
            plane.deployment(),
        ]
        try:
            for manifest in manifests:
                await self._apply(key, uid, manifest)
            if not plane.ports and self._service(key) is not None:
                # a Service needs a port: none while the Gateway has no listener to expose
                await self._delete(key, SERVICE)
        except ApiException as e:
            if e.status in (400, 422):
                return ApplyResult(
                    programmed=False,
                    reason=c.R_INVALID,
                    message=f"The data-plane objects were refused: {_api_message(e)}",
                )
            raise
        addresses = service_addresses(self._service(key))
        if not addresses:
            return ApplyResult(
                programmed=False,
                reason=c.R_ADDRESS_NOT_ASSIGNED,
                message=f"The data-plane Service {plane.name} has no address yet.",
            )
        report = await self._report_for(key, config.version)
        if report is None or report.version != config.version:
            return ApplyResult(
                programmed=False,
                reason=c.R_PENDING,
                message=f"Waiting for the data plane (Deployment {plane.name}) to apply "
                f"configuration {config.version}.",
                addresses=addresses,
            )
        if not report.accepted:
            return ApplyResult(
                programmed=False,
                reason=c.R_INVALID,
                message=f"The data plane refused configuration {config.version} and keeps "
                f"serving the previous one: {report.message}",
                addresses=addresses,
            )
        return ApplyResult(
            programmed=True,
            reason=c.R_PROGRAMMED,
            message=f"Programmed on the data plane Deployment {plane.name}.",
            addresses=addresses,
        )

    async def delete(self, gateway: ObjectKey) -> None:
        """Remove the data plane of a Gateway that is no longer ours (a deleted Gateway's
        objects go with it through their owner references anyway)."""
        name = object_name(gateway)
        managed = self._secrets.store.get(
            namespaced_name(gateway.namespace, name)
        ) is not None or any(k == gateway for k, _ in self._applied)
        if not managed:
            return
        for resource in reversed(APPLY_ORDER):
            await self._delete(gateway, resource)
        log.info("dataplane_deleted", gateway=str(gateway), name=name)

    async def _delete(self, gateway: ObjectKey, resource: Resource) -> None:
        self._applied.pop((gateway, resource.kind), None)
        with contextlib.suppress(_NotFound):
            await self._call(
                "DELETE", resource.object_path(object_name(gateway), gateway.namespace)
            )

    async def _apply(self, key: ObjectKey, uid: str, manifest: dict[str, Any]) -> None:
        kind = manifest["kind"]
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        now = self._clock.monotonic()
        last = self._applied.get((key, kind))
        if (
            last is not None
            and last.uid == uid
            and last.digest == digest
            and now - last.at < RESYNC
        ):
            return
        resource = _BY_KIND[kind]
        try:
            stored = await server_side_apply(
                self._api, manifest, plural=resource.plural, field_manager=FIELD_MANAGER
            )
        except ApiException as e:
            if e.status == 403:
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
        self._applied[(key, kind)] = _Applied(uid=uid, digest=digest, at=now, stored=trim(stored))

    def _service(self, key: ObjectKey) -> KubeObject | None:
        cached = self._services.store.get(namespaced_name(key.namespace, object_name(key)))
        if cached is not None:
            return cached
        applied = self._applied.get((key, SERVICE.kind))
        return applied.stored if applied is not None else None

    def _report(self, key: ObjectKey) -> Report | None:
        secret = self._secrets.store.get(namespaced_name(key.namespace, object_name(key)))
        if secret is None:
            applied = self._applied.get((key, SECRET.kind))
            secret = applied.stored if applied is not None else None
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

    def _changed(self, obj: KubeObject, gone: bool) -> None:
        key = gateway_of(obj)
        if key is None:
            return
        if gone:
            # recreate it at the next reconcile instead of trusting the record
            for kind in _BY_KIND:
                self._applied.pop((key, kind), None)
        event = self._waiters.get(key)
        if event is not None:
            event.set()
        self._requeue(key)

    async def _gateway_uid(self, key: ObjectKey) -> str | None:
        """The Gateway's uid (owner references need it); None if it is gone or going."""
        try:
            gateway = await self._call("GET", GATEWAY.object_path(key.name, key.namespace))
        except _NotFound:
            return None
        metadata = gateway.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            return None
        return str(metadata["uid"])

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


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "").get("message", error.reason))
    except (AttributeError, ValueError):
        return str(error.reason)
