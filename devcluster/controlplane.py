"""Run etcd, kube-apiserver and (on request) kube-controller-manager as child processes.

Invariants:
- Every port is chosen free on 127.0.0.1 at start, so parallel control planes on
  one machine never collide. The apiserver listens on loopback only, unless a
  real node's pods must reach it (`node_address`: then on every address, and it
  publishes `node_address` as the `kubernetes` Service's endpoint).
- Children die with us: each is started in its own session with PR_SET_PDEATHSIG,
  and `stop()` terminates them by PID (SIGTERM, then SIGKILL after a grace period).
- `start()` returns only when `/readyz` answers ok; a child that exits early
  raises `ControlPlaneError` carrying the tail of its log.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import yaml

from devcluster.pki import ClusterPki, client_certificate, ensure_cluster_pki

_SERVICE_CIDR = "10.96.0.0/16"
_SERVICE_CLUSTER_IP = "10.96.0.1"
_PR_SET_PDEATHSIG = 1
_STOP_GRACE_SECONDS = 10.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message says what to do next."""


@attrs.frozen
class ControlPlaneBinaries:
    """Where the control plane's programs and the Gateway API CRDs are."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    # a directory holding standard/ and experimental/ CRD manifests
    crds: Path
    # the kubectl of the same Kubernetes version, for people and tests
    kubectl: Path

    @property
    def kube_scheduler(self) -> Path:
        """Built for a real node only (`hack/testenv.sh node`): the node agent binds its pods."""
        return self.kube_apiserver.with_name("kube-scheduler")

    @classmethod
    def from_testenv(cls, testenv_dir: Path) -> ControlPlaneBinaries:
        """Binaries built by hack/testenv.sh into `testenv_dir`; etcd from PATH."""
        etcd = shutil.which("etcd")
        if etcd is None:
            raise ControlPlaneError(
                "etcd is not installed. Install Debian's etcd-server package "
                "(hack/install-deps.sh does it)."
            )
        binaries = cls(
            etcd=Path(etcd),
            kube_apiserver=testenv_dir / "bin" / "kube-apiserver",
            kube_controller_manager=testenv_dir / "bin" / "kube-controller-manager",
            crds=testenv_dir / "crds",
            kubectl=testenv_dir / "bin" / "kubectl",
        )
        for path in (
            binaries.kube_apiserver,
            binaries.kube_controller_manager,
            binaries.crds,
            binaries.kubectl,
        ):
            if not path.exists():
                raise ControlPlaneError(f"{path} is missing. Build it with `make testenv`.")
        return binaries


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# opened at import so the forked child only makes one foreign call, taking no locks
_LIBC = ctypes.CDLL(None, use_errno=True)


def spawn_logged(
    argv: list[str], log: Path, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` (environment `env`, default ours; in `cwd`) with its output appended to
    `log`, in a session of its own (a terminal's Ctrl-C reaches the parent only,
    which stops children in order), and ended when its parent dies."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - one prctl(2) call, lock-free
        )


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it when its parent dies (prctl PDEATHSIG)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@attrs.define
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


def tail(path: Path, *, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


@attrs.define
class ControlPlane:
    """One local control plane. State lives in `workdir` (PKI, logs, kubeconfig).

    `etcd_data_dir` may point at tmpfs for tests; by default it lives in `workdir`,
    so a control plane restarted on the same workdir keeps its objects.
    """

    binaries: ControlPlaneBinaries
    workdir: Path
    etcd_data_dir: Path | None = None
    # an address of this host that a real node's pods reach it at (devcluster.node)
    node_address: str | None = None
    # the children we started, in start order (stopped in reverse)
    _children: list[_Child] = attrs.field(factory=list, init=False)
    _pki: ClusterPki | None = attrs.field(default=None, init=False)
    _apiserver_port: int = attrs.field(default=0, init=False)
    _etcd_url: str = attrs.field(default="", init=False)

    @property
    def kubeconfig(self) -> Path:
        """An admin kubeconfig (client certificate in system:masters)."""
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._apiserver_port}"

    @property
    def pki(self) -> ClusterPki:
        if self._pki is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._pki

    def start(self, *, timeout: float = 60.0) -> None:
        """Start etcd and kube-apiserver and wait until the apiserver is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self._pki = ensure_cluster_pki(
            self.workdir / "pki",
            service_cluster_ip=_SERVICE_CLUSTER_IP,
            node_address=self.node_address,
        )
        etcd_port, etcd_peer_port = free_port(), free_port()
        self._apiserver_port = free_port()
        data_dir = self.etcd_data_dir or self.workdir / "etcd"
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=agc-local",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-cluster=agc-local=http://127.0.0.1:{etcd_peer_port}",
                "--logger=zap",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", timeout, lambda: _http_ok(f"{etcd_url}/health", None))
        self._etcd_url = etcd_url
        self._start_apiserver()
        self._write_kubeconfig(self.kubeconfig, self.pki.admin.cert, self.pki.admin.key, "admin")
        self._wait("kube-apiserver", timeout, self._apiserver_ready)

    def restart_apiserver(self, *, timeout: float = 60.0) -> None:
        """Kill kube-apiserver and start it again on the same port (etcd keeps the data).

        Clients see their watches break and requests refused meanwhile, as in an
        apiserver crash. Call it from the thread that started the control plane:
        children die with the thread that spawned them (PR_SET_PDEATHSIG).
        """
        child = next(c for c in self._children if c.name == "kube-apiserver")
        child.process.kill()
        child.process.wait()
        self._children.remove(child)
        self._start_apiserver()
        self._wait("kube-apiserver", timeout, self._apiserver_ready)

    def _start_apiserver(self) -> None:
        etcd_url = self._etcd_url
        pki = self.pki
        # a real node's kubelet (node_address) authenticates the apiserver by a client
        # certificate for pods/log, exec and port-forward; admin, as kubeadm makes it
        kubelet_client = []
        if self.node_address:
            pair = client_certificate(
                pki, "apiserver-kubelet-client", user="kube-apiserver", group="system:masters"
            )
            kubelet_client = [
                f"--kubelet-client-certificate={pair.cert}",
                f"--kubelet-client-key={pair.key}",
            ]
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={'0.0.0.0' if self.node_address else '127.0.0.1'}",
                f"--advertise-address={self.node_address or '127.0.0.1'}",
                f"--secure-port={self._apiserver_port}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={_SERVICE_CIDR}",
                "--allow-privileged=true",
                # one apiserver: without pods to reach it, nothing publishes its address;
                # with them, the kubernetes Service's endpoint is node_address
                f"--endpoint-reconciler-type={'lease' if self.node_address else 'none'}",
                # a node's InternalIP is its only reachable address (pods/log, exec)
                "--kubelet-preferred-address-types=InternalIP",
                *kubelet_client,
                "--v=1",
            ],
        )

    def client_kubeconfig(self, name: str, *, user: str, group: str | None = None) -> Path:
        """A kubeconfig for `user` (in `group`), with a certificate of its own."""
        pair = client_certificate(self.pki, name, user=user, group=group)
        path = self.workdir / f"{name}.kubeconfig"
        self._write_kubeconfig(path, pair.cert, pair.key, user)
        return path

    def start_controller_manager(self, *, timeout: float = 30.0) -> None:
        """Start kube-controller-manager (deployments, replicasets, endpointslices, ...)."""
        if any(c.name == "kube-controller-manager" for c in self._children):
            return
        pki = self.pki
        kubeconfig = self.workdir / "controller-manager.kubeconfig"
        self._write_kubeconfig(
            kubeconfig,
            pki.controller_manager.cert,
            pki.controller_manager.key,
            "system:kube-controller-manager",
        )
        port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca.cert}",
                f"--cluster-signing-cert-file={pki.ca.cert}",
                f"--cluster-signing-key-file={pki.ca.key}",
                f"--service-cluster-ip-range={_SERVICE_CIDR}",
                "--v=1",
            ],
        )
        self._wait(
            "kube-controller-manager",
            timeout,
            lambda: _http_ok(f"https://127.0.0.1:{port}/healthz", _insecure_context()),
        )

    def start_scheduler(self, *, timeout: float = 30.0) -> None:
        """Start kube-scheduler (for a real node: the node agent binds its pods itself)."""
        if any(c.name == "kube-scheduler" for c in self._children):
            return
        kubeconfig = self.client_kubeconfig("kube-scheduler", user="system:kube-scheduler")
        port = free_port()
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self._wait(
            "kube-scheduler",
            timeout,
            lambda: _http_ok(f"https://127.0.0.1:{port}/healthz", _insecure_context()),
        )

    def stop(self) -> None:
        """Stop every child, newest first: SIGTERM, then SIGKILL after a grace period."""
        while self._children:
            child = self._children.pop()
            if child.process.poll() is None:
                child.process.terminate()
                try:
                    child.process.wait(_STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()

    def logs(self, *, lines: int = 60) -> str:
        """The tail of every child's log, for a failed test or a failed start."""
        parts = []
        for log in sorted((self.workdir / "logs").glob("*.log")):
            parts.append(f"==> {log.name} <==\n{tail(log, lines=lines)}")
        return "\n".join(parts)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.workdir / "logs" / f"{name}.log"
        self._children.append(_Child(name=name, process=spawn_logged(argv, log), log=log))

    def _wait(self, name: str, timeout: float, ready: Callable[[], bool]) -> None:
        child = next(c for c in reversed(self._children) if c.name == name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                self.stop()
                raise ControlPlaneError(
                    f"{name} exited with code {child.process.returncode} while starting; "
                    f"its log ({child.log}) ends with:\n{tail(child.log)}"
                )
            if ready():
                return
            time.sleep(0.1)
        self.stop()
        raise ControlPlaneError(
            f"{name} was not ready within {timeout:.0f}s; its log ({child.log}) ends with:\n"
            f"{tail(child.log)}"
        )

    def _apiserver_ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        context.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        return _http_ok(f"{self.server}/readyz", context)

    def _write_kubeconfig(self, path: Path, cert: Path, key: Path, user: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "agc-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki.ca.cert),
                    },
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
            ],
            "contexts": [{"name": "agc-local", "context": {"cluster": "agc-local", "user": user}}],
            "current-context": "agc-local",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)


def _insecure_context() -> ssl.SSLContext:
    # kube-controller-manager serves /healthz with a self-signed certificate it makes itself
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _http_ok(url: str, context: ssl.SSLContext | None) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(url, timeout=2, context=context) as response,
    ):
        return bool(response.status == 200)
    return False
