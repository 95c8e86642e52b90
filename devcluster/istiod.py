"""istiod against the local control plane: the mesh CA for the mesh tests.

`hack/istiod.sh` builds `pilot-discovery` from the istio.io/istio Go module.
Run against our kube-apiserver (kubeconfig, POD_NAMESPACE=istio-system) it
does what it does in a cluster: makes its self-signed root CA (the
`istio-ca-secret` Secret), publishes the roots into every namespace as the
`istio-ca-root-cert` ConfigMap, and signs workload CSRs on its secure gRPC
port after a TokenReview of the caller's service-account token. Every port is
a free one on 127.0.0.1 except that secure port (the CA, Istio's 15012), which
binds to `secure_address`: 127.0.0.1 for the process data plane, the node's
address (devcluster.node.NODE_ADDRESS) when pods on a real node must reach it.
Its working directory is its own, because it writes files relative to it.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import attrs

from devcluster.controlplane import ControlPlane, free_port, spawn_logged, tail
from devcluster.spawn import REPO_ROOT

NAMESPACE = "istio-system"
SERVER_NAME = f"istiod.{NAMESPACE}.svc"


class IstiodError(RuntimeError):
    pass


def build_istiod() -> Path:
    """The pilot-discovery binary hack/istiod.sh builds (cached: a no-op when built)."""
    built = subprocess.run(
        [str(REPO_ROOT / "hack" / "istiod.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(built.stdout.strip().splitlines()[-1])


@attrs.define
class Istiod:
    plane: ControlPlane
    binary: Path
    workdir: Path
    # the address the certificate service binds to (every other port is on 127.0.0.1)
    secure_address: str = "127.0.0.1"
    # host:port of the certificate service (Istio's 15012), on secure_address
    ca_address: str = ""
    _process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "istiod.log"

    def start(self, *, timeout: float = 90.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        kubectl = [str(self.plane.binaries.kubectl), f"--kubeconfig={self.plane.kubeconfig}"]
        subprocess.run(
            [*kubectl, "create", "namespace", NAMESPACE],
            capture_output=True,
            check=False,
        )
        ports = {name: free_port() for name in ("http", "https", "grpc", "secure", "monitoring")}
        self.ca_address = f"{self.secure_address}:{ports['secure']}"
        env = {
            **os.environ,
            "POD_NAMESPACE": NAMESPACE,
            "POD_NAME": "istiod-local",
            "REVISION": "default",
            "CLUSTER_ID": "Kubernetes",
            "JWT_POLICY": "third-party-jwt",
            "PILOT_CERT_PROVIDER": "istiod",
            "ISTIOD_CUSTOM_HOST": SERVER_NAME,
        }
        argv = [
            str(self.binary),
            "discovery",
            f"--kubeconfig={self.plane.kubeconfig}",
            f"--httpAddr=127.0.0.1:{ports['http']}",
            f"--httpsAddr=127.0.0.1:{ports['https']}",
            f"--grpcAddr=127.0.0.1:{ports['grpc']}",
            f"--secureGRPCAddr={self.ca_address}",
            f"--monitoringAddr=127.0.0.1:{ports['monitoring']}",
            "--ctrlz_port=0",
            "--domain=cluster.local",
        ]
        self._process = spawn_logged(argv, self.log, env=env, cwd=self.workdir)
        ready = f"http://127.0.0.1:{ports['http']}/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise IstiodError(
                    f"istiod exited with code {self._process.returncode}; its log ends with:\n"
                    f"{tail(self.log)}"
                )
            if _ok(ready):
                return
            time.sleep(0.2)
        self.stop()
        raise IstiodError(
            f"istiod was not ready within {timeout:.0f}s; its log ends with:\n{tail(self.log)}"
        )

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
