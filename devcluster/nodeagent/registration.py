"""The Node object of the agent, its NodeReady heartbeat and its Lease.

InternalIP (the pod network's gateway) is the node's only address: the
apiserver reaches a kubelet at the first address of
--kubelet-preferred-address-types (Hostname first by default), and the node name
does not resolve. The Lease in kube-node-lease and the heartbeat keep the node
lifecycle controller from evicting the node's pods.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import structlog
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.informers import KubeObject
from devcluster.nodeagent.api import Api, timestamp, timestamp_micro

log = structlog.get_logger(__name__)

HEARTBEAT_PERIOD = 10.0  # seconds between Lease renewals and NodeReady heartbeats
LEASE_DURATION_SECONDS = 40  # what kubelet uses; the node controller's grace is longer


def _memory_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _read_first_line(path: str, default: str) -> str:
    try:
        return Path(path).read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        return default


def _os_image() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "Linux"
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


class NodeRegistration:
    """The Node object, its status heartbeat and its Lease."""

    def __init__(
        self, api: Api, *, node_name: str, address: str, pod_cidr: str, kubelet_port: int
    ) -> None:
        self._api = api
        self._name = node_name
        self._address = address
        self._kubelet_port = kubelet_port
        self._pod_cidr = pod_cidr
        self._uid = ""
        self._kubelet_version = "v0.0.0"
        # condition type -> (status, lastTransitionTime) as the node last showed them
        self._conditions: dict[str, tuple[str, str]] = {}
        arch = platform.machine()
        self.labels = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _ARCHITECTURES.get(arch, arch),
        }

    async def register(self) -> None:
        version = await self._api.call("GET", "/version")
        self._kubelet_version = str(version.get("gitVersion") or self._kubelet_version)
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self._name, "labels": self.labels},
            "spec": {"podCIDR": self._pod_cidr, "podCIDRs": [self._pod_cidr]},
        }
        try:
            node = await self._api.call("POST", "/api/v1/nodes", body=body)
        except ApiException as error:
            if error.status != 409:
                raise
            node = await self._api.call(
                "PATCH",
                f"/api/v1/nodes/{self._name}",
                body={"metadata": {"labels": self.labels}},
                content_type="application/merge-patch+json",
            )
            if node.get("spec", {}).get("podCIDR") not in (None, self._pod_cidr):
                log.warning(
                    "node_pod_cidr_differs",
                    node=self._name,
                    pod_cidr=node["spec"]["podCIDR"],
                    pod_subnet=self._pod_cidr,
                )
        self._uid = node["metadata"]["uid"]
        self._remember_conditions(node)
        await self._beat()
        log.info("node_registered", node=self._name, address=self._address)

    async def heartbeat(self) -> None:
        """Post NodeReady and renew the Lease; register again if the Node was deleted."""
        try:
            await self._beat()
        except ApiException as error:
            if error.status != 404:
                raise
            log.warning("node_vanished", node=self._name)
            await self.register()

    async def _beat(self) -> None:
        now = timestamp()
        node = await self._api.call(
            "PATCH",
            f"/api/v1/nodes/{self._name}/status",
            body={"status": self._status(now)},
            content_type="application/merge-patch+json",
        )
        self._remember_conditions(node)
        await self._renew_lease()

    def _remember_conditions(self, node: KubeObject) -> None:
        for condition in (node.get("status") or {}).get("conditions") or []:
            self._conditions[condition["type"]] = (
                condition.get("status", ""),
                condition.get("lastTransitionTime", ""),
            )

    def _status(self, now: str) -> dict[str, Any]:
        conditions = []
        for type_, status, reason, message in (
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "memory is sufficient"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "PIDs are sufficient"),
            ("Ready", "True", "KubeletReady", "the local node agent is posting ready status"),
        ):
            previous_status, previous_time = self._conditions.get(type_, ("", ""))
            conditions.append(
                {
                    "type": type_,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": previous_time if previous_status == status else now,
                }
            )
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{_memory_kib()}Ki",
            "pods": "110",
        }
        machine_id = _read_first_line("/etc/machine-id", self._name)
        return {
            "conditions": conditions,
            # no Hostname: the apiserver would try it first to reach the kubelet (module doc)
            "addresses": [{"type": "InternalIP", "address": self._address}],
            "capacity": capacity,
            "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self._kubelet_port}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": machine_id,
                "bootID": _read_first_line("/proc/sys/kernel/random/boot_id", ""),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": "agc-local://1",
                "kubeletVersion": self._kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.labels["kubernetes.io/arch"],
            },
        }

    async def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self._name}"
        spec = {
            "holderIdentity": self._name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": timestamp_micro(),
        }
        try:
            await self._api.call(
                "PATCH", path, body={"spec": spec}, content_type="application/merge-patch+json"
            )
        except ApiException as error:
            if error.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self._name, "uid": self._uid}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self._name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [owner],
                },
                "spec": spec,
            }
            await self._api.call("POST", path.rsplit("/", 1)[0], body=lease)
