"""A container's runtime state as a kubelet tracks it, and the rules that depend on
it alone: its entry in the pod status, its Waiting state, whether it restarts.

Invariant: a Container keeps the output of its current and previous process
only (`kubectl logs --previous`); an older one is closed and deleted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from devcluster.nodeagent.crilog import ContainerOutput


@attrs.define(eq=False)
class Container:
    """One container's runtime state; `status()` is its entry in the pod status."""

    name: str
    kind: str  # "init" (runs to completion), "sidecar" (init with restartPolicy Always), "regular"
    state: dict[str, Any]  # {"waiting": {...}} | {"running": {...}} | {"terminated": {...}}
    last_state: dict[str, Any] = attrs.field(factory=dict)
    restart_count: int = 0
    ready: bool = False
    image_id: str = ""
    container_id: str = ""
    # set once the first process of this container runs (sidecars gate the next init container)
    first_start: asyncio.Event = attrs.field(factory=asyncio.Event)
    processes_started: int = 0  # numbers the log files
    # the output of its latest two processes (current and previous) by container ID, oldest first
    outputs: dict[str, ContainerOutput] = attrs.field(factory=dict)

    def keep_output(self, container_id: str, output: ContainerOutput) -> None:
        """Remember the output of a new process; forget (and delete) the one before previous."""
        self.outputs[container_id] = output
        while len(self.outputs) > 2:
            oldest = self.outputs.pop(next(iter(self.outputs)))
            oldest.close()
            oldest.path.unlink(missing_ok=True)

    def status(self, image: str) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "image": image,
            "imageID": self.image_id,
            "ready": self.ready,
            "started": "running" in self.state,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    waiting = {"reason": reason}
    if message:
        waiting["message"] = message
    return {"waiting": waiting}


def restarts(policy: str, kind: str, returncode: int) -> bool:
    if kind == "sidecar":
        return True
    if kind == "init":
        return returncode != 0 and policy != "Never"
    return policy == "Always" or (policy == "OnFailure" and returncode != 0)
