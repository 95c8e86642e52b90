"""The ARM boundary: GET/PUT one Application Gateway (and the record sets of an
Azure DNS zone, dns.py) through the async SDKs.

Bodies travel as ARM REST JSON (never SDK models) so properties the SDK does
not know survive a GET → PUT round trip. Errors are mapped here, once:

- 412 (the ETag moved: someone else wrote) → `ArmConflict`; the caller re-reads.
- 429, or `RetryableErrorDueToAnotherOperation` / `AnotherOperationInProgress`
  (Application Gateway takes one operation at a time) → wait what
  `Retry-After` says (bounded), then retry.
- 5xx, 408, connection errors → retried with jittered exponential backoff
  (tenacity).
- The long-running operation of an accepted PUT failed → `ArmOperationFailed`:
  the ETag has moved, so the caller re-reads before it PUTs again. A 429 or
  5xx while polling says nothing about the operation → `ArmPollingInterrupted`:
  the caller waits for the gateway to settle before it reports anything. An
  operation outliving `operation_timeout_s` → `ArmTemporaryError`.
- Signing in failed (a credential error carries no status), 401, 403 (incl.
  `LinkedAuthorizationFailed`), 404 → `ArmAccessError`: the Gateway reports it
  and is tried again later, since fixing the identity's role assignments or
  creating the resource lifts it.
- Any other 4xx → `ArmRejected` with ARM's own message: the body is wrong; it
  becomes the Gateway's condition instead of a retry loop.
Retries exhausted → `ArmTemporaryError`: the work queue retries the Gateway.
Every failed call is logged with ARM's `x-ms-request-id` and
`x-ms-correlation-request-id`, which Azure support asks for. Every call names
the API version (`API_VERSION`; `DNS_API_VERSION` for Microsoft.Network/dnsZones),
whatever the installed SDK defaults to. A DNS record set GET answered 404 is
the record set's absence, not an error; a missing zone shows in the listing.

The SDK's own retry policy is off (`retry_total=0`) so every HTTP exchange
passes through this policy once and `on_arm_call` sees each one.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import structlog
import tenacity
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.polling import AsyncLROPoller
from azure.mgmt.dns.aio import DnsManagementClient
from azure.mgmt.network.aio import NetworkManagementClient

from agc_controller.core.errors import TemporaryError
from agc_controller.providers.azure.children import Json
from agc_controller.providers.azure.settings import AzureSettings, DnsZone, Target

log = structlog.get_logger(__name__)
T = TypeVar("T")
OnArmCall = Callable[[str, int], None]
Sleep = Callable[[float], Awaitable[None]]

BUSY_CODES = frozenset({"RetryableErrorDueToAnotherOperation", "AnotherOperationInProgress"})
DEFAULT_RETRY_AFTER_S = 10.0
# the Microsoft.Network API version every call uses (the bodies are written for it)
API_VERSION = "2024-05-01"
# the Microsoft.Network/dnsZones API version (its current GA) every DNS call uses
DNS_API_VERSION = "2018-05-01"


class ArmError(Exception):
    """A failure talking to ARM, with ARM's message."""


