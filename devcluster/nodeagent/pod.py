"""One pod on this node, from its first sight to its deletion (`PodRunner`).

The runner sets up the pod's sandbox (a network namespace with its own IP,
podnet.py) and volumes, runs its init containers, sidecars and containers as
their restart policies say, and writes the pod's status as it changes.

Invariants:
- A pod's processes are stopped before its sandbox is destroyed, and the
  sandbox before the object is deleted (gracePeriodSeconds=0, as a kubelet does).
- Status goes through the status subresource and is written only when it
  differs from the object's (transition times kept); a 409 means re-read.
- Changes within STATUS_COALESCE share one status write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import structlog
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.informers import KubeObject
from devcluster.nodeagent.api import API_ERRORS, POD, Api, timestamp
from devcluster.nodeagent.containers import Container, restarts, waiting
from devcluster.nodeagent.crilog import ContainerOutput
from devcluster.nodeagent.logapi import LogUnavailable
from devcluster.nodeagent.podspec import ConfigError, hostname, restart_policy
from devcluster.nodeagent.podstatus import TERMINAL_PHASES, PodState
from devcluster.nodeagent.probes import Prober
from devcluster.nodeagent.processes import Processes, launch_for
from devcluster.nodeagent.volumes import Volume, prepare_volumes
from devcluster.podnet import PodNetwork, PodNetworkError, PodSandbox

log = structlog.get_logger(__name__)

MAX_TERMINATION_GRACE = 10.0  # cap on a pod's terminationGracePeriodSeconds (seconds)
SHUTDOWN_GRACE = 3.0  # grace for every pod when the agent itself stops (seconds)
RESTART_BACKOFF = (1.0, 10.0)  # first and longest delay before restarting a container
BACKOFF_RESET_AFTER = 60.0  # a container that ran this long restarts after the first delay
CONFIG_RETRY = 2.0  # seconds between attempts to resolve a container's env or volumes
STATUS_COALESCE = 0.05  # changes within this many seconds share one status write


@attrs.frozen
class Node:
    """What every pod runner shares: the API, the processes, the network, the images."""

    api: Api
    processes: Processes
    network: PodNetwork
    images: dict[str, tuple[str, ...]]
    pods_dir: Path


class PodRunner:
    """Runs one pod on this node, from its first sight to its deletion."""

    def __init__(self, node: Node, pod: KubeObject) -> None:
        self._node = node
        self.pod = pod  # the latest object seen (informer or our own write)
        metadata = pod["metadata"]
        self.uid: str = metadata["uid"]
        self.namespace: str = metadata["namespace"]
        self.name: str = metadata["name"]
        self._log = log.bind(pod=f"{self.namespace}/{self.name}", uid=self.uid)
        self._dir = node.pods_dir / self.uid
        spec = pod["spec"]
        inits = spec.get("initContainers") or []
        first_wait = "PodInitializing" if inits else "ContainerCreating"
        self._containers = [
            Container(
                name=c["name"],
                kind="sidecar" if c.get("restartPolicy") == "Always" else "init",
                state=waiting("PodInitializing"),
            )
            for c in inits
        ] + [
            Container(name=c["name"], kind="regular", state=waiting(first_wait))
            for c in spec.get("containers") or []
        ]
        self._sandbox: PodSandbox | None = None
        self._pod_ip = ""  # kept after the sandbox is released: terminal pods report it
        self._start_time = timestamp()
        self._initialized = False  # every init container succeeded
        self._init_failed = False  # an init container failed and will not be retried
        self._vanished = False  # the object is gone (DELETED)
        self._grace = SHUTDOWN_GRACE  # seconds processes get between SIGTERM and SIGKILL
        self._updated = asyncio.Event()  # replaced on every update: each waiter sees it set
        self._dirty = asyncio.Event()  # the status may differ from the object's

    # -- events from the agent --------------------------------------------------------

    def observe(self, pod: KubeObject) -> None:
        self.pod = pod
        self._signal_update()

    def vanish(self) -> None:
        self._vanished = True
        self._signal_update()

    def _signal_update(self) -> None:
        self._updated.set()
        self._updated = asyncio.Event()

    async def _wait_for_update(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._updated.wait(), within)

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the pod until it is deleted; then stop it, clean up and delete the object."""
        self._log.info("pod_started")
        self._dirty.set()
        status_task = asyncio.create_task(self._status_loop(), name=f"status {self.uid}")
        live_task: asyncio.Task[None] | None = None
        phase = (self.pod.get("status") or {}).get("phase")
        if phase not in TERMINAL_PHASES and not self._deleting():
            live_task = asyncio.create_task(self._live(), name=f"pod {self.uid}")
        try:
            await self._until_deleted()
            grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
            self._grace = min(float(grace), MAX_TERMINATION_GRACE)
        finally:
            tasks = [task for task in (status_task, live_task) if task is not None]
            for task in tasks:
                task.cancel()  # the live task stops the processes (SIGTERM, grace, SIGKILL)
            await asyncio.wait(tasks)
            await self._release_sandbox()
            await asyncio.to_thread(shutil.rmtree, self._dir / "volumes", True)
        if not self._vanished:
            await self._delete_object()
        self._log.info("pod_removed")

    def _deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def container_output(self, name: str, *, previous: bool) -> ContainerOutput:
        """The output a kubelet serves as the log of container `name`: its running or
        terminated process, else the one its lastState names (the one lastState names
        for `previous`). Raises LogUnavailable with kubelet's answer otherwise."""
        container = next((c for c in self._containers if c.name == name), None)
        if container is None:
            raise LogUnavailable(404, f'container "{name}" not found in pod "{self.name}"')
        last_id = str((container.last_state.get("terminated") or {}).get("containerID") or "")
        state = container.state
        if previous:
            if not last_id:
                raise LogUnavailable(
                    400, f'previous terminated container "{name}" in pod "{self.name}" not found'
                )
            container_id = last_id
        elif "running" in state:
            container_id = container.container_id
        elif "terminated" in state:
            container_id = str(state["terminated"].get("containerID") or last_id)
            if not container_id:
                raise LogUnavailable(400, f'container "{name}" in pod "{self.name}" is terminated')
        elif last_id:
            container_id = last_id
        else:
            reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
            raise LogUnavailable(
                400, f'container "{name}" in pod "{self.name}" is waiting to start: {reason}'
            )
        output = container.outputs.get(container_id)
        if output is None:
            raise LogUnavailable(
                400, f'the log of container "{name}" ({container_id}) in pod "{self.name}" is gone'
            )
        return output

    async def _until_deleted(self) -> None:
        while True:
            updated = self._updated
            if self._vanished or self._deleting():
                return
            await updated.wait()

    async def _delete_object(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        delay = RESTART_BACKOFF[0]
        while True:
            try:
                await self._node.api.call("DELETE", self._path(), body=body)
                return
            except ApiException as error:
                if error.status in (404, 409):  # gone already, or a new pod of that name
                    return
                self._log.warning("pod_delete_failed", error=str(error))
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                self._log.warning("pod_delete_failed", error=str(error) or type(error).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF[1])

    def _path(self) -> str:
        return POD.object_path(self.name, self.namespace)

    async def _live(self) -> None:
        """Set the pod up and run its containers; start over after an unexpected error."""
        delay = RESTART_BACKOFF[0]
        while True:
            try:
                await self._run_once()
                break
            except Exception as error:
                message = f"setting the pod up failed: {error or type(error).__name__}"
                self._log.warning(
                    "pod_setup_failed",
                    error=message,
                    exc_info=not isinstance(error, PodNetworkError | ApiException),
                )
                await self._release_sandbox()
                self._pod_ip = ""
                self._initialized = False
                for container in self._containers:
                    self._set_state(container, waiting("ContainerCreating", message))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_BACKOFF[1] * 3)
        # every container has finished for good (restartPolicy Never/OnFailure)
        await self._release_sandbox()
        self._log.info("pod_finished", phase=self._state().phase())

    async def _run_once(self) -> None:
        if self.pod["spec"].get("hostNetwork"):
            for container in self._containers:
                self._set_state(
                    container,
                    waiting(
                        "HostNetworkUnsupported", "the local node agent runs no hostNetwork pods"
                    ),
                )
            await asyncio.get_running_loop().create_future()  # until the pod is deleted
        if self._sandbox is None:
            self._sandbox = await self._node.network.create_sandbox()
            self._pod_ip = self._sandbox.address
            self._dirty.set()
            self._log.info("pod_sandbox_created", ip=self._pod_ip, netns=self._sandbox.netns)
        volumes = await self._volumes_when_ready()
        sidecars: list[asyncio.Task[int]] = []
        async with asyncio.TaskGroup() as group:
            for container in self._containers:
                if container.kind == "sidecar":
                    sidecars.append(group.create_task(self._supervise(container, volumes)))
                    await container.first_start.wait()
                elif container.kind == "init" and await self._supervise(container, volumes):
                    self._init_failed = True
                    self._dirty.set()
                    break
            else:
                self._initialized = True
                self._dirty.set()
                async with asyncio.TaskGroup() as regular:
                    for container in self._containers:
                        if container.kind == "regular":
                            regular.create_task(self._supervise(container, volumes))
            for task in sidecars:
                task.cancel()

    async def _release_sandbox(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            await self._node.network.destroy_sandbox(sandbox)
            self._log.info("pod_sandbox_destroyed", netns=sandbox.netns)

    # -- containers ---------------------------------------------------------------------

    def _set_state(self, container: Container, state: dict[str, Any]) -> None:
        container.state = state
        if "running" not in state:
            container.ready = False
        self._dirty.set()

    def _set_ready(self, container: Container, ready: bool) -> None:
        if container.ready != ready:
            container.ready = ready
            self._dirty.set()

    def _spec_of(self, container: Container) -> dict[str, Any]:
        spec = self.pod["spec"]
        for candidate in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if candidate["name"] == container.name:
                found: dict[str, Any] = candidate
                return found
        raise ConfigError("CreateContainerConfigError", f"container {container.name} vanished")

    async def _supervise(self, container: Container, volumes: Mapping[str, Volume]) -> int:
        """Run the container (again and again, as its restart policy says); its last exit code."""
        delay = RESTART_BACKOFF[0]
        while True:
            try:
                spec = self._spec_of(container)
                launch = await launch_for(
                    self._node.api,
                    self.pod,
                    spec,
                    images=self._node.images,
                    volumes=volumes,
                    pod_ip=self._pod_ip,
                    host_ip=self._node.network.gateway,
                )
            except ConfigError as error:
                self._set_state(container, waiting(error.reason, error.message))
                await self._wait_for_update(CONFIG_RETRY)
                continue
            if self._sandbox is None:
                raise PodNetworkError("the pod has no sandbox")
            netns = self._sandbox.netns
            log_path = self._dir / "logs" / container.name / f"{container.processes_started}.log"
            container.processes_started += 1
            process, output = await self._node.processes.start(
                launch,
                netns=netns,
                hostname=hostname(self.pod),
                pod_dir=self._dir,
                log=log_path,
            )
            started_at, started = timestamp(), time.monotonic()
            container.image_id = launch.image_id
            container.container_id = f"agc-local://{process.pid}"
            container.keep_output(container.container_id, output)
            self._set_state(container, {"running": {"startedAt": started_at}})
            container.first_start.set()
            self._log.info("container_started", container=container.name, pid=process.pid)
            prober = Prober(
                pod_ip=self._pod_ip,
                netns=netns,
                nsenter=self._node.processes.tools.nsenter,
            )
            readiness = asyncio.create_task(
                prober.track_readiness(
                    spec, process, launch, functools.partial(self._set_ready, container)
                )
            )
            try:
                returncode = await process.wait()
                finished_at = timestamp()
            except asyncio.CancelledError:
                await self._node.processes.stop(process, grace=self._grace)
                raise
            finally:
                readiness.cancel()
                await self._node.processes.exited(process, output)
            terminated: dict[str, Any] = {
                "exitCode": returncode if returncode >= 0 else 128 - returncode,
                "reason": "Completed" if returncode == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": finished_at,
                "containerID": container.container_id,
            }
            if returncode < 0:
                terminated["signal"] = -returncode
            self._log.info("container_exited", container=container.name, exit_code=returncode)
            if not restarts(restart_policy(self.pod), container.kind, returncode):
                self._set_state(container, {"terminated": terminated})
                return returncode
            container.last_state = {"terminated": terminated}
            if time.monotonic() - started >= BACKOFF_RESET_AFTER:
                delay = RESTART_BACKOFF[0]
            self._set_state(
                container,
                waiting(
                    "CrashLoopBackOff",
                    f"back-off {delay:g}s restarting failed container={container.name} "
                    f"pod={self.name}_{self.namespace}({self.uid})",
                ),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF[1])
            container.restart_count += 1

    # -- volumes ------------------------------------------------------------------------

    async def _volumes_when_ready(self) -> dict[str, Volume]:
        while True:
            try:
                return await prepare_volumes(
                    self._node.api,
                    self.pod,
                    self._dir / "volumes",
                    pod_ip=self._pod_ip,
                    host_ip=self._node.network.gateway,
                )
            except ConfigError as error:
                for container in self._containers:
                    if "waiting" in container.state:
                        self._set_state(container, waiting(error.reason, error.message))
                await self._wait_for_update(CONFIG_RETRY)

    # -- status -------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(STATUS_COALESCE)
            self._dirty.clear()
            try:
                await self._write_status()
            except Exception as error:
                self._log.warning(
                    "pod_status_write_failed",
                    error=str(error) or type(error).__name__,
                    exc_info=not isinstance(error, API_ERRORS),
                )
                self._dirty.set()
                await asyncio.sleep(1.0)

    async def _write_status(self) -> None:
        pod = self.pod
        for _ in range(5):
            current = pod.get("status") or {}
            desired = self._state().desired_status(current, timestamp())
            if desired == current:
                return
            # A merge patch of the whole status (lists are replaced, `desired` keeps every
            # key of `current`) guarded by the resourceVersion, so a concurrent change
            # is a 409. Not a PUT: pods/status would take our metadata, labels included.
            body = {
                "metadata": {"resourceVersion": pod["metadata"].get("resourceVersion")},
                "status": desired,
            }
            try:
                self.pod = await self._node.api.call(
                    "PATCH",
                    f"{self._path()}/status",
                    body=body,
                    content_type="application/merge-patch+json",
                )
                return
            except ApiException as error:
                if error.status == 404:
                    return
                if error.status != 409:
                    raise
            pod = self.pod = await self._node.api.call("GET", self._path())
        raise RuntimeError("the pod kept changing under five status writes in a row")

    def _state(self) -> PodState:
        return PodState(
            pod=self.pod,
            containers=self._containers,
            initialized=self._initialized,
            init_failed=self._init_failed,
            pod_ip=self._pod_ip,
            host_ip=self._node.network.gateway,
            start_time=self._start_time,
        )
