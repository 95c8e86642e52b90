"""Index functions over cached objects: who refers to what.

The mapper turns a change into affected Gateway keys by walking these indexes
(service → routes → gateways, secret → gateways, ...), and the snapshot
builder gathers one Gateway's world through them. Values are "namespace/name"
strings, or "Kind/namespace/name" where kinds share an index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from agc_controller.core.keys import ObjectKey, namespaced_name
from agc_controller.core.resources import (
    GATEWAY_GROUP,
    HTTP_ROUTE_FILTER,
    LISTENER_SET,
    POLICY_GROUP,
)
from agc_controller.translate import ingress
from agc_controller.translate.graph import jwt
from agc_controller.translate.graph.backends import target_pod
from agc_controller.translate.ingress.annotations import referenced_objects

Obj = dict[str, Any]
Indexer = Callable[[Obj], Iterable[str]]

# index names
PARENT_GATEWAYS = "parent-gateways"  # routes, policies, ListenerSets -> "ns/gateway"
PARENT_LISTENER_SETS = "parent-listener-sets"  # routes -> "ns/listenerset"
BACKEND_SERVICES = "backend-services"  # routes -> "ns/service"
NAMESPACE = "namespace"  # any namespaced object -> "ns"
GATEWAY_CLASS = "gateway-class"  # gateways -> class name
CERTIFICATE_REFS = (
    # gateways, ListenerSets, policies -> "Secret/ns/name" | "ConfigMap/ns/name"
    "certificate-refs"
)
TARGET_SERVICES = "target-services"  # policies -> "ns/service"
TARGETS = "targets"  # our policies -> "Gateway/ns/name", "Service/ns/name", ...
SERVICE_NAME = "service-name"  # EndpointSlices -> "ns/service"
POD_TARGETS = "pod-targets"  # EndpointSlices -> "ns/pod" of the pods behind their endpoints
JWKS_URLS = "jwks-urls"  # AuthPolicies -> the JWKS URLs their JWT providers name
EXTENSION_REFS = "extension-refs"  # HTTPRoutes -> "ns/name" of our HTTPRouteFilters
INGRESS_CLASS = "ingress-class"  # Ingresses -> the class they name ("" none: the default)


def namespace_of(obj: Obj) -> Iterable[str]:
    return [obj["metadata"].get("namespace", "")]


def _gateway_ref(ref: Obj, default_namespace: str) -> str | None:
    if ref.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or ref.get("kind", "Gateway") != "Gateway":
        return None
    return namespaced_name(ref.get("namespace") or default_namespace, str(ref.get("name")))


def route_parent_gateways(obj: Obj) -> Iterable[str]:
    """Gateways a route names in spec.parentRefs, or that have status entries on it.

    Status entries matter: when a route drops a parentRef, that Gateway must still
    be reconciled to remove its entry.
    """
    namespace = obj["metadata"]["namespace"]
    refs = list((obj.get("spec") or {}).get("parentRefs") or [])
    refs += [p.get("parentRef") or {} for p in (obj.get("status") or {}).get("parents") or []]
    found = {_gateway_ref(ref, namespace) for ref in refs}
    found.discard(None)
    return sorted(f for f in found if f)


def route_parent_listener_sets(obj: Obj) -> Iterable[str]:
    """ListenerSets a route names in spec.parentRefs, or that have status entries on it
    (as for Gateways: a dropped parentRef still needs its entry removed)."""
    namespace = obj["metadata"]["namespace"]
    refs = list((obj.get("spec") or {}).get("parentRefs") or [])
    refs += [p.get("parentRef") or {} for p in (obj.get("status") or {}).get("parents") or []]
    return sorted(
        {
            namespaced_name(ref.get("namespace") or namespace, str(ref.get("name")))
            for ref in refs
            if ref.get("group", GATEWAY_GROUP) == GATEWAY_GROUP
            and ref.get("kind") == LISTENER_SET.kind
        }
    )


def listener_set_parent_gateway(obj: Obj) -> Iterable[str]:
    """The Gateway a ListenerSet's spec.parentRef names."""
    ref = (obj.get("spec") or {}).get("parentRef") or {}
    found = _gateway_ref(ref, obj["metadata"]["namespace"])
    return [found] if found else []


