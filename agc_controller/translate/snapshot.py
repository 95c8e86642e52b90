"""The input of translation: a consistent, read-only view of the objects it needs.

The controller builds a Snapshot from informer stores (only what one Gateway's
translation can touch); golden tests build one from YAML. Objects are raw API
dicts and are never mutated. Keys are "namespace/name" ("name" for
cluster-scoped kinds); EndpointSlices are grouped by "namespace/service".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from agc_controller.core.keys import namespaced_name, object_key

Obj = dict[str, Any]


@attrs.frozen
class RemoteDocument:
    """A document fetched from a URL (controller/jwks.py): its text, or why there is
    none (never fetched successfully)."""

    text: str | None = None
    problem: str | None = None


@attrs.frozen
class Snapshot:
    gateway_classes: Mapping[str, Obj] = attrs.field(factory=dict)
    gateways: Mapping[str, Obj] = attrs.field(factory=dict)
    http_routes: Mapping[str, Obj] = attrs.field(factory=dict)
    grpc_routes: Mapping[str, Obj] = attrs.field(factory=dict)
    tls_routes: Mapping[str, Obj] = attrs.field(factory=dict)
    tcp_routes: Mapping[str, Obj] = attrs.field(factory=dict)
    udp_routes: Mapping[str, Obj] = attrs.field(factory=dict)
    # the ListenerSets naming the Gateway, and those its routes name
    listener_sets: Mapping[str, Obj] = attrs.field(factory=dict)
    backend_tls_policies: Mapping[str, Obj] = attrs.field(factory=dict)
    # our RateLimitPolicies targeting the Gateway or its routes, or with its ancestor entry
    rate_limit_policies: Mapping[str, Obj] = attrs.field(factory=dict)
    # our HealthCheckPolicies targeting the Services its routes send to, or with its
    # ancestor entry
    health_check_policies: Mapping[str, Obj] = attrs.field(factory=dict)
    # our BackendLoadBalancingPolicies, found as the HealthCheckPolicies are
    load_balancing_policies: Mapping[str, Obj] = attrs.field(factory=dict)
    # our AuthPolicies, found as the RateLimitPolicies are
    auth_policies: Mapping[str, Obj] = attrs.field(factory=dict)
    # the JWKS documents the AuthPolicies name by URL, as the controller fetched them
    remote_jwks: Mapping[str, RemoteDocument] = attrs.field(factory=dict)
    # our WebApplicationFirewallPolicies, found as the RateLimitPolicies are
    waf_policies: Mapping[str, Obj] = attrs.field(factory=dict)
    # our HTTPRouteFilters the routes name in ExtensionRef filters
    route_filters: Mapping[str, Obj] = attrs.field(factory=dict)
    reference_grants: Mapping[str, Obj] = attrs.field(factory=dict)
    services: Mapping[str, Obj] = attrs.field(factory=dict)
    # EndpointSlices of one Service, keyed by "namespace/service-name"
    endpoint_slices: Mapping[str, tuple[Obj, ...]] = attrs.field(factory=dict)
    secrets: Mapping[str, Obj] = attrs.field(factory=dict)
    config_maps: Mapping[str, Obj] = attrs.field(factory=dict)
    namespaces: Mapping[str, Obj] = attrs.field(factory=dict)
    # the pods behind the Services' endpoints ("ns/name"): those with an Istio sidecar
    # (mesh mTLS on), or all (probes from readinessProbes: graph/readiness.py)
    pods: Mapping[str, Obj] = attrs.field(factory=dict)
    # networking.k8s.io: every IngressClass, and the Ingresses one translation reads
    ingress_classes: Mapping[str, Obj] = attrs.field(factory=dict)
    ingresses: Mapping[str, Obj] = attrs.field(factory=dict)

    @classmethod
    def from_objects(cls, objects: Iterable[Obj]) -> Snapshot:
        """Sort a flat list of API objects (e.g. a YAML file) into a Snapshot."""
        by_kind: dict[str, dict[str, Obj]] = {}
        slices: dict[str, list[Obj]] = {}
        for obj in objects:
            kind = obj.get("kind", "")
            if kind == "EndpointSlice":
                meta = obj["metadata"]
                service = meta.get("labels", {}).get("kubernetes.io/service-name", "")
                slices.setdefault(namespaced_name(meta.get("namespace"), service), []).append(obj)
                continue
            by_kind.setdefault(kind, {})[object_key(obj)] = obj
        return cls(
            gateway_classes=by_kind.get("GatewayClass", {}),
            gateways=by_kind.get("Gateway", {}),
            http_routes=by_kind.get("HTTPRoute", {}),
            grpc_routes=by_kind.get("GRPCRoute", {}),
            tls_routes=by_kind.get("TLSRoute", {}),
            tcp_routes=by_kind.get("TCPRoute", {}),
            udp_routes=by_kind.get("UDPRoute", {}),
            listener_sets=by_kind.get("ListenerSet", {}),
            backend_tls_policies=by_kind.get("BackendTLSPolicy", {}),
            rate_limit_policies=by_kind.get("RateLimitPolicy", {}),
            health_check_policies=by_kind.get("HealthCheckPolicy", {}),
            load_balancing_policies=by_kind.get("BackendLoadBalancingPolicy", {}),
            auth_policies=by_kind.get("AuthPolicy", {}),
            waf_policies=by_kind.get("WebApplicationFirewallPolicy", {}),
            route_filters=by_kind.get("HTTPRouteFilter", {}),
            reference_grants=by_kind.get("ReferenceGrant", {}),
            services=by_kind.get("Service", {}),
            endpoint_slices={k: tuple(v) for k, v in slices.items()},
            secrets=by_kind.get("Secret", {}),
            config_maps=by_kind.get("ConfigMap", {}),
            namespaces=by_kind.get("Namespace", {}),
            pods=by_kind.get("Pod", {}),
            ingress_classes=by_kind.get("IngressClass", {}),
            ingresses=by_kind.get("Ingress", {}),
        )
