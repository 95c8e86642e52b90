"""Memory trimming applied to objects before an informer caches them.

Why: the cache holds every watched object for the life of the process, and the
bulk of a cluster's bytes is in fields the controller never reads:
- `metadata.managedFields` and the `kubectl.kubernetes.io/last-applied-configuration`
  annotation often outweigh the object itself (dropped for every kind);
- a Pod keeps only its service account and its httpGet probes (a cluster has
  many, and their spec and status are most of their size);
- Secrets and ConfigMaps are watched cluster-wide only for certificate material,
  yet they also hold Helm release blobs (up to 1 MiB each), service-account
  tokens and application config. Keeping only the data keys a gateway can use
  bounds the cache by the certificates, and keeps credentials the controller
  has no business with out of its memory (and out of any heap dump).

Invariants: a transform never mutates its input (it returns a new dict when it
drops anything), and keeps `metadata.uid` and `metadata.resourceVersion`, which
the informer needs to order and deduplicate events.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from agc_controller.core.resources import (
    API_KEY_SECRET_TYPE,
    CONFIG_MAP,
    POD,
    SECRET,
    Resource,
)
from agc_controller.informers.store import KubeObject

Transform = Callable[[KubeObject], KubeObject]

LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# Secret keys a Gateway can use: kubernetes.io/tls certificate and key, the CA
# bundle / revocation list for client or backend certificate validation, and an
# AuthPolicy's htpasswd file (".htpasswd", or ingress-nginx's "auth") and JWKS.
# API-key Secrets (their own type) keep all their data.
SECRET_DATA_KEYS = frozenset(
    {"tls.crt", "tls.key", "ca.crt", "ca.crl", ".htpasswd", "auth", "jwks.json"}
)
# ConfigMap keys a Gateway can use: the CA bundle of BackendTLSPolicy.caCertificateRefs,
# and the JWKS of an AuthPolicy's JWT provider.
CONFIG_MAP_DATA_KEYS = frozenset({"ca.crt", "jwks.json"})
# a probe's timing fields a derived probe reads (translate/graph/readiness.py)
_PROBE_FIELDS = ("periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold")
# metadata the controller reads of a Secret or ConfigMap (identity, ordering, selection)
_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "labels",
    "annotations",
)


def drop_managed_fields(obj: KubeObject) -> KubeObject:
    """`obj` without metadata.managedFields and the last-applied annotation."""
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if "managedFields" not in metadata and LAST_APPLIED_ANNOTATION not in annotations:
        return obj  # nothing to drop: spare the copy
    trimmed = {key: value for key, value in metadata.items() if key != "managedFields"}
    if LAST_APPLIED_ANNOTATION in annotations:
        trimmed["annotations"] = _without_last_applied(annotations)
    return {**obj, "metadata": trimmed}


def trim_secret(obj: KubeObject) -> KubeObject:
    """Identity, `type` and only the keys of a Secret's data a Gateway can use (all of
    an API-key Secret's)."""
    if obj.get("type") == API_KEY_SECRET_TYPE:
        return _trim(obj, (obj.get("data") or {}).keys())
    return _trim(obj, SECRET_DATA_KEYS)


def trim_config_map(obj: KubeObject) -> KubeObject:
    """Identity and only the CA bundle key of a ConfigMap's data."""
    return _trim(obj, CONFIG_MAP_DATA_KEYS)


def trim_pod(obj: KubeObject) -> KubeObject:
    """Identity, the service account (the mesh reads it) and, of each container with
    an httpGet readinessProbe or livenessProbe, those probes and its ports (a
    probe derived from them reads them: translate/graph/readiness.py). A pod's
    spec and status are most of its size, and a cluster has many."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    containers = [
        {"ports": _container_ports(container), **probes}
        for container in spec.get("containers") or []
        if (probes := _http_probes(container))
    ]
    return {
        "apiVersion": obj.get("apiVersion", "v1"),
        "kind": obj.get("kind", "Pod"),
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "uid", "resourceVersion")
            if key in metadata
        },
        "spec": {
            "serviceAccountName": spec.get("serviceAccountName", "default"),
            **({"containers": containers} if containers else {}),
        },
    }


def transform_for(resource: Resource) -> Transform:
    """The transform an informer on `resource` should use."""
    if resource == POD:
        return trim_pod
    if resource == SECRET:
        return trim_secret
    if resource == CONFIG_MAP:
        return trim_config_map
    return drop_managed_fields


def _container_ports(container: KubeObject) -> list[KubeObject]:
    return [
        {key: port[key] for key in ("name", "containerPort") if key in port}
        for port in container.get("ports") or []
    ]


def _http_probes(container: KubeObject) -> KubeObject:
    """The container's readinessProbe and livenessProbe that are httpGet ones, with
    only their timing and request fields (of the headers, the Host)."""
    found = {}
    for kind in ("readinessProbe", "livenessProbe"):
        probe = container.get(kind) or {}
        http = probe.get("httpGet")
        if http is None:
            continue
        kept = {key: probe[key] for key in _PROBE_FIELDS if key in probe}
        kept["httpGet"] = {key: http[key] for key in ("path", "port", "scheme") if key in http}
        hosts = [h for h in http.get("httpHeaders") or [] if str(h.get("name")).lower() == "host"]
        if hosts:
            kept["httpGet"]["httpHeaders"] = hosts
        found[kind] = kept
    return found


def _trim(obj: KubeObject, data_keys: Collection[str]) -> KubeObject:
    metadata = obj.get("metadata") or {}
    kept_metadata = {key: metadata[key] for key in _KEPT_METADATA if key in metadata}
    if "annotations" in kept_metadata:
        kept_metadata["annotations"] = _without_last_applied(kept_metadata["annotations"])
    trimmed: KubeObject = {key: obj[key] for key in ("apiVersion", "kind", "type") if key in obj}
    trimmed["metadata"] = kept_metadata
    data = obj.get("data") or {}
    trimmed["data"] = {key: value for key, value in data.items() if key in data_keys}
    return trimmed


def _without_last_applied(annotations: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in annotations.items() if key != LAST_APPLIED_ANNOTATION}
