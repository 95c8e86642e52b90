"""Session-wide fixtures: one real control plane per test session.

- `control_plane`: etcd + kube-apiserver on free loopback ports, RBAC on, with the
  Gateway API CRDs installed (channel from $AGC_GATEWAY_API_CHANNEL, default standard).
- `controller_manager`: the same control plane plus kube-controller-manager.
- `kube`: a kubernetes-asyncio ApiClient (admin) per test; `namespace`: a fresh one per test.
When a test that used the control plane fails, the tail of its logs is attached
to the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from agc_controller.kube import api_client_from_kubeconfig
from devcluster import (
    ControlPlane,
    ControlPlaneBinaries,
    install_gateway_api_crds,
    install_own_crds,
)

REPO = Path(__file__).resolve().parent.parent
_started: list[ControlPlane] = []


@pytest.fixture(scope="session")
def testenv_dir() -> Path:
    """The directory `hack/testenv.sh` built (it is a no-op when cached)."""
    if env := os.environ.get("AGC_TESTENV"):
        return Path(env)
    out = subprocess.run(
        [str(REPO / "hack" / "testenv.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def control_plane(
    testenv_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    # etcd on tmpfs: fsync there is free, and nothing needs to outlive the session
    shm = Path("/dev/shm")
    etcd_dir = Path(
        tempfile.mkdtemp(prefix="agc-etcd-", dir=shm if os.access(shm, os.W_OK) else None)
    )
    plane = ControlPlane(
        binaries=ControlPlaneBinaries.from_testenv(testenv_dir),
        workdir=tmp_path_factory.mktemp("control-plane"),
        etcd_data_dir=etcd_dir,
    )
    plane.start()
    _started.append(plane)
    try:
        asyncio.run(_install_crds(plane))
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(etcd_dir, ignore_errors=True)


async def _install_crds(plane: ControlPlane) -> None:
    api = await api_client_from_kubeconfig(plane.kubeconfig)
    async with api:
        await install_gateway_api_crds(api, plane.binaries.crds, channel=gateway_api_channel())
        await install_own_crds(api)


@pytest.fixture(scope="session")
def controller_manager(control_plane: ControlPlane) -> ControlPlane:
    control_plane.start_controller_manager()
    return control_plane


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    api = await api_client_from_kubeconfig(control_plane.kubeconfig)
    async with api:
        yield api


@contextlib.asynccontextmanager
async def new_namespace(kube: client.ApiClient, prefix: str) -> AsyncIterator[str]:
    """A namespace named `<prefix>-<random>` for the block, deleted after it."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        await core.delete_namespace(name)


@pytest.fixture
async def namespace(kube: client.ApiClient) -> AsyncIterator[str]:
    async with new_namespace(kube, "t") as name:
        yield name


def gateway_api_channel() -> str:
    return os.environ.get("AGC_GATEWAY_API_CHANNEL", "standard")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One session has one control plane and so one CRD channel: run the tests
    marked `experimental_channel` only with the experimental CRDs, the others only
    without them. `make test` runs both passes. Deselected, not skipped: each test
    runs in exactly one pass."""
    experimental = gateway_api_channel() == "experimental"
    keep, drop = [], []
    for item in items:
        (
            keep
            if (item.get_closest_marker("experimental_channel") is not None) == experimental
            else drop
        ).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and _started and "control_plane" in getattr(item, "fixturenames", ()):
        report.sections.append(("control plane logs", _started[-1].logs()))
