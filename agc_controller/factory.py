"""Choose a provider by name and the translation settings that go with it.

Each provider states what it can program: the GatewayClass advertises exactly
those features in `status.supportedFeatures` (the conformance suite reads them
from there), and translation reports anything else on the route.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import structlog
from kubernetes_asyncio import client

from agc_controller.core.clock import SystemClock
from agc_controller.core.keys import ObjectKey
from agc_controller.dataplane.provider import DeploymentProvider
from agc_controller.dataplane.settings import DataPlaneMesh, DataPlaneSettings
from agc_controller.mesh import (
    IstioCA,
    RootsConfigMap,
    TokenRequest,
    WorkloadCertificate,
    WorkloadIdentity,
    spiffe_id,
)
from agc_controller.mesh.support import MeshSupport
from agc_controller.mesh.verify import EndpointVerifier
from agc_controller.providers.base import Provider
from agc_controller.providers.local import LocalProvider
from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.providers.local.static import AccessLog, StaticSettings
from agc_controller.providers.memory import MemoryProvider
from agc_controller.runtime.metrics import record_arm_request, record_nginx_reload
from agc_controller.settings import LOCAL_DATAPLANE_MODES
from agc_controller.translate import TranslateSettings

log = structlog.get_logger(__name__)

PROVIDERS = ("local", "azure", "memory")


@attrs.frozen
class MeshOptions:
    """Istio mesh mTLS to backends in injected namespaces (docs/mesh.md)."""

    # the workload identity the controller obtains: with NGINX processes (the process
    # mode), the one they present; with data-plane pods, which each present their own
    # service account's, the one the controller checks mesh endpoints as
    namespace: str
    service_account: str
    # istiod's certificate service, and the name its serving certificate carries
    ca_address: str = "istiod.istio-system.svc:15012"
    ca_server_name: str = "istiod.istio-system.svc"
    trust_domain: str = "cluster.local"


def check_mesh(provider: str) -> None:
    """Raise ValueError unless `provider` serves mesh mTLS."""
    if provider != "local":
        raise ValueError(
            "mesh mTLS is served by the local provider's NGINX only: Application Gateway v2 "
            "cannot present an Istio workload certificate"
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
        check_mesh(name)
    if name == "local" and local.dataplane == "deployment":
        if api is None:
            raise ValueError("the local provider's deployment mode needs an API client")
        settings = local.deployment
        if local.mesh is not None:
            # each data-plane pod obtains its own certificate from the same istiod
            settings = attrs.evolve(
                settings,
                mesh=DataPlaneMesh(
                    ca_address=local.mesh.ca_address,
                    ca_server_name=local.mesh.ca_server_name,
                    trust_domain=local.mesh.trust_domain,
                ),
            )
        deployments = DeploymentProvider(
            api, controller_name=controller_name, settings=settings, requeue=requeue
        )
        deployments.start()
        try:
            async with _mesh_checks(
                local.mesh, api, deployments.mesh, deployments.use_mesh_certificate
            ):
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
        try:
            async with _mesh_checks(local.mesh, api, provider.mesh, provider.use_mesh_certificate):
                yield provider, local_settings
        finally:
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
    """Mesh mTLS for a local provider: the controller's workload identity and the
    endpoint checks made with it."""

    identity: WorkloadIdentity
    verifier: EndpointVerifier

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.identity.run(), name="mesh-identity")
            tasks.create_task(self.verifier.run(), name="mesh-verifier")


@asynccontextmanager
async def _mesh_checks(
    options: MeshOptions | None,
    api: client.ApiClient | None,
    mesh: MeshSupport,
    on_certificate: Callable[[WorkloadCertificate], Awaitable[None]],
) -> AsyncIterator[None]:
    """Obtain the certificate of `options`' identity and check mesh endpoints with it
    while inside (nothing when mesh mTLS is off)."""
    if options is None:
        yield
        return
    if api is None:
        raise ValueError("mesh mTLS needs an API client (tokens and the mesh's roots)")
    task = asyncio.create_task(mesh_for(options, api, mesh, on_certificate).run(), name="mesh")
    task.add_done_callback(lambda done: _mesh_stopped(done, mesh))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _mesh_stopped(task: asyncio.Task[None], mesh: MeshSupport) -> None:
    """The mesh task ended on its own: a bug. Said in the log and in the Gateways'
    MeshIdentity conditions, rather than mesh backends answering 503 in silence."""
    if task.cancelled() or (error := task.exception()) is None:
        return
    log.error("mesh_failed", error=repr(error), exc_info=error)
    mesh.problem = lambda: (
        f"the controller's mesh certificate and endpoint checks stopped ({error!r}); "
        "its log says more (mesh_failed), and a restart starts them again"
    )
    mesh.requeue_gateways()


def mesh_for(
    options: MeshOptions,
    api: client.ApiClient,
    mesh: MeshSupport,
    on_certificate: Callable[[WorkloadCertificate], Awaitable[None]],
) -> Mesh:
    """The workload identity of `options` (its service account's tokens, istiod's CA,
    the roots istiod publishes into that namespace; every renewal to
    `on_certificate`) and the checks on mesh endpoints made with it, wired into
    a provider's `mesh`."""
    clock = SystemClock()
    verifier = EndpointVerifier(
        trust_domain=options.trust_domain, clock=clock, on_change=mesh.requeue_gateways
    )
    identity = WorkloadIdentity(
        spiffe_id=spiffe_id(options.trust_domain, options.namespace, options.service_account),
        ca=IstioCA(options.ca_address, server_name=options.ca_server_name),
        token=TokenRequest(api, options.namespace, options.service_account),
        roots=RootsConfigMap(api, options.namespace),
        clock=clock,
        on_change=on_certificate,
        on_problem=mesh.requeue_gateways,
    )
    mesh.verifier = verifier
    mesh.problem = lambda: identity.problem
    return Mesh(identity=identity, verifier=verifier)
