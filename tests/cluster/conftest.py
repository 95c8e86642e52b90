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

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from devcluster.cluster import RealCluster, build_images, build_node
from devcluster.controlplane import ControlPlane
from devcluster.node import Node

_clusters: list[RealCluster] = []


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


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    testenv, node_binaries = build_node()
    images = build_images()
    real = RealCluster(
        testenv=testenv,
        node_binaries=node_binaries,
        workdir=tmp_path_factory.mktemp("cluster-control-plane"),
    )
    try:
        real.start(list(images.values()))
        _clusters.append(real)
        yield Cluster(
            plane=real.plane,
            node=real.node,
            images={ref.rsplit("/", 1)[-1].split(":")[0]: ref for ref in images},
        )
    finally:
        real.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and _clusters and "cluster" in getattr(item, "fixturenames", ()):
        report.sections.append(("node and control plane logs", _clusters[-1].logs()))
