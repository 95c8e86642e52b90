"""A real cluster for the in-cluster tests: the test control plane with a real node.

- `cluster`: etcd, kube-apiserver (reachable from pods), kube-controller-manager,
  kube-scheduler, the Gateway API CRDs (standard channel), and a node running
  kubelet, containerd + runc, a CNI bridge and kube-proxy (devcluster/node.py)
  with the controller and data-plane images built from deploy/Dockerfile
  (hack/images.sh) loaded into containerd.
The node is host-wide (a bridge, iptables rules) and needs root, as the e2e
tests do. When a test fails, the tail of the node's and the control plane's logs
is attached to the report.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from agc_controller.kube import api_client_from_kubeconfig
from devcluster import ControlPlane, ControlPlaneBinaries, install_gateway_api_crds
from devcluster.node import NODE_ADDRESS, Node, NodeBinaries, archive_image

REPO = Path(__file__).resolve().parents[2]
_nodes: list[Node] = []


@attrs.frozen
class Cluster:
    plane: ControlPlane
    node: Node
    # image name (agc-controller, agc-dataplane) → its reference in containerd
    images: dict[str, str]

    def kubectl(self, *args: str, manifest: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [str(self.plane.binaries.kubectl), f"--kubeconfig={self.plane.kubeconfig}", *args],
            input=manifest,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def get(self, *args: str) -> dict[str, Any]:
        got: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json"))
        return got


def _script_lines(script: str, *args: str) -> list[str]:
    out = subprocess.run(
        [str(REPO / "hack" / script), *args], check=True, stdout=subprocess.PIPE, text=True
    )
    return out.stdout.strip().splitlines()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    testenv, node_bin, pause = _script_lines("node.sh")[-3:]
    archives = [Path(line.split()[1]) for line in _script_lines("images.sh")]
    etcd_dir = Path(tempfile.mkdtemp(prefix="agc-etcd-", dir="/dev/shm"))
    plane = ControlPlane(
        binaries=ControlPlaneBinaries.from_testenv(Path(testenv)),
        workdir=tmp_path_factory.mktemp("cluster-control-plane"),
        etcd_data_dir=etcd_dir,
        node_address=NODE_ADDRESS,
    )
    node = Node(
        plane=plane,
        binaries=NodeBinaries(
            testenv_bin=Path(testenv) / "bin", node_bin=Path(node_bin), pause_archive=Path(pause)
        ),
        # a fixed place, so that a run killed outright is cleaned up by the next one
        state_dir=Path(tempfile.gettempdir()) / "agc-test-node",
    )
    try:
        plane.start()
        plane.start_controller_manager()
        asyncio.run(_install_crds(plane))
        node.start(archives)
        _nodes.append(node)
        yield Cluster(
            plane=plane,
            node=node,
            images={
                archive_image(a).split("/")[-1].split(":")[0]: archive_image(a) for a in archives
            },
        )
    finally:
        node.stop()
        plane.stop()
        shutil.rmtree(etcd_dir, ignore_errors=True)


async def _install_crds(plane: ControlPlane) -> None:
    api = await api_client_from_kubeconfig(plane.kubeconfig)
    async with api:
        await install_gateway_api_crds(api, plane.binaries.crds, channel="standard")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and _nodes and "cluster" in getattr(item, "fixturenames", ()):
        report.sections.append(("node logs", _nodes[-1].logs()))
        report.sections.append(("control plane logs", _nodes[-1].plane.logs()))