class ArmRejected(ArmError):
    """ARM refused the request for good (a 4xx other than 408/412/429)."""

    def __init__(self, message: str, *, status: int, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ArmAccessError(ArmError):
    """Signing in failed, or the identity may not do this (401/403), or the resource
    is not there (404): the Gateway says so, and is tried again later."""

    def __init__(self, message: str, *, status: int, code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ArmPollingInterrupted(ArmError):
    """Polling an accepted operation failed (429, 5xx): its outcome is unknown."""


class ArmConflict(ArmError):
    """412: the Application Gateway changed since it was read."""


class ArmOperationFailed(ArmError):
    """The long-running operation of an accepted PUT ended Failed (or Canceled)."""


class ArmTemporaryError(ArmError, TemporaryError):
    """Transient failures outlasted the retries; try the whole reconcile again later.

    `delay` is ARM's last Retry-After when the failure was "busy" (429, another
    operation in progress), so the work queue waits as long as ARM asked.
    """


class _Busy(ArmError):
    """Another operation is in progress; wait `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Transient(ArmError):
    """Worth retrying soon: 5xx, 408, connection trouble, a failed operation."""


def _raw_json(
    pipeline_response: PipelineResponse[Any, Any], _model: object, _headers: object
) -> Json:
    return cast(Json, pipeline_response.http_response.json())


def arm_message(error: HttpResponseError) -> tuple[str | None, str]:
    """(code, message) of an ARM error response."""
    code = error.error.code if error.error is not None else None
    message = error.error.message if error.error is not None else None
    response: Any = error.response
    if not message and response is not None:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = code or body["error"].get("code")
            message = body["error"].get("message")
    return code, str(message or error.message or error.reason or "ARM request failed")


def request_ids(error: HttpResponseError) -> dict[str, str]:
    """ARM's ids of the failed request, as Azure support asks for them."""
    response: Any = error.response
    headers = response.headers if response is not None else {}
    return {
        key: str(headers[header])
        for key, header in (
            ("request_id", "x-ms-request-id"),
            ("correlation_id", "x-ms-correlation-request-id"),
        )
        if header in headers
    }


def _classify(error: HttpResponseError, settings: AzureSettings) -> ArmError:
    status = error.status_code or 0
    code, message = arm_message(error)
    log.warning("arm_call_failed", status=status, code=code, error=message, **request_ids(error))
    if isinstance(error, ClientAuthenticationError) and not status:
        return ArmAccessError(f"signing in to Azure failed: {message}", status=0, code=code)
    if status in (401, 403, 404):
        return ArmAccessError(message, status=status, code=code)
    if status == 412:
        return ArmConflict(message)
    if status == 429 or code in BUSY_CODES:
        response: Any = error.response
        header = response.headers.get("Retry-After") if response is not None else None
        try:
            retry_after = float(header) if header is not None else DEFAULT_RETRY_AFTER_S
        except ValueError:
            retry_after = DEFAULT_RETRY_AFTER_S
        return _Busy(message, min(max(retry_after, 0.0), settings.max_retry_after_s))
    if status >= 500 or status == 408:
        return _Transient(f"HTTP {status}: {message}")
    return ArmRejected(message, status=status, code=code)


class ArmClient:
    def __init__(
        self,
        *,
        credential: AsyncTokenCredential,
        settings: AzureSettings,
        on_arm_call: OnArmCall | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._credential = credential
        self._settings = settings
        self._on_arm_call = on_arm_call
        self._sleep = sleep
        # one SDK client (connection pool) per subscription, per SDK
        self._clients: dict[str, NetworkManagementClient] = {}
        self._dns_clients: dict[str, DnsManagementClient] = {}

    def _options(self) -> dict[str, Any]:
        """What every SDK client of ours is built with: one endpoint, scope, TLS
        trust and hook, and no retries of the SDK's own (see the module docstring)."""
        return {
            "base_url": self._settings.arm_endpoint,
            "credential_scopes": [self._settings.scope],
            "polling_interval": self._settings.polling_interval_s,
            "retry_total": 0,
            "raw_response_hook": self._hook,
            "connection_verify": self._settings.connection_verify,
        }

    def _client(self, subscription_id: str) -> NetworkManagementClient:
        client = self._clients.get(subscription_id)
        if client is None:
            client = NetworkManagementClient(self._credential, subscription_id, **self._options())
            self._clients[subscription_id] = client
        return client

    def _dns_client(self, subscription_id: str) -> DnsManagementClient:
        client = self._dns_clients.get(subscription_id)
        if client is None:
            # api_version here too: a listing's next pages are asked with the client's
            client = DnsManagementClient(
                self._credential,
                subscription_id,
                api_version=DNS_API_VERSION,
                **self._options(),
            )
            self._dns_clients[subscription_id] = client
        return client

    def _hook(self, response: PipelineResponse[Any, Any]) -> None:
        if self._on_arm_call is not None:
            self._on_arm_call(response.http_request.method, response.http_response.status_code)

    async def get_gateway(self, target: Target) -> Json:
        client = self._client(target.subscription_id)

        async def get() -> Json:
            return cast(
                Json,
                await client.application_gateways.get(
                    target.resource_group, target.name, cls=_raw_json, api_version=API_VERSION
                ),
            )

        return await self._retrying(get)

    async def put_gateway(self, target: Target, body: Json, etag: str | None) -> Json:
        """PUT and wait for the long-running operation to finish."""
        client = self._client(target.subscription_id)
        headers = {"If-Match": etag} if etag else {}
        content = json.dumps(body).encode()

        async def put() -> AsyncLROPoller[Any]:
            poller: AsyncLROPoller[Any] = await client.application_gateways.begin_create_or_update(
                target.resource_group,
                target.name,
                io.BytesIO(content),
                content_type="application/json",
                headers=headers,
                cls=_raw_json,
                api_version=API_VERSION,
            )
            return poller

        poller = await self._retrying(put)
        try:
            async with asyncio.timeout(self._settings.operation_timeout_s):
                return cast(Json, await poller.result())
        except TimeoutError:
            raise ArmTemporaryError(
                f"the update of {target} did not finish within "
                f"{self._settings.operation_timeout_s:.0f} s"
            ) from None
        except HttpResponseError as e:
            code, message = arm_message(e)
            log.warning("arm_operation_failed", code=code, error=message, **request_ids(e))
            if e.status_code == 429 or (e.status_code or 0) >= 500:
                raise ArmPollingInterrupted(f"polling the update failed: {message}") from e
            # ARM took the body; retrying needs a fresh ETag, so the caller re-reads
            raise ArmOperationFailed(f"The update operation failed: {message}") from e

    async def put_firewall_policy(self, target: Target, name: str, body: Json) -> None:
        """Create or replace a WAF policy in the Application Gateway's resource group
        (a plain PUT: not a long-running operation)."""
        client = self._client(target.subscription_id)
        content = json.dumps(body).encode()

        async def put() -> None:
            await client.web_application_firewall_policies.create_or_update(
                target.resource_group,
                name,
                io.BytesIO(content),
                content_type="application/json",
                cls=_raw_json,
                api_version=API_VERSION,
            )

        await self._retrying(put)

    async def firewall_policies(self, target: Target) -> dict[str, dict[str, str]]:
        """The WAF policies of the Application Gateway's resource group: name -> tags."""
        client = self._client(target.subscription_id)

        async def listed() -> dict[str, dict[str, str]]:
            return {
                str(policy.name): dict(policy.tags or {})
                async for policy in client.web_application_firewall_policies.list(
                    target.resource_group, api_version=API_VERSION
                )
            }

        return await self._retrying(listed)

    async def delete_firewall_policy(self, target: Target, name: str) -> None:
        """Delete a WAF policy of the Application Gateway's resource group and wait."""
        client = self._client(target.subscription_id)

        async def delete() -> AsyncLROPoller[None]:
            return await client.web_application_firewall_policies.begin_delete(
                target.resource_group, name, api_version=API_VERSION
            )

        poller = await self._retrying(delete)
        try:
            await poller.result()
        except HttpResponseError as e:
            _, message = arm_message(e)
            raise ArmOperationFailed(f"Deleting WAF policy {name} failed: {message}") from e

    async def get_public_ip(self, resource_id: str) -> Json:
        parts = resource_id.strip("/").split("/")
        # /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Network/publicIPAddresses/{n}
        subscription, resource_group, name = parts[1], parts[3], parts[-1]
        client = self._client(subscription)

        async def get() -> Json:
            return cast(
                Json,
                await client.public_ip_addresses.get(
                    resource_group, name, cls=_raw_json, api_version=API_VERSION
                ),
            )

        return await self._retrying(get)

    async def get_record_set(self, zone: DnsZone, record_type: str, name: str) -> Json | None:
        """A record set (`name` relative to the zone, `@` for its apex), None if absent."""
        client = self._dns_client(zone.subscription_id)

        async def get() -> Json | None:
            try:
                return cast(
                    Json,
                    await client.record_sets.get(
                        zone.resource_group,
                        zone.name,
                        name,
                        record_type,
                        cls=_raw_json,
                        api_version=DNS_API_VERSION,
                    ),
                )
            except ResourceNotFoundError as e:
                if arm_message(e)[0] == "ParentResourceNotFound":
                    raise
                return None

        return await self._retrying(get)

    async def list_record_sets(self, zone: DnsZone, record_type: str) -> list[Json]:
        """Every record set of one type in the zone, as ARM REST JSON."""
        client = self._dns_client(zone.subscription_id)

        async def listed() -> list[Json]:
            return [
                cast(Json, record_set.serialize(keep_readonly=True))
                async for record_set in client.record_sets.list_by_type(
                    zone.resource_group, zone.name, record_type, api_version=DNS_API_VERSION
                )
            ]

        return await self._retrying(listed)

    async def put_record_set(
        self, zone: DnsZone, record_type: str, name: str, body: Json, *, etag: str | None
    ) -> Json:
        """Create a record set that must not exist yet (`etag` None: If-None-Match: *)
        or replace the one read with `etag` (If-Match); 412 → `ArmConflict`."""
        client = self._dns_client(zone.subscription_id)
        content = json.dumps(body).encode()

        async def put() -> Json:
            return cast(
                Json,
                await client.record_sets.create_or_update(
                    zone.resource_group,
                    zone.name,
                    name,
                    record_type,
                    io.BytesIO(content),
                    if_match=etag,
                    if_none_match=None if etag else "*",
                    content_type="application/json",
                    cls=_raw_json,
                    api_version=DNS_API_VERSION,
                ),
            )

        return await self._retrying(put)

    async def delete_record_set(
        self, zone: DnsZone, record_type: str, name: str, *, etag: str
    ) -> None:
        """Delete the record set read with `etag` (If-Match); 412 → `ArmConflict`."""
        client = self._dns_client(zone.subscription_id)

        async def delete() -> None:
            await client.record_sets.delete(
                zone.resource_group,
                zone.name,
                name,
                record_type,
                if_match=etag,
                api_version=DNS_API_VERSION,
            )

        await self._retrying(delete)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        settings = self._settings
        backoff = tenacity.wait_random_exponential(
            multiplier=settings.retry_min_s, max=settings.retry_max_s
        )

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return error.retry_after if isinstance(error, _Busy) else backoff(state)

        def stop(state: tenacity.RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            limit = settings.busy_attempts if isinstance(error, _Busy) else settings.retry_attempts
            return state.attempt_number >= limit

        async def mapped() -> T:
            try:
                return await call()
            except HttpResponseError as e:
                raise _classify(e, settings) from e
            except (ServiceRequestError, ServiceResponseError) as e:
                raise _Transient(f"cannot reach ARM: {e}") from e

        try:
            async for attempt in tenacity.AsyncRetrying(
                retry=tenacity.retry_if_exception_type((_Busy, _Transient)),
                wait=wait,
                stop=stop,
                sleep=self._sleep,
                reraise=True,
            ):
                with attempt:
                    return await mapped()
        except _Busy as e:
            raise ArmTemporaryError(str(e), delay=e.retry_after) from e
        except _Transient as e:
            raise ArmTemporaryError(str(e)) from e
        raise AssertionError("tenacity neither returned nor raised")

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        for dns_client in self._dns_clients.values():
            await dns_client.close()
        self._dns_clients.clear()
