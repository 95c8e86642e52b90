"""The node agent: kubelet and scheduler for one node whose pods are local processes.

It registers the Node (registration.py), binds pods to it (scheduler.py),
serves their logs (logapi.py) and runs one PodRunner per pod on the node
(pod.py), all from two informers of Pods: the node's and the unscheduled.

Invariants:
- One task per pod. Whatever goes wrong with a pod is logged, shown in its
  status and retried; it never stops the agent or another pod.
- Cancelling `NodeAgent.run()` stops every process and removes every namespace
  and link the agent made, even when the graceful clean-up is itself cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog
from kubernetes_asyncio import client

from agc_controller.core.clock import SystemClock
from agc_controller.informers import (
    ApiListWatcher,
    Informer,
    KubeObject,
    drop_managed_fields,
    object_key,
)
from devcluster.nodeagent.api import API_ERRORS, POD, Api
from devcluster.nodeagent.crilog import ContainerOutput
from devcluster.nodeagent.logapi import KubeletServer, LogUnavailable
from devcluster.nodeagent.pod import Node, PodRunner
from devcluster.nodeagent.podstatus import TERMINAL_PHASES
from devcluster.nodeagent.processes import HostTools, Processes
from devcluster.nodeagent.registration import HEARTBEAT_PERIOD, NodeRegistration
from devcluster.nodeagent.scheduler import Scheduler
from devcluster.podnet import PodNetwork

log = structlog.get_logger(__name__)


class _Handler:
    """Informer handler: forwards changes to the agent (no I/O, as handlers must)."""

    def __init__(
        self, changed: Callable[[KubeObject], None], deleted: Callable[[KubeObject], None]
    ) -> None:
        self._changed = changed
        self._deleted = deleted

    def on_add(self, obj: KubeObject) -> None:
        self._changed(obj)

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self._changed(new)

    def on_delete(self, obj: KubeObject) -> None:
        self._deleted(obj)


class NodeAgent:
    """Kubelet and scheduler for one node whose pods are local processes (see module doc)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        images: Mapping[str, Sequence[str]],
        state_dir: Path,
        node_name: str = "agc-local",
        pod_subnet: str = "10.214.0.0/16",
    ) -> None:
        for repository, argv in images.items():
            if not argv:
                raise ValueError(f"image {repository!r} is mapped to an empty argv")
        self._api = Api(api)
        self._raw_api = api
        self._images = {repository: tuple(argv) for repository, argv in images.items()}
        self._state_dir = state_dir
        self._node_name = node_name
        self._pod_subnet = pod_subnet
        # pod uid -> its runner, while it runs (created by informer events)
        self._runners: dict[str, PodRunner] = {}
        # uids whose runner finished (pod deleted by us); ignored until their DELETED event
        self._finished: set[str] = set()
        self._tasks: asyncio.TaskGroup | None = None  # set while run() runs
        self._node: Node | None = None
        self._scheduler = Scheduler(self._api, node_name=node_name)

    async def run(self) -> None:
        """Register the Node and run pods until cancelled; then stop and clean up everything."""
        if self._tasks is not None:
            raise RuntimeError("the node agent is already running")
        tools = HostTools.find()
        network = PodNetwork(
            subnet=self._pod_subnet, node_name=self._node_name, state_dir=self._state_dir
        )
        pods_dir = self._state_dir / "pods"
        pods_dir.mkdir(parents=True, exist_ok=True)
        pods_dir.chmod(0o700)  # volumes hold Secret data
        processes = Processes(tools)
        self._node = Node(
            api=self._api,
            processes=processes,
            network=network,
            images=self._images,
            pods_dir=pods_dir,
        )
        kubelet = KubeletServer(
            address=network.gateway,
            node_name=self._node_name,
            directory=self._state_dir / "kubelet",
            find_output=self._container_output,
        )
        try:
            await network.open()
            registration = NodeRegistration(
                self._api,
                node_name=self._node_name,
                address=network.gateway,
                pod_cidr=str(network.subnet),
                kubelet_port=await kubelet.start(),
            )
            self._scheduler.labels = registration.labels
            registered = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._keep_node_alive(registration, registered), name="node")
                await registered.wait()
                assigned = Informer(
                    POD,
                    ApiListWatcher(
                        self._raw_api, POD, field_selector=f"spec.nodeName={self._node_name}"
                    ),
                    clock=SystemClock(),
                    transform=drop_managed_fields,
                    name="pods-on-node",
                )
                assigned.add_handler(_Handler(self._on_assigned_pod, self._on_assigned_pod_gone))
                unscheduled = Informer(
                    POD,
                    ApiListWatcher(
                        self._raw_api,
                        POD,
                        field_selector="spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed",
                    ),
                    clock=SystemClock(),
                    transform=drop_managed_fields,
                    name="pods-unscheduled",
                )
                unscheduled.add_handler(
                    _Handler(self._scheduler.on_unscheduled_pod, lambda _: None)
                )
                tasks.create_task(assigned.run(), name="informer pods-on-node")
                tasks.create_task(unscheduled.run(), name="informer pods-unscheduled")
                tasks.create_task(self._scheduler.run(unscheduled), name="scheduler")
                log.info("node_agent_running", node=self._node_name, subnet=str(network.subnet))
        finally:
            self._tasks = None
            kubelet.close()
            try:
                await kubelet.stop()  # the pods are stopped: followed logs have ended
            finally:
                # what graceful stops missed (or a second cancellation interrupted)
                processes.kill_all()
                network.destroy()
                self._runners.clear()
                log.info("node_agent_stopped", node=self._node_name)

    def _container_output(
        self, namespace: str, pod: str, container: str, previous: bool
    ) -> ContainerOutput:
        """For the kubelet API: the output to serve as `container`'s log (see PodRunner)."""
        runners = [r for r in self._runners.values() if (r.namespace, r.name) == (namespace, pod)]
        if not runners:
            raise LogUnavailable(404, f'pod "{pod}" does not exist')
        # a pod being deleted and its successor of the same name: the successor
        live = [r for r in runners if not r.pod["metadata"].get("deletionTimestamp")]
        return (live or runners)[-1].container_output(container, previous=previous)

    async def _keep_node_alive(
        self, registration: NodeRegistration, registered: asyncio.Event
    ) -> None:
        while True:
            try:
                if registered.is_set():
                    await registration.heartbeat()
                else:
                    await registration.register()
                    registered.set()
            except Exception as error:
                log.warning(
                    "node_heartbeat_failed",
                    node=self._node_name,
                    error=str(error) or type(error).__name__,
                    exc_info=not isinstance(error, API_ERRORS),
                )
            await asyncio.sleep(HEARTBEAT_PERIOD if registered.is_set() else 1.0)

    # -- pods on this node --------------------------------------------------------------

    def _on_assigned_pod(self, pod: KubeObject) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._finished:
            return
        runner = self._runners.get(uid)
        if runner is not None:
            runner.observe(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in TERMINAL_PHASES and not pod["metadata"].get("deletionTimestamp"):
            return  # ran before this agent started; nothing left to do but keep its status
        if self._tasks is None or self._node is None:
            return
        runner = PodRunner(self._node, pod)
        self._runners[uid] = runner
        self._tasks.create_task(self._run_pod(runner), name=f"pod {object_key(pod)}")

    def _on_assigned_pod_gone(self, pod: KubeObject) -> None:
        uid = pod["metadata"]["uid"]
        self._finished.discard(uid)
        runner = self._runners.get(uid)
        if runner is not None:
            runner.vanish()

    async def _run_pod(self, runner: PodRunner) -> None:
        try:
            await runner.run()
        except Exception:
            # a later event for the pod starts a fresh runner
            log.exception("pod_runner_failed", pod=f"{runner.namespace}/{runner.name}")
            self._runners.pop(runner.uid, None)
            return
        self._runners.pop(runner.uid, None)
        self._finished.add(runner.uid)
