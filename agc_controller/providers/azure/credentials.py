"""How the controller signs in to Azure (`AGC_AZURE_CREDENTIAL`).

- `auto` (the default): in a pod (KUBERNETES_SERVICE_HOST is set), Microsoft
  Entra Workload ID alone — `WorkloadIdentityCredential`, from the variables
  the workload identity webhook injects (AZURE_CLIENT_ID, AZURE_TENANT_ID,
  AZURE_FEDERATED_TOKEN_FILE). `DefaultAzureCredential` would fall back to the
  node's managed identity when the service account is not federated, and
  silently act with the node's permissions; a missing federation must be an
  error the Gateway reports instead. Outside a cluster, `DefaultAzureCredential`
  (environment variables, the Azure CLI's sign-in, ...).
- `workload-identity`, `managed-identity`: that credential alone.
- `default`: `DefaultAzureCredential`, whatever it finds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity import CredentialUnavailableError
from azure.identity.aio import (
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)


def azure_credential(kind: str, env: Mapping[str, str] | None = None) -> AsyncTokenCredential:
    env = os.environ if env is None else env
    if kind == "auto":
        kind = "workload-identity" if env.get("KUBERNETES_SERVICE_HOST") else "default"
    if kind == "workload-identity":
        try:
            return WorkloadIdentityCredential()
        except ValueError as e:
            # the pod is not set up for it: every Gateway says so (and retries), the
            # controller still runs
            return Unavailable(f"workload identity is not configured for this pod: {e}")
    if kind == "managed-identity":
        return ManagedIdentityCredential()
    return DefaultAzureCredential()


class Unavailable:
    """A credential that cannot sign in, and says why at every attempt."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise CredentialUnavailableError(self.reason)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Unavailable:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
