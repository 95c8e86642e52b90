"""The objects that run one Gateway's data plane in the cluster (pure).

Per Gateway, in the Gateway's namespace, all with the same name (`object_name`)
and owned by the Gateway (ownerReferences, so the garbage collector removes
them with it; owner references cannot cross namespaces, which is why nothing
goes to a namespace of its own). The Gateway an IngressClass's Ingresses are
served as exists only in translation: its data plane lives in the controller's
namespace, owned by the IngressClass (a cluster-scoped owner may own objects of
any namespace), named `agc-ingress-<class>`:

- Secret: the configuration's manifest (config.py), watched by the agent, and
  its shard Secrets `<name>-s<kk>` (the only objects named otherwise), which
  the agent reads as the manifest lists them;
- ServiceAccount, Role, RoleBinding: the agent may list, watch and patch the
  manifest's Secret (`resourceNames`; list and watch are allowed for it only
  with a `metadata.name` field selector, which is how the agent watches), get
  the shard Secrets (every name a shard can have: the set is fixed), and
  nothing else;
- Deployment: the agent with NGINX, `replicas` pods; with mesh mTLS on
  (settings.mesh), each pod also gets what it needs to obtain its own workload
  certificate from istiod, as an Istio sidecar does: a projected token of its
  service account (audience istio-ca) and the mesh's roots (the
  istio-ca-root-cert ConfigMap), both as volumes;
- Service: the Gateway's listener ports, port = targetPort (NGINX listens on
  the listener ports themselves; the pod's `net.ipv4.ip_unprivileged_port_start`
  sysctl lets the non-root NGINX bind ports below 1024).

Invariant: the pod template does not depend on the routing configuration or on
the listeners, so no configuration change ever restarts a data-plane pod;
configuration reaches running pods only through the Secrets.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import attrs

from agc_controller.core.errors import PermanentError
from agc_controller.core.keys import ObjectKey
from agc_controller.dataplane.addresses import requested_addresses
from agc_controller.dataplane.config import (
    DIGEST_ANNOTATION,
    SHARDS,
    VERSION_ANNOTATION,
    shard_name,
)
from agc_controller.dataplane.settings import SERVICE_TYPES, DataPlaneMesh, DataPlaneSettings
from agc_controller.mesh.identity import TOKEN_AUDIENCE
from agc_controller.mesh.sources import ROOTS_CONFIGMAP, ROOTS_KEY
from agc_controller.translate.ingress import SERVED_NAMESPACE
from agc_controller.translate.model import LoadBalancer

# the agent's state directory in the pod (an emptyDir; the root filesystem is read-only)
STATE_DIR = "/var/lib/agc-dataplane"
CONTAINER = "dataplane"
FIELD_MANAGER = "agc-controller"

# mesh mTLS (settings.mesh): where a pod's own identity comes from, as Istio's
# sidecar injector lays it out; the agent's --mesh-token-file and
# --mesh-roots-file default to these files
MESH_TOKEN_DIR = "/var/run/secrets/tokens"
# the token's volume and its file in MESH_TOKEN_DIR (Istio's name for both)
_ISTIO_TOKEN = "istio-token"
MESH_TOKEN_FILE = f"{MESH_TOKEN_DIR}/{_ISTIO_TOKEN}"
MESH_ROOTS_DIR = "/var/run/secrets/istio"
MESH_ROOTS_FILE = f"{MESH_ROOTS_DIR}/{ROOTS_KEY}"
# the projected token's lifetime (Istio's injector asks for 12 hours; the kubelet
# replaces it at 80 % of that)
MESH_TOKEN_LIFETIME_S = 43200

APP = "agc-dataplane"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# a digest of the controllerName: which controller manages the object
LABEL_CONTROLLER = "dataplane.agc-controller.io/controller"
# GEP-1762's label; set only when the Gateway's name fits a label value
LABEL_GATEWAY = "gateway.networking.k8s.io/gateway-name"
# the Gateway's namespace/name (labels cannot hold every Gateway name)
GATEWAY_ANNOTATION = "dataplane.agc-controller.io/gateway"

# Gateway (or GatewayClass) annotations overriding the controller's defaults
REPLICAS_ANNOTATION = "dataplane.agc-controller.io/replicas"
SERVICE_TYPE_ANNOTATION = "dataplane.agc-controller.io/service-type"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class InvalidOverride(PermanentError, ValueError):
    """A data-plane annotation on the Gateway or its class has a value we cannot use."""


@attrs.frozen
class Owner:
    """What a data plane's objects belong to (their ownerReference)."""

    api_version: str
    kind: str
    name: str
    uid: str


def object_name(gateway: ObjectKey) -> str:
    """The name of every data-plane object of `gateway`: a DNS-1035 label (a Service
    name), `agc-<gateway>` when that is one (`agc-ingress-<class>` for an IngressClass's),
    else a sanitised prefix and a digest."""
    prefix = "agc-ingress" if serves_ingress(gateway) else "agc"
    plain = f"{prefix}-{gateway.name}"
    if len(plain) <= 63 and _DNS_LABEL.match(plain):
        return plain
    # within the 63 characters of a label, digest included
    stem = re.sub(r"[^a-z0-9-]+", "-", gateway.name.lower())[: 53 - len(prefix)].strip("-")
    digest = hashlib.sha256(gateway.name.encode()).hexdigest()[:8]
    return f"{prefix}-{stem}-{digest}" if stem else f"{prefix}-{digest}"


