"""API client construction and the few raw calls kubernetes-asyncio lacks.

kubernetes-asyncio's generated PATCH helpers pick a merge-patch content type;
server-side apply needs `application/apply-patch+yaml`, so `server_side_apply`
calls the REST path directly.
"""

from __future__ import annotations

import os
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
    return client.ApiClient(configuration=configuration)


async def api_client(kubeconfig: Path | None) -> client.ApiClient:
    """In a pod with no kubeconfig given: the service account; otherwise the kubeconfig."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration=configuration)
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


async def served_resources(api: client.ApiClient, group_version: str) -> set[str]:
    """Plural names the server serves under `group_version` ("v1" or "group/v1").

    Empty when the group version is not served (e.g. CRDs not installed).
    """
    path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    try:
        result = await api.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json"},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except ApiException as e:
        if e.status == 404:
            return set()
        raise
    return {str(res["name"]) for res in result.get("resources") or [] if "/" not in res["name"]}
