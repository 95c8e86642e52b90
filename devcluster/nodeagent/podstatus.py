"""A pod's status as a kubelet reports it (pure: the runner's state in, the status out).

kubelet's rules: the phase is Pending until every container ran and terminal once
none will run again; conditions Initialized, Ready (readiness gates included) and
ContainersReady; our conditions replace their earlier selves in place, keeping
lastTransitionTime while their status stays, and others' conditions are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from agc_controller.informers import KubeObject
from devcluster.nodeagent.containers import Container
from devcluster.nodeagent.podspec import restart_policy

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@attrs.frozen
class PodState:
    """What a pod's status is computed from: its runner's state at one moment."""

    pod: KubeObject  # the latest object seen
    containers: Sequence[Container]  # init containers (and sidecars) first, in spec order
    initialized: bool  # every init container succeeded
    init_failed: bool  # an init container failed and will not be retried
    pod_ip: str  # "" until the sandbox exists
    host_ip: str
    start_time: str  # when the runner first saw the pod

    def desired_status(self, current: Mapping[str, Any], now: str) -> dict[str, Any]:
        """The pod's status: `current` (the object's) with ours merged in, at `now`."""
        gateway = self.host_ip
        status = dict(current)
        phase = self.phase()
        status["phase"] = phase
        status["hostIP"] = gateway
        status["hostIPs"] = [{"ip": gateway}]
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        status["startTime"] = current.get("startTime") or self.start_time
        status["conditions"] = merge_conditions(
            current.get("conditions") or [], self._conditions(phase, current), now
        )
        spec = self.pod["spec"]
        images = {
            c["name"]: str(c.get("image", ""))
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
        }
        inits = [c.status(images.get(c.name, "")) for c in self.containers if c.kind != "regular"]
        if inits:
            status["initContainerStatuses"] = inits
        status["containerStatuses"] = [
            c.status(images.get(c.name, "")) for c in self.containers if c.kind == "regular"
        ]
        return status

    def phase(self) -> str:
        """kubelet's rules: Pending until every container ran, terminal once none will again."""
        if self.init_failed:
            return "Failed"
        if not self.initialized:
            return "Pending"
        regular = [c for c in self.containers if c.kind == "regular"]
        waiting = running = stopped = succeeded = 0
        for container in regular:
            if "running" in container.state:
                running += 1
            elif "terminated" in container.state:
                stopped += 1
                succeeded += container.state["terminated"]["exitCode"] == 0
            elif container.last_state:
                stopped += 1  # waiting to be restarted
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        policy = restart_policy(self.pod)
        if policy == "Always" or not stopped:
            return "Running"
        if succeeded == len(regular):
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"

    def _conditions(self, phase: str, current: Mapping[str, Any]) -> list[dict[str, str]]:
        terminal = phase in TERMINAL_PHASES
        if self.initialized:
            initialized = {"type": "Initialized", "status": "True"}
        else:
            pending = [c.name for c in self.containers if c.kind != "regular"]
            initialized = {
                "type": "Initialized",
                "status": "False",
                "reason": "ContainersNotInitialized",
                "message": f"containers with incomplete status: [{' '.join(pending)}]",
            }
        unready = [c.name for c in self.containers if c.kind == "regular" and not c.ready]
        if not unready and not terminal:
            containers_ready = {"type": "ContainersReady", "status": "True"}
        else:
            containers_ready = {
                "type": "ContainersReady",
                "status": "False",
                "reason": "PodCompleted" if terminal else "ContainersNotReady",
                "message": ""
                if terminal
                else f"containers with unready status: [{' '.join(unready)}]",
            }
        ready = {**containers_ready, "type": "Ready"}
        if containers_ready["status"] == "True":
            existing = {c["type"]: c.get("status") for c in current.get("conditions") or []}
            gates = [g["conditionType"] for g in self.pod["spec"].get("readinessGates") or []]
            missing = [g for g in gates if existing.get(g) != "True"]
            if missing:
                ready = {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ReadinessGatesNotReady",
                    "message": f"corresponding condition of pod readiness gate {missing[0]!r} "
                    "does not exist or is not True",
                }
        return [initialized, ready, containers_ready]


def merge_conditions(
    current: Sequence[Mapping[str, Any]], ours: Sequence[Mapping[str, str]], now: str
) -> list[dict[str, Any]]:
    """`current` with our conditions replaced in place (new ones appended), keeping
    lastTransitionTime where the status did not change; others' conditions untouched."""
    pending = {condition["type"]: condition for condition in ours}
    merged: list[dict[str, Any]] = []
    for existing in current:
        mine = pending.pop(existing["type"], None)
        merged.append(dict(existing) if mine is None else _condition(mine, existing, now))
    merged.extend(_condition(mine, None, now) for mine in pending.values())
    return merged


def _condition(
    mine: Mapping[str, str], existing: Mapping[str, Any] | None, now: str
) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": mine["type"], "status": mine["status"]}
    if existing is None or "lastProbeTime" in existing:
        condition["lastProbeTime"] = None
    same = existing is not None and existing.get("status") == mine["status"]
    transition = existing.get("lastTransitionTime") if existing is not None and same else None
    condition["lastTransitionTime"] = transition or now
    for key in ("reason", "message"):
        if mine.get(key):
            condition[key] = mine[key]
    return condition
