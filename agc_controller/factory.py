"""Choose a provider by name and the translation settings that go with it.

Each provider states what it can program: the GatewayClass advertises exactly
those features in `status.supportedFeatures` (the conformance suite reads them
from there), and translation reports anything else on the route.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
from kubernetes_asyncio import client

from agc_controller.core.clock import SystemClock
from agc_controller.core.keys import ObjectKey
from agc_controller.dataplane.provider import DeploymentProvider
from agc_controller.dataplane.settings import DataPlaneSettings
from agc_controller.mesh import (
    IstioCA,
    RootsConfigMap,
    TokenRequest,
    WorkloadIdentity,
    spiffe_id,
)
from agc_controller.providers.base import Provider
from agc_controller.providers.local import LocalProvider
from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.providers.local.static import AccessLog, StaticSettings
from agc_controller.providers.memory import MemoryProvider
from agc_controller.runtime.metrics import record_arm_request, record_nginx_reload
from agc_controller.settings import LOCAL_DATAPLANE_MODES
from agc_controller.translate import TranslateSettings

PROVIDERS = ("local", "azure", "memory")


@attrs.frozen
class MeshOptions:
    """Istio mesh mTLS to backends in injected namespaces (docs/mesh.md)."""

    # the gateway's workload identity: its data plane's service account
    namespace: str
    service_account: str
    # istiod's certificate service, and the name its serving certificate carries
    ca_address: str = "istiod.istio-system.svc:15012"
    ca_server_name: str = "istiod.istio-system.svc"
    trust_domain: str = "cluster.local"


def check_mesh(provider: str, dataplane: str) -> None:
    """Raise ValueError unless `provider` (and its data-plane mode) serves mesh mTLS."""
    if provider != "local" or dataplane != "process":
        raise ValueError(
            "mesh mTLS is served by the local provider's NGINX processes only: Application "
            "Gateway v2 cannot present an Istio workload certificate, and in-cluster data "
            "planes (--local-dataplane deployment) do not obtain one"
        )


@attrs.frozen
class LocalOptions:
    # one subdirectory per Gateway's NGINX
    state_dir: Path
    # added to every listener port when binding (run without root: e.g. 8000)
    port_offset: int = 0
    # where each NGINX writes its access log (StaticSettings.access_log)
    access_log: AccessLog = "file"
    # stop the data planes when the controller exits; False keeps traffic flowing
    # through a restart or failover (the next controller adopts them)
    stop_on_exit: bool = True
    # process: NGINX child processes of the controller (the options above);
    # deployment: a data-plane Deployment per Gateway (agc_controller/dataplane)
    dataplane: str = attrs.field(
        default="process", validator=attrs.validators.in_(LOCAL_DATAPLANE_MODES)
    )
    deployment: DataPlaneSettings = attrs.field(factory=DataPlaneSettings)
    # None: backends in Istio-injected namespaces are spoken to like any other
    mesh: MeshOptions | None = None


def _drop(_key: ObjectKey) -> None:
    return


@asynccontextmanager
async def open_provider(
    name: str,
    *,
    controller_name: str,
    local: LocalOptions,
    api: client.ApiClient | None = None,
    requeue: Callable[[ObjectKey], None] = _drop,
) -> AsyncIterator[tuple[Provider, TranslateSettings]]:
    """The provider `name` and its translation settings; closed on exit.

    The local provider's deployment mode needs `api` (it writes the data-plane
    objects) and `requeue` (it re-queues a Gateway when its data plane reports).
    """
    local_settings = local_translate_settings(controller_name, mesh=local.mesh is not None)
    if local.mesh is not None:
        check_mesh(name, local.dataplane)
    if name == "local" and local.dataplane == "deployment":
        if api is None:
            raise ValueError("the local provider's deployment mode needs an API client")
        deployments = DeploymentProvider(
            api, controller_name=controller_name, settings=local.deployment, requeue=requeue
        )
        deployments.start()
        try:
            yield deployments, local_settings
        finally:
            await deployments.close()
    elif name == "local":
        provider = LocalProvider(
            state_dir=local.state_dir,
            port_offset=local.port_offset,
            static_settings=StaticSettings(access_log=local.access_log),
            on_reload=lambda: record_nginx_reload(success=True),
            stop_on_close=local.stop_on_exit,
        )
        identity = None
        if local.mesh is not None:
            if api is None:
                raise ValueError("mesh mTLS needs an API client (tokens and the mesh's roots)")
            identity = mesh_identity(local.mesh, api, provider)
            provider.mesh_problem = lambda: identity.problem if identity else None
        renewing = asyncio.create_task(identity.run(), name="mesh-identity") if identity else None
        try:
            yield provider, local_settings
        finally:
            if renewing is not None:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
            await provider.close()
    elif name == "azure":
        # imported only when chosen: the Azure SDK adds tens of MiB to every process
        from agc_controller.providers.azure import (  # noqa: PLC0415
            AzureProvider,
            AzureSettings,
            azure_translate_settings,
        )

        async with AzureProvider(
            settings=AzureSettings.from_env(),
            on_arm_call=lambda method, status: record_arm_request(
                method=method, status_code=status
            ),
        ) as azure:
            yield azure, azure_translate_settings(controller_name)
    elif name == "memory":
        yield MemoryProvider(), TranslateSettings(controller_name=controller_name)
    else:
        raise ValueError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}")


def mesh_identity(
    mesh: MeshOptions, api: client.ApiClient, provider: LocalProvider
) -> WorkloadIdentity:
    """The gateway's workload identity: its service account's tokens, istiod's CA,
    the roots istiod publishes into that namespace; every renewal to every NGINX."""
    return WorkloadIdentity(
        spiffe_id=spiffe_id(mesh.trust_domain, mesh.namespace, mesh.service_account),
        ca=IstioCA(mesh.ca_address, server_name=mesh.ca_server_name),
        token=TokenRequest(api, mesh.namespace, mesh.service_account),
        roots=RootsConfigMap(api, mesh.namespace),
        clock=SystemClock(),
        on_change=provider.use_mesh_certificate,
    )
