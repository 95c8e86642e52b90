"""A container's environment, as a kubelet builds it: defaults, envFrom, env with
`$(VAR)` references, and valueFrom (fieldRef, secretKeyRef, configMapKeyRef).

A missing Secret, ConfigMap or key that is not optional is a ConfigError: the
container waits (CreateContainerConfigError) until it can be resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agc_controller.informers import KubeObject
from devcluster.nodeagent.api import KIND_OF_PLURAL, Api, ObjectReader, key_value
from devcluster.nodeagent.podspec import ConfigError, expand, field_value, hostname

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


async def container_env(
    api: Api, pod: KubeObject, spec: Mapping[str, Any], *, pod_ip: str, host_ip: str
) -> dict[str, str]:
    """The environment of container `spec` of `pod`, in kubelet's order: defaults,
    envFrom, then env (whose values may refer to what came before)."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname(pod), "HOME": "/root"}
    reader = ObjectReader(api, pod["metadata"]["namespace"])
    for source in spec.get("envFrom") or []:
        plural = "secrets" if "secretRef" in source else "configmaps"
        ref = source.get("secretRef") or source.get("configMapRef") or {}
        data = await reader.data(plural, ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                continue
            kind = KIND_OF_PLURAL[plural]
            raise ConfigError(
                "CreateContainerConfigError", f'{kind} "{ref.get("name", "")}" not found'
            )
        prefix = source.get("prefix", "")
        for key, content in data.items():
            env[prefix + key] = content.decode(errors="replace")
    for var in spec.get("env") or []:
        value_from = var.get("valueFrom")
        if value_from is None:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        value = await _value_from(value_from, reader, pod, pod_ip=pod_ip, host_ip=host_ip)
        if value is not None:
            env[var["name"]] = value
    return env


async def _value_from(
    value_from: Mapping[str, Any],
    reader: ObjectReader,
    pod: KubeObject,
    *,
    pod_ip: str,
    host_ip: str,
) -> str | None:
    if "fieldRef" in value_from:
        path = value_from["fieldRef"]["fieldPath"]
        return field_value(pod, path, pod_ip=pod_ip, host_ip=host_ip)
    for ref_name, plural in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
        if ref_name in value_from:
            value = await key_value(reader, plural, value_from[ref_name])
            return None if value is None else value.decode(errors="replace")
    unsupported = ", ".join(sorted(value_from)) or "nothing"
    raise ConfigError("CreateContainerConfigError", f"env valueFrom {unsupported} is not supported")
