"""The node agent's calls to the apiserver: raw JSON (objects stay dicts), the
Secrets and ConfigMaps a pod refers to, and the times it writes.

Invariant: an ObjectReader reads each object at most once, so one container
start sees one version of every Secret and ConfigMap it uses.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.core.resources import Resource
from devcluster.nodeagent.podspec import ConfigError

POD = Resource("", "v1", "pods", "Pod", namespaced=True)
REQUEST_TIMEOUT = 30.0  # seconds per API request


def timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Api:
    """Raw JSON calls through a kubernetes-asyncio ApiClient (objects stay dicts)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        result = await self._api.call_api(
            path,
            method,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=REQUEST_TIMEOUT,
        )
        return result if isinstance(result, dict) else {}


API_ERRORS = (ApiException, aiohttp.ClientError, OSError, TimeoutError)


class ObjectReader:
    """Secrets and ConfigMaps of one namespace, each read at most once per reader."""

    def __init__(self, api: Api, namespace: str) -> None:
        self._api = api
        self._namespace = namespace
        self._data: dict[tuple[str, str], dict[str, bytes] | None] = {}

    async def data(self, plural: str, name: str) -> dict[str, bytes] | None:
        """The object's data decoded to bytes; None if it does not exist."""
        key = (plural, name)
        if key not in self._data:
            try:
                obj = await self._api.call(
                    "GET", f"/api/v1/namespaces/{self._namespace}/{plural}/{name}"
                )
            except ApiException as error:
                if error.status != 404:
                    raise
                self._data[key] = None
            else:
                decoded = {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
                for k, v in (obj.get("data") or {}).items():
                    decoded[k] = base64.b64decode(v) if plural == "secrets" else v.encode()
                self._data[key] = decoded
        return self._data[key]


KIND_OF_PLURAL = {"secrets": "secret", "configmaps": "configmap"}


async def key_value(reader: ObjectReader, plural: str, ref: Mapping[str, Any]) -> bytes | None:
    """One key of a Secret or ConfigMap (secretKeyRef / configMapKeyRef); None if optional."""
    name, key, optional = ref.get("name", ""), ref["key"], bool(ref.get("optional"))
    data = await reader.data(plural, name)
    kind = KIND_OF_PLURAL[plural]
    if data is None:
        if optional:
            return None
        raise ConfigError("CreateContainerConfigError", f'{kind} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise ConfigError("CreateContainerConfigError", f"couldn't find key {key} in {kind} {name}")
    return data[key]
