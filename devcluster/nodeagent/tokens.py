"""Service account tokens for projected volumes, through the TokenRequest API,
bound to the pod (they stop working when it is deleted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client.rest import ApiException

from agc_controller.informers import KubeObject
from devcluster.nodeagent.api import Api
from devcluster.nodeagent.podspec import ConfigError


async def service_account_token(api: Api, pod: KubeObject, source: Mapping[str, Any]) -> str:
    """A token of `pod`'s service account, bound to the pod, for a projected
    serviceAccountToken `source` (audience, expirationSeconds)."""
    metadata = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    audience = source.get("audience")
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [audience] if audience else [],
            "expirationSeconds": int(source.get("expirationSeconds") or 3600),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": metadata["name"],
                "uid": metadata["uid"],
            },
        },
    }
    path = f"/api/v1/namespaces/{metadata['namespace']}/serviceaccounts/{account}/token"
    try:
        response = await api.call("POST", path, body=request)
    except ApiException as error:
        raise ConfigError(
            "ContainerCreating", f"token for service account {account}: {error.reason}"
        ) from error
    return str(response["status"]["token"])
