"""A cluster with a real node, and the Helm chart installed onto it: what
tests/cluster and the in-cluster conformance run (devcluster.conformance
--in-cluster) both start.

- `build_node()` and `build_images()` run hack/node.sh and hack/images.sh (cached
  builds: the node's binaries, our two images as OCI archives);
- `RealCluster.start()`: etcd, kube-apiserver reachable from pods,
  kube-controller-manager, the Gateway API CRDs of a channel, and the node
  (devcluster/node.py: kubelet, containerd, kube-proxy, kube-scheduler) with
  the given images loaded; `stop()` undoes all of it and never raises;
- `install_chart()`: deploy/chart/agc-controller from this tree, run from our
  images (never pulled: no registry is reachable), `helm install --wait`.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from agc_controller.kube import api_client_from_kubeconfig
from devcluster.controlplane import ControlPlane, ControlPlaneBinaries
from devcluster.crds import install_gateway_api_crds
from devcluster.node import NODE_ADDRESS, Node, NodeBinaries
from devcluster.spawn import REPO_ROOT

CHART = REPO_ROOT / "deploy" / "chart" / "agc-controller"
# a fixed place, so that a run killed outright is cleaned up by the next one (and
# one node per host: Node locks it)
NODE_STATE_DIR = Path(tempfile.gettempdir()) / "agc-test-node"


def _script_lines(script: str) -> list[str]:
    """What a hack/ script prints on stdout (its progress goes to stderr, shown)."""
    done = subprocess.run(
        [str(REPO_ROOT / "hack" / script)], check=True, stdout=subprocess.PIPE, text=True
    )
    return done.stdout.strip().splitlines()


def build_node() -> tuple[Path, NodeBinaries]:
    """The testenv directory and the node's binaries (hack/node.sh)."""
    testenv, node_bin, pause = _script_lines("node.sh")[-3:]
    return Path(testenv), NodeBinaries(
        testenv_bin=Path(testenv) / "bin", node_bin=Path(node_bin), pause_archive=Path(pause)
    )


def build_images(script: str = "images.sh") -> dict[str, Path]:
    """Image reference → OCI archive, from a script printing "<reference> <archive>"
    lines: hack/images.sh (our images) by default."""
    images = {}
    for line in _script_lines(script):
        ref, archive = line.split()
        images[ref] = Path(archive)
    return images


@attrs.define
class RealCluster:
    """The control plane and one real node; start() once, stop() always."""

    testenv: Path
    node_binaries: NodeBinaries
    workdir: Path
    channel: str = "standard"
    plane: ControlPlane = attrs.field(init=False)
    node: Node = attrs.field(init=False)
    # etcd's data, on tmpfs: fsync on a shared disk is what a small host waits on
    etcd_dir: Path = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.etcd_dir = Path(tempfile.mkdtemp(prefix="agc-etcd-", dir="/dev/shm"))
        self.plane = ControlPlane(
            binaries=ControlPlaneBinaries.from_testenv(self.testenv),
            workdir=self.workdir,
            etcd_data_dir=self.etcd_dir,
            node_address=NODE_ADDRESS,
        )
        self.node = Node(plane=self.plane, binaries=self.node_binaries, state_dir=NODE_STATE_DIR)

    def start(self, images: Sequence[Path]) -> None:
        """Everything up, `images` (OCI archives) loaded, the node Ready."""
        self.plane.start()
        self.plane.start_controller_manager()
        asyncio.run(self._install_crds())
        self.node.start(images)

    def stop(self) -> None:
        self.node.stop()
        self.plane.stop()
        shutil.rmtree(self.etcd_dir, ignore_errors=True)

    def logs(self) -> str:
        """The tail of the node's and the control plane's logs, for a failure."""
        return f"{self.node.logs()}\n{self.plane.logs()}"

    async def _install_crds(self) -> None:
        async with await api_client_from_kubeconfig(self.plane.kubeconfig) as api:
            await install_gateway_api_crds(api, self.plane.binaries.crds, channel=self.channel)


def helm(kubeconfig: Path, *args: str) -> None:
    """helm (hack/helm.sh builds it) against `kubeconfig`; raises with helm's own
    error when it fails."""
    binary = _script_lines("helm.sh")[-1]
    done = subprocess.run(
        [binary, f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args[:2])} failed: {done.stderr.strip()}")


def image_values(refs: Iterable[str]) -> dict[str, str]:
    """The chart's values that run the controller and the data plane from our
    images (hack/images.sh's references), never pulled."""
    values: dict[str, str] = {}
    for ref in refs:
        repository, _, tag = ref.rpartition(":")
        prefix = {"agc-controller": "image", "agc-dataplane": "dataplane.image"}[
            repository.rsplit("/", 1)[-1]
        ]
        values |= {
            f"{prefix}.repository": repository,
            f"{prefix}.tag": tag,
            f"{prefix}.pullPolicy": "Never",
        }
    return values


def install_chart(
    kubeconfig: Path,
    *,
    release: str,
    namespace: str,
    values: Mapping[str, str],
    timeout: float = 180.0,
) -> None:
    """`helm install --wait` of this tree's chart with `values` (--set)."""
    helm(
        kubeconfig,
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--wait",
        f"--timeout={timeout:.0f}s",
        *[arg for k, v in values.items() for arg in ("--set", f"{k}={v}")],
    )
