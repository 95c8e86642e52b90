"""The scheduler of a one-node cluster: bind every pod without a node that asks for
the default scheduler, has no scheduling gates and whose nodeSelector the node's
labels satisfy (node affinity and taints do not matter: this is the only node).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
import structlog
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.informers import Informer, KubeObject, object_key
from devcluster.nodeagent.api import POD, Api

log = structlog.get_logger(__name__)

DEFAULT_SCHEDULERS = frozenset({"", "default-scheduler"})


def wants_this_node(pod: KubeObject, labels: Mapping[str, str]) -> bool:
    """May the default scheduler place `pod` on a node with `labels`?"""
    spec = pod.get("spec") or {}
    if spec.get("nodeName") or pod["metadata"].get("deletionTimestamp"):
        return False
    if (spec.get("schedulerName") or "") not in DEFAULT_SCHEDULERS:
        return False
    if spec.get("schedulingGates"):
        return False
    selector = spec.get("nodeSelector") or {}
    return all(labels.get(key) == value for key, value in selector.items())


class Scheduler:
    """Binds the pods the default scheduler would place on this node (one at a time;
    a failed binding is retried after a second)."""

    def __init__(self, api: Api, *, node_name: str) -> None:
        self._api = api
        self._node_name = node_name
        self._to_bind: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()  # keys in _to_bind (no duplicates)
        # the Node's labels, which a pod's nodeSelector must match; set once registered
        self.labels: Mapping[str, str] = {}

    def on_unscheduled_pod(self, pod: KubeObject) -> None:
        """Informer handler of pods without a node (no I/O)."""
        if wants_this_node(pod, self.labels):
            self._enqueue_binding(object_key(pod))

    def _enqueue_binding(self, key: str) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._to_bind.put_nowait(key)

    async def run(self, unscheduled: Informer) -> None:
        """Bind what `unscheduled` (the informer feeding on_unscheduled_pod) holds."""
        while True:
            key = await self._to_bind.get()
            self._queued.discard(key)
            pod = unscheduled.store.get(key)
            if pod is None or not wants_this_node(pod, self.labels):
                continue
            try:
                await self._bind(pod)
            except ApiException as error:
                if error.status in (404, 409):  # gone, or bound meanwhile
                    continue
                log.warning("pod_binding_failed", pod=key, error=str(error))
                asyncio.get_running_loop().call_later(1.0, self._enqueue_binding, key)
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                log.warning("pod_binding_failed", pod=key, error=str(error) or type(error).__name__)
                asyncio.get_running_loop().call_later(1.0, self._enqueue_binding, key)

    async def _bind(self, pod: KubeObject) -> None:
        metadata = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            # the uid makes the binding a no-op for a re-created pod of the same name
            "metadata": {
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
            },
            "target": {"apiVersion": "v1", "kind": "Node", "name": self._node_name},
        }
        path = POD.object_path(metadata["name"], metadata["namespace"]) + "/binding"
        await self._api.call("POST", path, body=binding)
        log.info("pod_bound", pod=object_key(pod), node=self._node_name)
