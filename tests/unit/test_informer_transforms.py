"""Transforms: what the cache keeps of each object, and that inputs are not mutated."""

from __future__ import annotations

import copy
from typing import Any

from agc_controller.core.resources import CONFIG_MAP, HTTP_ROUTE, SECRET
from agc_controller.informers import (
    drop_managed_fields,
    transform_for,
    trim_config_map,
    trim_secret,
)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _metadata(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "ns",
        "uid": "u-1",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2025-01-01T00:00:00Z",
        "labels": {"app": "web"},
        "annotations": {LAST_APPLIED: '{"big": "blob"}', "team": "a"},
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}],
        "ownerReferences": [{"kind": "Deployment", "name": "web"}],
        "finalizers": ["x"],
    }


def test_drop_managed_fields_keeps_everything_else() -> None:
    route = {"apiVersion": "v1", "kind": "HTTPRoute", "metadata": _metadata("r"), "spec": {"a": 1}}
    before = copy.deepcopy(route)

    trimmed = drop_managed_fields(route)

    assert route == before  # input untouched
    assert "managedFields" not in trimmed["metadata"]
    assert trimmed["metadata"]["annotations"] == {"team": "a"}
    assert trimmed["metadata"]["ownerReferences"] == route["metadata"]["ownerReferences"]
    assert trimmed["spec"] == {"a": 1}
    assert trimmed["kind"] == "HTTPRoute"


def test_drop_managed_fields_without_anything_to_drop_returns_the_object() -> None:
    obj = {"metadata": {"name": "x", "annotations": {"team": "a"}}}
    assert drop_managed_fields(obj) is obj


def test_trim_secret_keeps_only_certificate_material() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": _metadata("cert"),
        "data": {
            "tls.crt": "Y3J0",
            "tls.key": "a2V5",
            "ca.crt": "Y2E=",
            "ca.crl": "Y3Js",
            "x": "eA==",
        },
        "immutable": True,
    }
    before = copy.deepcopy(secret)

    trimmed = trim_secret(secret)

    assert secret == before
    assert trimmed == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": "cert",
            "namespace": "ns",
            "uid": "u-1",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"app": "web"},
            "annotations": {"team": "a"},
        },
        "data": {"tls.crt": "Y3J0", "tls.key": "a2V5", "ca.crt": "Y2E=", "ca.crl": "Y3Js"},
    }


def test_trim_secret_drops_helm_releases_and_tokens() -> None:
    helm = {
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {"name": "sh.helm.release.v1.web.v1", "namespace": "ns"},
        "data": {"release": "H4sI" * 1000},
    }
    token = {
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "sa-token", "namespace": "ns"},
        "data": {"token": "ZXlK", "namespace": "bnM="},
    }
    assert trim_secret(helm)["data"] == {}
    assert trim_secret(token)["data"] == {}
    assert trim_secret(token)["type"] == "kubernetes.io/service-account-token"


def test_trim_config_map_keeps_only_the_ca_bundle() -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata("ca"),
        "data": {"ca.crt": "-----BEGIN CERTIFICATE-----", "app.properties": "x=1"},
        "binaryData": {"blob": "AAAA"},
    }
    trimmed = trim_config_map(config_map)
    assert trimmed["data"] == {"ca.crt": "-----BEGIN CERTIFICATE-----"}
    assert "binaryData" not in trimmed
    assert "managedFields" not in trimmed["metadata"]
    assert trimmed["metadata"]["resourceVersion"] == "42"
    assert trim_config_map({"metadata": {"name": "empty"}})["data"] == {}


def test_transform_for_picks_by_kind() -> None:
    assert transform_for(SECRET) is trim_secret
    assert transform_for(CONFIG_MAP) is trim_config_map
    assert transform_for(HTTP_ROUTE) is drop_managed_fields