def serves_ingress(gateway: ObjectKey) -> bool:
    """Whether `gateway` is the one an IngressClass's Ingresses are served as."""
    return gateway.namespace == SERVED_NAMESPACE


def controller_label(controller_name: str) -> str:
    return hashlib.sha256(controller_name.encode()).hexdigest()[:16]


def gateway_of(obj: Mapping[str, Any]) -> ObjectKey | None:
    """The Gateway a data-plane object belongs to (from its annotation)."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(GATEWAY_ANNOTATION, "")
    namespace, sep, name = value.partition("/")
    return ObjectKey("Gateway", namespace, name) if sep and namespace and name else None


@attrs.frozen(kw_only=True)
class DataPlane:
    """Everything the manifests of one Gateway's data plane are made from."""

    gateway: ObjectKey
    # where the objects live, and what owns them
    namespace: str
    owner: Owner
    controller_name: str
    settings: DataPlaneSettings
    replicas: int
    service_type: str
    # the distinct listener ports with their transport ("TCP", or "UDP" for UDP
    # listeners), sorted
    ports: tuple[tuple[int, str], ...]
    infrastructure_labels: tuple[tuple[str, str], ...] = ()
    infrastructure_annotations: tuple[tuple[str, str], ...] = ()
    # the addresses the Gateway requested, the Service's spec.externalIPs (addresses.py)
    external_ips: tuple[str, ...] = ()

    @classmethod
    def for_model(
        cls,
        model: LoadBalancer,
        *,
        namespace: str,
        owner: Owner,
        controller_name: str,
        settings: DataPlaneSettings,
    ) -> DataPlane:
        """Raises InvalidOverride for an unusable replicas or service-type annotation."""
        annotations = dict(model.annotations)
        return cls(
            gateway=model.gateway,
            namespace=namespace,
            owner=owner,
            controller_name=controller_name,
            settings=settings,
            replicas=_replicas(annotations.get(REPLICAS_ANNOTATION), settings.replicas),
            service_type=_service_type(
                annotations.get(SERVICE_TYPE_ANNOTATION), settings.service_type
            ),
            ports=tuple(
                sorted({(f.port, "UDP" if f.protocol == "UDP" else "TCP") for f in model.frontends})
            ),
            infrastructure_labels=model.infrastructure_labels,
            infrastructure_annotations=model.infrastructure_annotations,
            external_ips=requested_addresses(model.addresses),
        )

    @property
    def name(self) -> str:
        return object_name(self.gateway)

    @property
    def selector(self) -> dict[str, str]:
        return {LABEL_NAME: APP, LABEL_INSTANCE: self.name}

    def secret(self, data: dict[str, str], version: str) -> dict[str, Any]:
        """The manifest's Secret (config.py)."""
        return self._secret(self.name, data, {VERSION_ANNOTATION: version})

    def shard_secret(self, shard: int, data: dict[str, str], digest: str) -> dict[str, Any]:
        """The Secret of shard `shard`, holding the document whose digest is `digest`."""
        return self._secret(shard_name(self.name, shard), data, {DIGEST_ANNOTATION: digest})

    def _secret(
        self, name: str, data: dict[str, str], annotations: Mapping[str, str]
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self._metadata(name=name, extra_annotations=annotations),
            "type": "Opaque",
            "data": data,
        }

    def service_account(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": self._metadata()}

    def role(self) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": self._metadata(),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": [self.name],
                    "verbs": ["list", "watch", "patch"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": [shard_name(self.name, shard) for shard in range(SHARDS)],
                    "verbs": ["get"],
                },
            ],
        }

    def role_binding(self) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": self._metadata(),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.name},
            "subjects": [
                {"kind": "ServiceAccount", "name": self.name, "namespace": self.namespace}
            ],
        }

    def service(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "type": self.service_type,
            "selector": self.selector,
            "ports": [
                {
                    "name": f"{'udp' if transport == 'UDP' else 'port'}-{port}",
                    "port": port,
                    "targetPort": port,
                    "protocol": transport,
                }
                for port, transport in self.ports
            ],
        }
        if self.external_ips:
            spec["externalIPs"] = list(self.external_ips)
        return {"apiVersion": "v1", "kind": "Service", "metadata": self._metadata(), "spec": spec}

    def deployment(self) -> dict[str, Any]:
        settings = self.settings
        container: dict[str, Any] = {
            "name": CONTAINER,
            "image": settings.image,
            "imagePullPolicy": settings.image_pull_policy,
            # the image's entrypoint is `agc-controller dataplane`
            "args": [
                f"--secret={self.name}",
                f"--state-dir={STATE_DIR}",
                f"--health-address=:{settings.health_port}",
            ],
            "env": [
                {
                    "name": "POD_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                },
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                # NGINX's unix sockets: on the emptyDir (the root filesystem is read-only)
                {"name": "AGC_SOCKET_DIR", "value": f"{STATE_DIR}/run"},
            ],
            # listener ports are not listed: they would put the listeners into the pod
            # template, and a listener change would restart every pod
            "ports": [{"name": "health", "containerPort": settings.health_port, "protocol": "TCP"}],
            "readinessProbe": {
                "httpGet": {"path": "/readyz", "port": "health"},
                "periodSeconds": 2,
            },
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "health"},
                "periodSeconds": 10,
                "failureThreshold": 3,
            },
            # no preStop hook: on SIGTERM the agent drains for --drain-seconds (5), serving
            # while the endpoint removal reaches every proxy and load balancer, then stops
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}],
        }
        volumes: list[dict[str, Any]] = [{"name": "state", "emptyDir": {}}]
        if settings.mesh is not None:
            _add_mesh(container, volumes, settings.mesh)
        if settings.resources:
            container["resources"] = settings.resources
        template_metadata: dict[str, Any] = {
            "labels": {**dict(self.infrastructure_labels), **self.selector}
        }
        if self.infrastructure_annotations:
            template_metadata["annotations"] = dict(self.infrastructure_annotations)
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self._metadata(),
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": self.selector},
                # a new pod is ready (serving the configuration) before an old one stops
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                },
                "template": {
                    "metadata": template_metadata,
                    "spec": {
                        "serviceAccountName": self.name,
                        "automountServiceAccountToken": True,
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            # a safe (namespaced) sysctl: listener ports below 1024
                            # without any capability
                            "sysctls": [
                                {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
                            ],
                        },
                        "containers": [container],
                        "volumes": volumes,
                        **(
                            {"imagePullSecrets": [{"name": n} for n in settings.image_pull_secrets]}
                            if settings.image_pull_secrets
                            else {}
                        ),
                    },
                },
            },
        }

    def _metadata(
        self, *, name: str = "", extra_annotations: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Every object's metadata: named `name`, by default the data plane's name."""
        labels = {
            **dict(self.infrastructure_labels),
            **self.selector,
            LABEL_MANAGED_BY: "agc-controller",
            LABEL_CONTROLLER: controller_label(self.controller_name),
        }
        if len(self.gateway.name) <= 63 and _LABEL_VALUE.match(self.gateway.name):
            labels[LABEL_GATEWAY] = self.gateway.name
        annotations = {
            **dict(self.infrastructure_annotations),
            GATEWAY_ANNOTATION: self.gateway.namespaced_name,
            **(extra_annotations or {}),
        }
        return {
            "name": name or self.name,
            "namespace": self.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": self.owner.api_version,
                    "kind": self.owner.kind,
                    "name": self.owner.name,
                    "uid": self.owner.uid,
                    "controller": True,
                }
            ],
        }


def _add_mesh(
    container: dict[str, Any], volumes: list[dict[str, Any]], mesh: DataPlaneMesh
) -> None:
    """What a pod needs to obtain its own workload certificate from istiod (the agent's
    --mesh-* options): a token of its service account for istiod, and the mesh's roots."""
    container["args"] += [
        f"--mesh-ca-address={mesh.ca_address}",
        f"--mesh-ca-server-name={mesh.ca_server_name}",
        f"--mesh-trust-domain={mesh.trust_domain}",
    ]
    container["env"].append(
        {
            "name": "POD_SERVICE_ACCOUNT",
            "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
        }
    )
    container["volumeMounts"] += [
        {"name": _ISTIO_TOKEN, "mountPath": MESH_TOKEN_DIR, "readOnly": True},
        {"name": ROOTS_CONFIGMAP, "mountPath": MESH_ROOTS_DIR, "readOnly": True},
    ]
    volumes += [
        # the kubelet keeps the token fresh in the file
        {
            "name": _ISTIO_TOKEN,
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": TOKEN_AUDIENCE,
                            "expirationSeconds": MESH_TOKEN_LIFETIME_S,
                            "path": _ISTIO_TOKEN,
                        }
                    }
                ]
            },
        },
        # optional: a pod may start before istiod publishes the ConfigMap into its
        # namespace; the agent reports the roots missing until the kubelet adds them
        {"name": ROOTS_CONFIGMAP, "configMap": {"name": ROOTS_CONFIGMAP, "optional": True}},
    ]


def _replicas(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise InvalidOverride(
            f"metadata.annotations[{REPLICAS_ANNOTATION}]: {value[:32]!r} is not a whole "
            "number of at least 1."
        )
    return int(value)


def _service_type(value: str | None, default: str) -> str:
    if value is None:
        return default
    if value not in SERVICE_TYPES:
        raise InvalidOverride(
            f"metadata.annotations[{SERVICE_TYPE_ANNOTATION}]: {value[:32]!r} is not one of "
            f"{', '.join(SERVICE_TYPES)}."
        )
    return value
