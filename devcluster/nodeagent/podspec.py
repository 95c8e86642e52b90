"""Reading a pod's spec the way a kubelet does: image repositories, `$(VAR)`
expansion, downward-API fields, and the error a container waits on while its
configuration cannot be resolved (pure: no I/O)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from agc_controller.informers import KubeObject


def image_repository(image: str) -> str:
    """`registry/path/name` of `registry/path/name:tag@digest` (the key of `images`)."""
    name = image.split("@", 1)[0]
    colon = name.rfind(":")
    return name[:colon] if colon > name.rfind("/") else name


_REFERENCE = re.compile(r"\$(\$|\(([^)]*)\))")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` escapes, unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        return env.get(match.group(2), match.group(0))

    return _REFERENCE.sub(replace, text)


class ConfigError(Exception):
    """A container cannot start yet; `reason`/`message` go into its Waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_LABEL_OR_ANNOTATION = re.compile(r"metadata\.(labels|annotations)\['(.*)'\]")


def field_value(pod: KubeObject, path: str, *, pod_ip: str, host_ip: str) -> str:
    """A downward-API fieldRef of the pod, as an env var or file sees it."""
    metadata = pod["metadata"]
    spec = pod["spec"]
    if match := _LABEL_OR_ANNOTATION.fullmatch(path):
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = metadata.get(path.split(".")[1]) or {}
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))
    simple = {
        "metadata.name": metadata["name"],
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path not in simple:
        raise ConfigError(
            "CreateContainerConfigError", f"fieldRef {path} is not supported by the node agent"
        )
    return str(simple[path])


def hostname(pod: KubeObject) -> str:
    """The hostname a pod's containers see (spec.hostname, else the pod's name)."""
    return str(pod["spec"].get("hostname") or pod["metadata"]["name"])[:63]


def restart_policy(pod: KubeObject) -> str:
    return str(pod["spec"].get("restartPolicy") or "Always")
