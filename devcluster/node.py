"""A real Kubernetes node for the tests: kubelet, containerd + runc, a CNI bridge, kube-proxy.

Pods on it run from images (hack/images.sh builds ours), in containers, with the
securityContext, probes, volumes and termination a cluster gives them; the node
agent (devcluster.nodeagent) stays for the conformance suite, whose pods are
processes.

What this host kind needs (cgroup v1, no systemd, no registry):
- kubelet: `failCgroupV1: false`, the cgroupfs driver, no per-QoS cgroups and no
  node-allocatable enforcement, swap allowed, eviction only when the disk is
  nearly full (the host's disk is shared), ports of its own;
- containerd: the overlayfs snapshotter, the sandbox image pinned to our pause
  image, `restrict_oom_score_adj` (the host refuses lowering oom_score_adj),
  runc by path, pod network namespaces under its state directory (so teardown
  finds every one);
- CNI: Debian's bridge, host-local and portmap plugins on a bridge of ours whose
  address (NODE_ADDRESS) is the node's InternalIP, the pods' gateway, and where
  pods reach the apiserver (ControlPlane.node_address);
- kube-proxy in iptables mode: pods reach the apiserver through the `kubernetes`
  Service, and this host reaches every Service at its ClusterIP;
- images come from OCI archives imported into containerd: no registry.

Invariants:
- One node per host at a time (a lock on the state directory): the bridge, the
  subnet and the iptables chains are host-wide. A host with Kubernetes chains of
  someone else's is refused rather than cleaned.
- `start()` first removes what a killed run left: its processes (found by the
  state directory in their command line), mounts, network namespaces, the
  bridge and the KUBE-* chains.
- `stop()` stops and removes every pod through the CRI (crictl: CNI releases
  each address), then stops kubelet, containerd and kube-proxy and removes the
  iptables chains, the bridge and the state directory. It is best effort and
  never raises: it runs in a `finally`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import yaml

from devcluster.controlplane import ControlPlane, free_port, spawn_logged, tail

NODE_NAME = "agc-node"
BRIDGE = "agcnode0"
# the bridge's address: the node's InternalIP and the pods' gateway; away from
# the node agent's 10.214.0.0/16 and its tests' 10.215.x.0/24
NODE_ADDRESS = "10.216.0.1"
POD_SUBNET = "10.216.0.0/24"
# Addresses a Gateway on the node may request (the chart's dataplane.staticAddresses in
# the tests): its Service's external IPs, which kube-proxy takes on this host; routed
# to the bridge, so that nothing sent to one of them ever leaves the host
STATIC_SUBNET = "10.216.1.0/24"
CNI_PLUGINS = Path("/usr/lib/cni")
_IPTABLES_TABLES = ("filter", "nat", "mangle")
_STOP_GRACE_SECONDS = 10.0


class NodeError(RuntimeError):
    """The node could not be started; the message says what to do next."""


@attrs.frozen
class NodeBinaries:
    """kubelet and kube-proxy (the testenv's bin/), and containerd, runc, crictl and
    the pause image (hack/node.sh's output)."""

    testenv_bin: Path
    node_bin: Path
    pause_archive: Path

    def path(self, name: str) -> Path:
        for directory in (self.node_bin, self.testenv_bin):
            if (directory / name).exists():
                return directory / name
        raise NodeError(f"{name} is not in {self.node_bin} or {self.testenv_bin}: run hack/node.sh")


def archive_image(archive: Path) -> str:
    """The image reference an OCI archive holds (what containerd names it on import)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise NodeError(f"{archive} has no index.json: not an OCI archive")
        index = json.load(member)
    ref: str = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    return ref


@attrs.define
class Node:
    """One real node joined to `plane`, which must run with node_address=NODE_ADDRESS."""

    plane: ControlPlane
    binaries: NodeBinaries
    state_dir: Path
    _children: list[tuple[str, subprocess.Popen[bytes]]] = attrs.field(factory=list, init=False)
    _lock: IO[bytes] | None = attrs.field(default=None, init=False)

    @property
    def socket(self) -> Path:
        return self.state_dir / "containerd" / "containerd.sock"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def start(self, images: Sequence[Path], *, timeout: float = 90.0) -> None:
        """Start the node with `images` (OCI archives) loaded and wait until it is Ready."""
        if self.plane.node_address != NODE_ADDRESS:
            raise NodeError(f"the control plane must run with node_address={NODE_ADDRESS}")
        self.state_dir.parent.mkdir(parents=True, exist_ok=True)
        lock = self.state_dir.with_name(self.state_dir.name + ".lock").open("wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise NodeError(
                f"another test node runs on this host ({self.state_dir}); one at a time"
            ) from None
        if not self.state_dir.exists() and _kube_chains():
            lock.close()
            raise NodeError(
                "this host has Kubernetes iptables chains (KUBE-*) that no test node left: "
                "it looks like a Kubernetes node. The test node would replace them; run the "
                "tests on another machine."
            )
        self._lock = lock
        self._remove_leftovers()
        try:
            self._start(images, timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, images: Sequence[Path], timeout: float) -> None:
        for sub in ("containerd", "kubelet", "cni", "logs"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_ADDRESS}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        _run("ip", "route", "add", STATIC_SUBNET, "dev", BRIDGE)
        self._spawn(
            "containerd",
            [str(self.binaries.path("containerd")), "--config", str(self._containerd_config())],
        )
        self._wait("containerd", timeout, self.socket.exists)
        for archive in (self.binaries.pause_archive, *images):
            self._ctr("images", "import", "--local", "--snapshotter", "overlayfs", str(archive))
        kubelet_config = self._kubelet_config()
        kubeconfig = self.plane.client_kubeconfig(
            "kubelet", user=f"system:node:{NODE_NAME}", group="system:nodes"
        )
        self._spawn(
            "kubelet",
            [
                str(self.binaries.path("kubelet")),
                f"--config={kubelet_config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.state_dir / 'kubelet'}",
                f"--cert-dir={self.state_dir / 'kubelet' / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_ADDRESS}",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-proxy",
            [
                str(self.binaries.path("kube-proxy")),
                f"--config={self._kube_proxy_config()}",
                "--v=1",
            ],
        )
        self.plane.start_scheduler()
        self._wait("kubelet", timeout, self._node_ready)

    def stop(self) -> None:
        """Stop every pod, then the node's processes; remove what it made (module doc).
        A node that did not start (another held the host) has nothing to stop."""
        if self._lock is None:
            return
        kubelet = next((p for name, p in self._children if name == "kubelet"), None)
        if kubelet is not None:
            _terminate(kubelet)
        if self.socket.exists():
            crictl = [
                str(self.binaries.path("crictl")),
                f"--runtime-endpoint=unix://{self.socket}",
                "--timeout=30s",
            ]
            pods = subprocess.run(
                [*crictl, "pods", "-q"], capture_output=True, text=True, check=False
            ).stdout.split()
            for pod in pods:
                subprocess.run([*crictl, "stopp", pod], capture_output=True, check=False)
                subprocess.run([*crictl, "rmp", "--force", pod], capture_output=True, check=False)
        while self._children:
            _terminate(self._children.pop()[1])
        self._remove_leftovers()
        self._lock.close()
        self._lock = None

    def logs(self, *, lines: int = 60) -> str:
        """The tail of each of the node's logs, for a failed test."""
        return "\n".join(
            f"==> {log.name} <==\n{tail(log, lines=lines)}"
            for log in sorted(self.logs_dir.glob("*.log"))
        )

    def _remove_leftovers(self) -> None:
        marker = str(self.state_dir)
        for pid in _pids():
            with contextlib.suppress(OSError):
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
        # the containers of a killed run: their shims are gone, their cgroups are not
        # (containerd's k8s.io cgroup, on a cgroup v1 or v2 host)
        for cgroup in (Path("/sys/fs/cgroup/pids/k8s.io"), Path("/sys/fs/cgroup/k8s.io")):
            for procs in cgroup.glob("*/cgroup.procs"):
                for task in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(task), signal.SIGKILL)
        for mount in sorted(_mounts_under(self.state_dir), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        _remove_kube_chains()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _containerd_config(self) -> Path:
        root = self.state_dir / "containerd"
        runc = self.binaries.path("runc")
        pause = archive_image(self.binaries.pause_archive)
        config = f"""version = 3
root = '{root / "root"}'
state = '{root / "state"}'
[grpc]
  address = '{self.socket}'
[ttrpc]
  address = '{self.socket}.ttrpc'
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{pause}'
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '{runc}'
        SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{CNI_PLUGINS}']
      conf_dir = '{self.state_dir / "cni"}'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
"""
        network = {
            "cniVersion": "1.0.0",
            "name": "agc-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_ADDRESS}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.state_dir / "cni-ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.state_dir / "cni" / "10-agc-node.conflist").write_text(json.dumps(network, indent=2))
        path = root / "config.toml"
        path.write_text(config)
        return path

    def _kubelet_config(self) -> Path:
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # the apiserver reaches it at the InternalIP (pods/log, exec)
            "address": NODE_ADDRESS,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.plane.pki.ca.cert)},
            },
            "authorization": {"mode": "Webhook"},
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "podLogsDir": str(self.state_dir / "pod-logs"),
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "localStorageCapacityIsolation": False,
        }
        path = self.state_dir / "kubelet" / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _kube_proxy_config(self) -> Path:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {
                "kubeconfig": str(
                    self.plane.client_kubeconfig("kube-proxy", user="system:kube-proxy")
                )
            },
            "mode": "iptables",
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_SUBNET,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # leave the host's conntrack table size and our oom_score_adj alone
            "conntrack": {"maxPerCore": 0},
            "oomScoreAdj": 0,
        }
        path = self.state_dir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _ctr(self, *args: str) -> None:
        _run(
            str(self.binaries.path("ctr")), f"--address={self.socket}", "--namespace=k8s.io", *args
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        # containerd finds the runc shim on PATH
        env = {**os.environ, "PATH": f"{self.binaries.node_bin}:{os.environ.get('PATH', '')}"}
        self._children.append((name, spawn_logged(argv, self.logs_dir / f"{name}.log", env=env)))

    def _wait(self, name: str, timeout: float, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child, process in self._children:
                if process.poll() is not None:
                    raise NodeError(
                        f"{child} exited with code {process.returncode} while the node started; "
                        f"its log ends with:\n{tail(self.logs_dir / f'{child}.log')}"
                    )
            if ready():
                return
            time.sleep(0.2)
        raise NodeError(
            f"{name} was not ready within {timeout:.0f}s; its log ends with:\n"
            f"{tail(self.logs_dir / f'{name}.log')}"
        )

    def _node_ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.plane.pki.ca.cert))
        context.load_cert_chain(str(self.plane.pki.admin.cert), str(self.plane.pki.admin.key))
        try:
            with urllib.request.urlopen(
                f"{self.plane.server}/api/v1/nodes/{NODE_NAME}", timeout=2, context=context
            ) as response:
                node = json.load(response)
        except OSError:
            return False
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NodeError(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pids() -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and int(p.name) != os.getpid()
    ]


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory) + "/"
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]


