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
from agc_controller.mesh.verify import EndpointVerifier
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
    local_settings = local_translate_settings(
        controller_name,
        mesh=local.mesh is not None,
        deployment=local.dataplane == "deployment",
        static_addresses=bool(local.deployment.static_addresses),
    )
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
            requeue=requeue,
        )
        mesh = None
        if local.mesh is not None:
            if api is None:
                raise ValueError("mesh mTLS needs an API client (tokens and the mesh's roots)")
            mesh = asyncio.create_task(mesh_for(local.mesh, api, provider).run(), name="mesh")
        try:
            yield provider, local_settings
        finally:
            if mesh is not None:
                mesh.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await mesh
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


@attrs.frozen
class Mesh:
    """Mesh mTLS for a LocalProvider: its workload identity and its endpoint checks."""

    identity: WorkloadIdentity
    verifier: EndpointVerifier

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.identity.run(), name="mesh-identity")
            tasks.create_task(self.verifier.run(), name="mesh-verifier")


def mesh_for(options: MeshOptions, api: client.ApiClient, provider: LocalProvider) -> Mesh:
    """The gateway's workload identity (its service account's tokens, istiod's CA, the
    roots istiod publishes into that namespace; every renewal to every NGINX of
    `provider`) and the checks on mesh endpoints, wired into `provider`."""
    clock = SystemClock()
    verifier = EndpointVerifier(
        trust_domain=options.trust_domain, clock=clock, on_change=provider.requeue_mesh_gateways
    )
    identity = WorkloadIdentity(
        spiffe_id=spiffe_id(options.trust_domain, options.namespace, options.service_account),
        ca=IstioCA(options.ca_address, server_name=options.ca_server_name),
        token=TokenRequest(api, options.namespace, options.service_account),
        roots=RootsConfigMap(api, options.namespace),
        clock=clock,
        on_change=provider.use_mesh_certificate,
        on_problem=provider.requeue_mesh_gateways,
    )
    provider.mesh_verifier = verifier
    provider.mesh_problem = lambda: identity.problem
    return Mesh(identity=identity, verifier=verifier)