def listener_set_certificate_refs(obj: Obj) -> Iterable[str]:
    namespace = obj["metadata"]["namespace"]
    return sorted(
        {
            f"{ref.get('kind', 'Secret')}/{ref.get('namespace') or namespace}/{ref.get('name')}"
            for listener in (obj.get("spec") or {}).get("listeners") or []
            for ref in (listener.get("tls") or {}).get("certificateRefs") or []
            if ref.get("group", "") == ""
        }
    )


def policy_ancestor_gateways(obj: Obj) -> Iterable[str]:
    namespace = obj["metadata"]["namespace"]
    ancestors = (obj.get("status") or {}).get("ancestors") or []
    found = {_gateway_ref(a.get("ancestorRef") or {}, namespace) for a in ancestors}
    return sorted(f for f in found if f)


def _service_refs(refs: Iterable[Obj], namespace: str) -> Iterable[str]:
    for ref in refs:
        if ref.get("group", "") == "" and ref.get("kind", "Service") == "Service":
            yield namespaced_name(ref.get("namespace") or namespace, str(ref.get("name")))


def route_backend_services(obj: Obj) -> Iterable[str]:
    namespace = obj["metadata"]["namespace"]
    refs: list[Obj] = []
    for rule in (obj.get("spec") or {}).get("rules") or []:
        refs.extend(rule.get("backendRefs") or [])
        for f in rule.get("filters") or []:
            if f.get("type") == "RequestMirror":
                refs.append((f.get("requestMirror") or {}).get("backendRef") or {})
    return sorted(set(_service_refs(refs, namespace)))


def route_filter_backend_services(obj: Obj) -> Iterable[str]:
    """The Service ("ns/service") an HTTPRouteFilter's error pages come from."""
    ref = ((obj.get("spec") or {}).get("errorPages") or {}).get("backendRef") or {}
    return (
        [namespaced_name(obj["metadata"]["namespace"], str(ref["name"]))] if ref.get("name") else []
    )


def route_filter_refs(obj: Obj) -> Iterable[str]:
    """Our HTTPRouteFilters ("ns/name") an HTTPRoute's rules name in ExtensionRef filters."""
    namespace = obj["metadata"]["namespace"]
    return sorted(
        {
            namespaced_name(namespace, str(ref.get("name")))
            for rule in (obj.get("spec") or {}).get("rules") or []
            for f in rule.get("filters") or []
            if f.get("type") == "ExtensionRef"
            and (ref := f.get("extensionRef") or {}).get("group") == POLICY_GROUP
            and ref.get("kind") == HTTP_ROUTE_FILTER.kind
        }
    )


def gateway_class_name(obj: Obj) -> Iterable[str]:
    return [str((obj.get("spec") or {}).get("gatewayClassName", ""))]


def gateway_certificate_refs(obj: Obj) -> Iterable[str]:
    namespace = obj["metadata"]["namespace"]
    spec = obj.get("spec") or {}
    refs: list[Obj] = []
    for listener in spec.get("listeners") or []:
        refs.extend((listener.get("tls") or {}).get("certificateRefs") or [])
    tls = spec.get("tls") or {}
    backend_ref = (tls.get("backend") or {}).get("clientCertificateRef")
    if backend_ref:
        refs.append(backend_ref)
    frontend = tls.get("frontend") or {}
    configs = [frontend.get("default") or {}] + [
        p.get("tls") or {} for p in frontend.get("perPort") or []
    ]
    for config in configs:
        refs.extend((config.get("validation") or {}).get("caCertificateRefs") or [])
    return sorted(
        {
            f"{ref.get('kind', 'Secret')}/{ref.get('namespace') or namespace}/{ref.get('name')}"
            for ref in refs
            if ref.get("group", "") == ""
        }
    )


def policy_ca_refs(obj: Obj) -> Iterable[str]:
    namespace = obj["metadata"]["namespace"]
    validation = (obj.get("spec") or {}).get("validation") or {}
    return sorted(
        {
            f"{ref.get('kind')}/{namespace}/{ref.get('name')}"
            for ref in validation.get("caCertificateRefs") or []
            if ref.get("group", "") == ""
        }
    )


def policy_target_services(obj: Obj) -> Iterable[str]:
    namespace = obj["metadata"]["namespace"]
    targets = (obj.get("spec") or {}).get("targetRefs") or []
    return sorted(
        {
            namespaced_name(namespace, str(t.get("name")))
            for t in targets
            if t.get("group", "") == "" and t.get("kind") == "Service"
        }
    )


