"""What both local providers keep for mesh mTLS (mesh/support.py): builds that wait
for endpoints never checked, the Gateways tried again when verdicts or the
certificate change, and the MeshIdentity condition of each provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import attrs
import pytest
from kubernetes_asyncio import client

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.dataplane.config import Report
from agc_controller.dataplane.provider import DeploymentProvider
from agc_controller.dataplane.settings import DataPlaneSettings
from agc_controller.factory import _mesh_stopped
from agc_controller.mesh import WorkloadCertificate
from agc_controller.mesh.support import MeshSupport, Presented
from agc_controller.mesh.verify import EndpointVerifier
from agc_controller.translate.model import Endpoint
from tests.unit.test_mesh import CA
from tests.unit.test_mesh_verify import GATEWAY, Clock, gateway_certificate

WEB = ObjectKey("Gateway", "web", "gw")
SHOP = ObjectKey("Gateway", "shop", "gw")


@attrs.define
class Requeued:
    keys: list[ObjectKey] = attrs.field(factory=list)

    def __call__(self, key: ObjectKey) -> None:
        self.keys.append(key)


def endpoint(account: str) -> Endpoint:
    return Endpoint(address="127.0.0.1", port=1, service_account=account)


@attrs.define
class Settling(EndpointVerifier):
    """A verifier whose `settle` changes verdicts or not, as told."""

    changes: bool = False
    settled: int = 0

    def unchecked(self) -> bool:
        return self.settled == 0

    async def settle(self) -> bool:
        self.settled += 1
        return self.changes


@pytest.mark.parametrize(("changes", "builds"), [(True, 2), (False, 1)])
async def test_a_build_is_done_again_when_settling_unchecked_endpoints_changed_verdicts(
    changes: bool, builds: int
) -> None:
    verifier = Settling(trust_domain="cluster.local", clock=Clock(), changes=changes)
    mesh = MeshSupport(requeue=Requeued(), verifier=verifier)
    calls: list[EndpointVerifier | None] = []
    assert await mesh.build(lambda v: calls.append(v) or len(calls)) == builds
    assert calls == [verifier] * builds
    assert verifier.settled == 1


async def test_without_a_verifier_a_build_gets_none_once() -> None:
    calls: list[EndpointVerifier | None] = []
    assert await MeshSupport(requeue=Requeued()).build(lambda v: calls.append(v) or 1) == 1
    assert calls == [None]


def test_gateways_with_mesh_backends_are_tried_again_and_forgotten() -> None:
    requeued = Requeued()
    verifier = EndpointVerifier(trust_domain="cluster.local", clock=Clock())
    mesh = MeshSupport(requeue=requeued, verifier=verifier)
    mesh.used(WEB, uses_mesh=True, endpoints=lambda: [endpoint("web/a")])
    mesh.used(SHOP, uses_mesh=True, endpoints=lambda: [endpoint("shop/b")])
    mesh.requeue_gateways()
    assert requeued.keys == [SHOP, WEB]
    mesh.used(SHOP, uses_mesh=False, endpoints=tuple)
    mesh.forget(WEB)
    requeued.keys.clear()
    mesh.requeue_gateways()
    assert requeued.keys == []


def test_a_new_certificate_is_what_endpoints_are_checked_with_and_requeues() -> None:
    requeued = Requeued()
    verifier = EndpointVerifier(trust_domain="cluster.local", clock=Clock())
    mesh = MeshSupport(requeue=requeued, verifier=verifier)
    mesh.used(WEB, uses_mesh=True, endpoints=tuple)
    certificate = gateway_certificate(CA("mesh"))
    mesh.use_certificate(certificate)
    assert mesh.certificate is certificate
    assert requeued.keys == [WEB]
    # the verifier can now make a handshake (a context from the certificate)
    assert verifier._context is not None


def test_the_mesh_identity_condition_says_who_presents_what_or_why_not() -> None:
    mesh = MeshSupport(requeue=Requeued())
    pending = mesh.condition(None, None, who="the gateway")
    assert (pending.type, pending.status, pending.reason) == (c.MESH_IDENTITY, False, c.R_PENDING)
    down = mesh.condition(None, "istiod unreachable", who="the gateway")
    assert (down.status, down.reason) == (False, c.R_CERTIFICATE_AUTHORITY_UNAVAILABLE)
    assert down.message.endswith("signs the gateway's workload certificate: istiod unreachable")
    presented = Presented(GATEWAY, "2030-01-01T00:00:00Z")
    issued = mesh.condition(presented, None, who="data-plane pod gw-1")
    assert (issued.status, issued.reason) == (True, c.R_CERTIFICATE_ISSUED)
    assert issued.message.startswith(f"Data-plane pod gw-1 presents {GATEWAY} to backends")
    failing = mesh.condition(presented, "token refused", who="the gateway")
    assert (failing.status, failing.reason) == (True, c.R_RENEWAL_FAILING)
    assert failing.message.endswith("renewing it fails: token refused")


@pytest.fixture
async def provider() -> AsyncIterator[DeploymentProvider]:
    """A DeploymentProvider that is never started: no call reaches an apiserver."""
    async with client.ApiClient() as api:
        yield DeploymentProvider(
            api,
            controller_name="agc-controller.io/gateway-controller",
            settings=DataPlaneSettings(),
            requeue=Requeued(),
        )


def report(**mesh: str) -> Report:
    return Report(version="v1", accepted=True, pod="gw-1", **mesh)


def certificate() -> WorkloadCertificate:
    return gateway_certificate(CA("mesh"))


async def test_in_a_cluster_the_condition_names_the_pods_own_identity(
    provider: DeploymentProvider,
) -> None:
    provider.mesh.use_certificate(certificate())
    pod_id = "spiffe://cluster.local/ns/web/sa/gw"
    issued = provider._mesh_identity(
        report(mesh_identity=pod_id, mesh_expires="2030-01-01T00:00:00Z")
    )
    assert (issued.status, issued.reason) == (True, c.R_CERTIFICATE_ISSUED)
    assert f"Data-plane pod gw-1 presents {pod_id}" in issued.message
    waiting = provider._mesh_identity(report(mesh_problem="no istio-ca-root-cert"))
    assert (waiting.status, waiting.reason) == (False, c.R_CERTIFICATE_AUTHORITY_UNAVAILABLE)
    assert "data-plane pod gw-1's workload certificate: no istio-ca-root-cert" in waiting.message


async def test_in_a_cluster_without_the_controllers_certificate_nothing_is_checked(
    provider: DeploymentProvider,
) -> None:
    provider.mesh.problem = lambda: "istiod unreachable"
    # the pod's own certificate does not help: nobody can check the endpoints
    condition = provider._mesh_identity(
        report(mesh_identity="spiffe://cluster.local/ns/web/sa/gw", mesh_expires="2030")
    )
    assert (condition.status, condition.reason) == (False, c.R_CERTIFICATE_AUTHORITY_UNAVAILABLE)
    assert "the controller's workload certificate: istiod unreachable" in condition.message


async def test_mesh_checks_that_stop_on_their_own_say_so_in_the_conditions() -> None:
    requeued = Requeued()
    mesh = MeshSupport(requeue=requeued)
    mesh.used(WEB, uses_mesh=True, endpoints=tuple)

    async def broken() -> None:
        raise RuntimeError("a bug")

    task = asyncio.create_task(broken())
    await asyncio.wait([task])
    _mesh_stopped(task, mesh)
    problem = mesh.problem()
    assert problem is not None
    assert "stopped (RuntimeError('a bug'))" in problem
    assert requeued.keys == [WEB]
    # cancelled at shutdown: nothing to say
    quiet = MeshSupport(requeue=Requeued())
    stopped = asyncio.create_task(asyncio.sleep(10))
    stopped.cancel()
    await asyncio.wait([stopped])
    _mesh_stopped(stopped, quiet)
    assert quiet.problem() is None


async def test_in_a_cluster_the_controllers_renewal_problem_is_told_beside_the_pods(
    provider: DeploymentProvider,
) -> None:
    provider.mesh.use_certificate(certificate())
    provider.mesh.problem = lambda: "istiod unreachable"
    pod_id = "spiffe://cluster.local/ns/web/sa/gw"
    condition = provider._mesh_identity(report(mesh_identity=pod_id, mesh_expires="2030"))
    assert (condition.status, condition.reason) == (True, c.R_RENEWAL_FAILING)
    assert condition.message.endswith(
        "renewing it fails: the controller's, which mesh endpoints are checked with: "
        "istiod unreachable"
    )
