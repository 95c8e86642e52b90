"""Where a workload identity's token and the mesh's roots come from.

- `TokenRequest`: a short-lived token for a named service account through the
  Kubernetes TokenRequest API (the controller's own data planes: it needs
  `create` on `serviceaccounts/token`).
- `TokenFile`: a projected service-account token a kubelet keeps fresh in a
  file (a data-plane pod's own identity, as Istio's sidecars get theirs).
- `RootsConfigMap`: the `istio-ca-root-cert` ConfigMap istiod publishes into
  every namespace (key `root-cert.pem`).
- `RootsFile`: that ConfigMap's `root-cert.pem` mounted as a volume (a
  data-plane pod's, as Istio's sidecars read it).
Each reads afresh at every call: tokens expire and roots rotate.
"""

from __future__ import annotations

from pathlib import Path

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from agc_controller.mesh.errors import MeshError
from agc_controller.mesh.identity import TOKEN_AUDIENCE

ROOTS_CONFIGMAP = "istio-ca-root-cert"
ROOTS_KEY = "root-cert.pem"
# the shortest lifetime the API server grants; the token is used at once
TOKEN_LIFETIME_S = 600


@attrs.frozen
class TokenRequest:
    api: client.ApiClient
    namespace: str
    service_account: str

    async def __call__(self) -> str:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[TOKEN_AUDIENCE], expiration_seconds=TOKEN_LIFETIME_S
            )
        )
        try:
            answer = await client.CoreV1Api(self.api).create_namespaced_service_account_token(
                self.service_account, self.namespace, request
            )
        except ApiException as e:
            raise MeshError(
                f"no token for service account {self.namespace}/{self.service_account}: "
                f"{e.status} {e.reason}",
                temporary=e.status not in (401, 403),
            ) from None
        token: str = answer.status.token
        return token


@attrs.frozen
class TokenFile:
    path: Path

    async def __call__(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError as e:
            raise MeshError(
                f"cannot read the service-account token {self.path}: {e.strerror}"
            ) from None


@attrs.frozen
class RootsConfigMap:
    api: client.ApiClient
    namespace: str

    async def __call__(self) -> str:
        try:
            config_map = await client.CoreV1Api(self.api).read_namespaced_config_map(
                ROOTS_CONFIGMAP, self.namespace
            )
        except ApiException as e:
            raise MeshError(
                f"cannot read ConfigMap {self.namespace}/{ROOTS_CONFIGMAP} "
                f"({e.status} {e.reason}): istiod publishes it into every namespace; "
                "is istiod running?"
            ) from None
        roots = (config_map.data or {}).get(ROOTS_KEY)
        if not roots:
            raise MeshError(f"ConfigMap {self.namespace}/{ROOTS_CONFIGMAP} has no {ROOTS_KEY}")
        return str(roots)


@attrs.frozen
class RootsFile:
    path: Path

    async def __call__(self) -> str:
        try:
            roots = self.path.read_text()
        except OSError as e:
            raise MeshError(self._missing(e.strerror)) from None
        if not roots.strip():
            raise MeshError(self._missing("the file is empty"))
        return roots

    def _missing(self, why: str | None) -> str:
        return (
            f"no mesh root certificates in {self.path} ({why}): istiod publishes ConfigMap "
            f"{ROOTS_CONFIGMAP} into every namespace; is istiod running?"
        )
