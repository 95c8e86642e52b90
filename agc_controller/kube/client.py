"""API client construction and the few raw calls kubernetes-asyncio lacks.

kubernetes-asyncio's generated PATCH helpers pick a merge-patch content type;
server-side apply needs `application/apply-patch+yaml`, so `server_side_apply`
calls the REST path directly.

kubernetes-asyncio's session trusts the environment, which aiohttp honours by
reading the proxy variables and ~/.netrc again, in a thread, for every request:
a controller writing thousands of statuses pays for it on each. Our clients
look the proxy up once instead, when they are made (as client-go does), and
read no netrc (a Kubernetes API takes no netrc credentials).
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.core.resources import Resource

FIELD_MANAGER = "agc-controller"


async def api_client_from_kubeconfig(path: Path | None = None) -> client.ApiClient:
    """An ApiClient for `path` (or $KUBECONFIG / ~/.kube/config when None)."""
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(path) if path else None, client_configuration=configuration
    )
    return _api_client(configuration)


def _api_client(configuration: client.Configuration) -> client.ApiClient:
    if configuration.proxy is None:
        url = urllib.parse.urlsplit(str(configuration.host))
        proxies = urllib.request.getproxies()
        proxy = proxies.get(url.scheme) or proxies.get("all")
        if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
            configuration.proxy = proxy
    api = client.ApiClient(configuration=configuration)
    api.rest_client.pool_manager._trust_env = False
    return api


async def api_client(kubeconfig: Path | None) -> client.ApiClient:
    """In a pod with no kubeconfig given: the service account; otherwise the kubeconfig."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return _api_client(configuration)
    return await api_client_from_kubeconfig(kubeconfig)


async def server_side_apply(
    api: client.ApiClient,
    obj: dict[str, Any],
    *,
    plural: str,
    field_manager: str = FIELD_MANAGER,
    force: bool = True,
) -> dict[str, Any]:
    """Server-side apply `obj` (a full manifest) and return the stored object."""
    group, _, version = obj["apiVersion"].rpartition("/")
    metadata = obj["metadata"]
    namespace = metadata.get("namespace")
    resource = Resource(group, version, plural, obj["kind"], namespaced=namespace is not None)
    path = resource.object_path(metadata["name"], namespace)
    result = await api.call_api(
        path,
        "PATCH",
        query_params=[("fieldManager", field_manager), ("force", "true" if force else "false")],
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        body=obj,
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    stored: dict[str, Any] = result
    return stored


async def get_json(api: client.ApiClient, path: str) -> dict[str, Any]:
    """GET `path` from the API server as JSON; ApiException on an error status."""
    result: dict[str, Any] = await api.call_api(
        path,
        "GET",
        header_params={"Accept": "application/json"},
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    return result


async def served_resources(api: client.ApiClient, group_version: str) -> set[str]:
    """Plural names the server serves under `group_version` ("v1" or "group/v1").

    Empty when the group version is not served (e.g. CRDs not installed).
    """
    path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    try:
        result = await get_json(api, path)
    except ApiException as e:
        if e.status == 404:
            return set()
        raise
    return {str(res["name"]) for res in result.get("resources") or [] if "/" not in res["name"]}


async def served_spec_fields(
    api: client.ApiClient, group_version: str, kind: str
) -> dict[str, Any] | None:
    """The OpenAPI schema of `kind`'s spec as the server serves it (a CRD's schema
    is its installed channel's), from /openapi/v3; None when the server has none."""
    try:
        document = await get_json(api, f"/openapi/v3/apis/{group_version}")
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    group, _, version = group_version.partition("/")
    for schema in ((document.get("components") or {}).get("schemas") or {}).values():
        kinds = schema.get("x-kubernetes-group-version-kind") or []
        if {"group": group, "version": version, "kind": kind} in kinds:
            spec: dict[str, Any] | None = (schema.get("properties") or {}).get("spec")
            return spec
    return None


def has_field(schema: dict[str, Any] | None, path: tuple[str, ...]) -> bool:
    """Whether an OpenAPI object schema has the field at `path` (through arrays)."""
    for name in path:
        while schema is not None and schema.get("type") == "array":
            schema = schema.get("items")
        schema = ((schema or {}).get("properties") or {}).get(name)
        if schema is None:
            return False
    return True
