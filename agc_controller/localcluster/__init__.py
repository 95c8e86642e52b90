"""A local Kubernetes control plane: etcd + kube-apiserver (+ kube-controller-manager).

Used by `agc-controller local` (the embedded default) and by the test suite.
Processes run from binaries that `hack/testenv.sh` builds from the Kubernetes
Go modules; etcd comes from Debian's `etcd-server`.
"""

from agc_controller.localcluster.controlplane import ControlPlane, ControlPlaneBinaries
from agc_controller.localcluster.crds import install_gateway_api_crds

__all__ = ["ControlPlane", "ControlPlaneBinaries", "install_gateway_api_crds"]