def _iptables(table: str) -> list[list[str]]:
    rules: list[list[str]] = []
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        out = subprocess.run(
            [binary, "-t", table, "-S"], capture_output=True, text=True, check=False
        )
        rules.extend([binary, *shlex.split(line)] for line in out.stdout.splitlines())
    return rules


def _kube_chains() -> bool:
    return any(
        rule[1] == "-N" and rule[2].startswith("KUBE-")
        for t in _IPTABLES_TABLES
        for rule in _iptables(t)
    )


def _remove_kube_chains() -> None:
    """Remove kubelet's and kube-proxy's KUBE-* chains and the jumps to them."""
    for table in _IPTABLES_TABLES:
        rules = _iptables(table)
        chains = [(r[0], r[2]) for r in rules if r[1] == "-N" and r[2].startswith("KUBE-")]
        for rule in rules:
            if (
                rule[1] == "-A"
                and not rule[2].startswith("KUBE-")
                and any(a.startswith("KUBE-") for a in rule)
            ):
                subprocess.run(
                    [rule[0], "-t", table, "-D", *rule[2:]], capture_output=True, check=False
                )
        for binary, chain in chains:
            subprocess.run([binary, "-t", table, "-F", chain], capture_output=True, check=False)
        for binary, chain in chains:
            subprocess.run([binary, "-t", table, "-X", chain], capture_output=True, check=False)