def endpoint_slice_service(obj: Obj) -> Iterable[str]:
    meta = obj["metadata"]
    service = (meta.get("labels") or {}).get("kubernetes.io/service-name")
    return [f"{meta['namespace']}/{service}"] if service else []


def endpoint_slice_pods(obj: Obj) -> Iterable[str]:
    """The pods ("ns/name") an EndpointSlice's endpoints say they are."""
    namespace = obj["metadata"]["namespace"]
    return [
        key
        for endpoint in obj.get("endpoints") or []
        if (key := target_pod(endpoint, namespace)) is not None
    ]


def policy_targets(obj: Obj) -> Iterable[str]:
    """What one of our policies targets, as ObjectKey strings ("HTTPRoute/ns/name")."""
    namespace = obj["metadata"]["namespace"]
    targets = (obj.get("spec") or {}).get("targetRefs") or []
    return sorted(
        {
            str(ObjectKey(str(t.get("kind")), namespace, str(t.get("name"))))
            for t in targets
            if t.get("group") == GATEWAY_GROUP
            or (t.get("group") == "" and t.get("kind") == "Service")
        }
    )


def auth_policy_secret_refs(obj: Obj) -> Iterable[str]:
    """The Secrets and ConfigMaps an AuthPolicy reads ("Secret/ns/name"): API keys,
    htpasswd, JWKS."""
    namespace = obj["metadata"]["namespace"]
    spec = obj.get("spec") or {}
    refs = [("Secret", r) for r in (spec.get("apiKey") or {}).get("secretRefs") or []]
    refs.append(("Secret", (spec.get("basic") or {}).get("secretRef") or {}))
    for provider in (spec.get("jwt") or {}).get("providers") or []:
        jwks = (provider.get("jwks") if isinstance(provider, dict) else None) or {}
        refs.append(("Secret", jwks.get("secretRef") or {}))
        refs.append(("ConfigMap", jwks.get("configMapRef") or {}))
    return sorted(
        {
            f"{kind}/{ref.get('namespace') or namespace}/{ref.get('name')}"
            for kind, ref in refs
            if isinstance(ref, dict) and ref.get("name") and ref.get("group", "") == ""
        }
    )


def auth_policy_jwks_urls(obj: Obj) -> Iterable[str]:
    """The well-formed JWKS URLs an AuthPolicy's JWT providers name (controller/jwks.py
    fetches them)."""
    return sorted({url for url in jwt.jwks_urls(obj) if jwt.is_jwks_url(url)})


def auth_policy_backend_services(obj: Obj) -> Iterable[str]:
    """An AuthPolicy's external authorization Service ("ns/service")."""
    ref = ((obj.get("spec") or {}).get("externalAuth") or {}).get("backendRef") or {}
    return list(_service_refs([ref], obj["metadata"]["namespace"])) if ref.get("name") else []


def ingress_class_name(obj: Obj) -> Iterable[str]:
    return [ingress.requested_class(obj)]


def ingress_backend_services(obj: Obj) -> Iterable[str]:
    """The Services an Ingress's rules and default backend name, and its auth-url's."""
    spec = obj.get("spec") or {}
    backends = [spec.get("defaultBackend") or {}]
    for rule in spec.get("rules") or []:
        backends += [p.get("backend") or {} for p in (rule.get("http") or {}).get("paths") or []]
    namespace = obj["metadata"].get("namespace", "")
    found = {
        namespaced_name(namespace, str(service["name"]))
        for backend in backends
        if (service := backend.get("service")) and service.get("name")
    }
    _, named = referenced_objects(obj["metadata"].get("annotations") or {}, namespace)
    found.update(named)
    return sorted(found)


def ingress_certificate_refs(obj: Obj) -> Iterable[str]:
    """The Secrets ("Secret/ns/name") an Ingress's TLS entries and auth-secret name."""
    namespace = obj["metadata"].get("namespace", "")
    found = {
        f"Secret/{namespace}/{entry['secretName']}"
        for entry in (obj.get("spec") or {}).get("tls") or []
        if entry.get("secretName")
    }
    secrets, _ = referenced_objects(obj["metadata"].get("annotations") or {}, namespace)
    found.update(f"Secret/{secret}" for secret in secrets)
    return sorted(found)
