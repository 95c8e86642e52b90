"""backendRefs → Services → ready endpoints (from EndpointSlices).

An unresolvable backendRef still occupies its weight: the data plane answers
HTTP 500 for that share of traffic (Gateway API), so it becomes a
`ResolvedBackend(valid=False)` together with the problem for ResolvedRefs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey, namespaced_name
from agc_controller.core.resources import GATEWAY_GROUP
from agc_controller.translate.model import BackendProtocol, Endpoint, HeaderModifier
from agc_controller.translate.refgrants import Ref, ReferenceGrants
from agc_controller.translate.snapshot import Obj, Snapshot

# the appProtocol of a Service port spoken to in HTTP/2 without TLS (gRPC)
H2C_APP_PROTOCOL = "kubernetes.io/h2c"
_APP_PROTOCOLS: dict[str, BackendProtocol] = {H2C_APP_PROTOCOL: "h2c", "kubernetes.io/ws": "ws"}


@attrs.frozen
class ResolvedBackend:
    name: str  # "namespace/service:port", for the data plane and messages
    weight: int
    valid: bool
    service: ObjectKey | None = None
    port: int | None = None
    # the Service port's name: BackendTLSPolicy targets it by sectionName
    port_name: str | None = None
    protocol: BackendProtocol = "http"
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    # the Service's namespace is in the Istio mesh (and mesh mTLS is on): see in_mesh
    mesh: bool = False


@attrs.frozen
class EndpointSource:
    """Where a backend's endpoints come from: one port of one Service."""

    name: str  # the backend's name (LoadBalancer.endpoints key)
    service: ObjectKey
    # the Service port's name, as the EndpointSlices' ports carry it (None: unnamed)
    port_name: str | None
    # over mesh mTLS: each endpoint names the service account of its sidecar pod
    mesh: bool = False


@attrs.frozen
class BackendProblem:
    reason: str
    message: str


def resolve_backend(
    ref: Obj,
    *,
    field: str,
    route_kind: str,
    route_namespace: str,
    snapshot: Snapshot,
    grants: ReferenceGrants,
    default_protocol: BackendProtocol,
    mesh: bool = False,
    from_group: str = GATEWAY_GROUP,
    request_headers: HeaderModifier | None = None,
    response_headers: HeaderModifier | None = None,
) -> tuple[ResolvedBackend, BackendProblem | None]:
    group, kind = ref.get("group", ""), ref.get("kind", "Service")
    namespace = ref.get("namespace") or route_namespace
    name = str(ref.get("name", ""))
    port = ref.get("port")
    weight = int(ref.get("weight", 1))
    label = f"{namespace}/{name}:{port}"

    def invalid(reason: str, text: str) -> tuple[ResolvedBackend, BackendProblem]:
        return ResolvedBackend(name=label, weight=weight, valid=False), BackendProblem(reason, text)

    if group != "" or kind != "Service":
        return invalid(
            c.R_INVALID_KIND, f"{field} refers to unsupported kind {group or 'core'}/{kind}"
        )
    if not grants.allows(
        from_group=from_group,
        from_kind=route_kind,
        from_namespace=route_namespace,
        to=Ref(group, kind, namespace, name),
    ):
        return invalid(
            c.R_REF_NOT_PERMITTED,
            f"{field} refers to Service {namespace}/{name} in another namespace, and no "
            "ReferenceGrant allows it",
        )
    service = snapshot.services.get(namespaced_name(namespace, name))
    if service is None:
        return invalid(c.R_BACKEND_NOT_FOUND, f"{field}: Service {namespace}/{name} not found")
    spec = service.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return invalid(
            c.R_INVALID_KIND, f"{field}: ExternalName Service {namespace}/{name} is not supported"
        )
    if port is None:
        return invalid(c.R_BACKEND_NOT_FOUND, f"{field}.port is required for a Service")
    service_port = next((p for p in spec.get("ports") or [] if p.get("port") == port), None)
    if service_port is None:
        return invalid(
            c.R_BACKEND_NOT_FOUND, f"{field}: Service {namespace}/{name} has no port {port}"
        )
    protocol = _APP_PROTOCOLS.get(service_port.get("appProtocol", ""), default_protocol)
    return (
        ResolvedBackend(
            name=label,
            weight=weight,
            valid=True,
            service=ObjectKey("Service", namespace, name),
            port=int(port),
            port_name=service_port.get("name") or None,
            protocol=protocol,
            request_headers=request_headers,
            response_headers=response_headers,
            mesh=mesh and in_mesh(snapshot.namespaces.get(namespace)),
        ),
        None,
    )


def in_mesh(namespace: Obj | None) -> bool:
    """Whether Istio injects sidecars into the namespace's pods: the label
    `istio-injection: enabled`, or a revision label `istio.io/rev` (Istio's own
    rule; `istio-injection: disabled` wins over a revision)."""
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    injection = labels.get("istio-injection")
    if injection is not None:
        return bool(injection == "enabled")
    return bool(labels.get("istio.io/rev"))


def ready_endpoints(
    endpoint_slices: tuple[Obj, ...],
    port_name: str | None,
    pods: Mapping[str, Obj] | None = None,
) -> tuple[Endpoint, ...]:
    """Ready endpoints of one Service port (named `port_name`, None when unnamed)
    in the Service's EndpointSlices, sorted and de-duplicated; with `pods` (a mesh
    backend's), each names the service account of the sidecar pod it targets.

    EndpointSlice ports carry the Service port's name ("" when unnamed);
    `ready` unset counts as ready (the API's own rule).
    """
    port_name = port_name or ""
    found: set[Endpoint] = set()
    for endpoint_slice in endpoint_slices:
        if endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        target = next(
            (
                p.get("port")
                for p in endpoint_slice.get("ports") or []
                if (p.get("name") or "") == port_name
            ),
            None,
        )
        if target is None:
            continue
        namespace = endpoint_slice["metadata"]["namespace"]
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            account = None if pods is None else _service_account(endpoint, namespace, pods)
            for address in endpoint.get("addresses") or []:
                found.add(Endpoint(address=str(address), port=int(target), service_account=account))
    return tuple(sorted(found, key=lambda e: (e.address, e.port, e.service_account or "")))


def target_pod(endpoint: Obj, namespace: str) -> str | None:
    """The pod ("ns/name") an EndpointSlice endpoint says it is (`namespace`: the
    slice's), if it names one."""
    ref = endpoint.get("targetRef") or {}
    if ref.get("kind") != "Pod" or not ref.get("name"):
        return None
    return f"{ref.get('namespace') or namespace}/{ref['name']}"


def _service_account(endpoint: Obj, namespace: str, pods: Mapping[str, Obj]) -> str | None:
    key = target_pod(endpoint, namespace)
    pod = pods.get(key) if key else None
    if key is None or pod is None:
        return None
    account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
    return f"{key.partition('/')[0]}/{account}"


def endpoint_sources(backends: Iterable[ResolvedBackend]) -> tuple[EndpointSource, ...]:
    """Where each valid backend among `backends` takes its endpoints from."""
    return tuple(
        EndpointSource(name=b.name, service=b.service, port_name=b.port_name, mesh=b.mesh)
        for b in backends
        if b.valid and b.service is not None
    )
