"""Synthetic Gateway API objects for benchmarks: one Gateway, N HTTPRoutes, N Services."""

from __future__ import annotations

from typing import Any

GW = "gateway.networking.k8s.io"
CONTROLLER = "agc-controller.io/bench"


def gateway_class(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": CONTROLLER},
    }


def gateway(namespace: str, class_name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": namespace, "generation": 1},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }


def route(namespace: str, i: int, *, path_suffix: str = "") -> dict[str, Any]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": f"route-{i:05d}",
            "namespace": namespace,
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [f"host-{i % 50}.example.com"],
            "rules": [
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": f"/svc-{i}{path_suffix}"},
                            "headers": [{"name": "x-tenant", "value": f"t{i % 7}"}],
                        }
                    ],
                    "backendRefs": [{"name": f"svc-{i % 100}", "port": 80}],
                }
            ],
        },
    }


def service(namespace: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i}", "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def endpoint_slice(namespace: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i}-a",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": f"svc-{i}"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [f"10.{i // 250}.{i % 250}.{j}"]} for j in range(1, 4)],
    }
