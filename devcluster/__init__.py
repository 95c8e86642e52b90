"""The dev cluster: a local Kubernetes to run the controller against, off the product.

A local control plane (etcd + kube-apiserver + kube-controller-manager, from
binaries that `hack/testenv.sh` builds from the Kubernetes Go modules; etcd from
Debian's `etcd-server`), a node agent that runs pods as local processes, example
backends in a network namespace, and `python -m devcluster`, the embedded
default that `make run` starts. Used by `make run`, the test suite and the
conformance runner.

Invariants:
- devcluster may import agc_controller; agc_controller never imports devcluster
  (tests/unit/test_packaging.py checks both that and that the wheel leaves it out).
- devcluster is not installed: its modules run as processes only through
  `devcluster.spawn`, which puts the repository root on their PYTHONPATH.
"""

from devcluster.controlplane import ControlPlane, ControlPlaneBinaries
from devcluster.crds import install_gateway_api_crds, install_own_crds

__all__ = [
    "ControlPlane",
    "ControlPlaneBinaries",
    "install_gateway_api_crds",
    "install_own_crds",
]
