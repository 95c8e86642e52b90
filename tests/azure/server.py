"""An ARM-compatible test server for Microsoft.Network/applicationGateways.

The only fake in the test suite is Azure itself. The real SDK talks to this
server over HTTPS (see tls.py), so what it checks is the wire format:

- `applicationGateways` GET / PUT / DELETE with ETags (`If-Match` → 412),
  `publicIPAddresses` GET.
- PUT answers 201 with `Azure-AsyncOperation`; the operation reports
  InProgress for `operation_seconds`, then Succeeded (or Failed when injected)
  while the gateway's provisioningState goes Updating → Succeeded / Failed.
  A write during an operation gets 429 RetryableErrorDueToAnotherOperation
  with Retry-After, as Application Gateway does.
- Validation in ARM's error format (`{"error": {"code", "message"}}`):
  duplicate child names, dangling sub-resource IDs, duplicate or missing rule
  priorities, two ports with one number, two listeners on one port and host,
  duplicate paths in a path map, certificates without data, v2 limits, and
  backend settings' connectionDraining as the published schema has it
  (ApplicationGatewayConnectionDraining: `enabled` and `drainTimeoutInSec`
  both required, the timeout an integer from 1 to 3600, even with draining
  off; ARM publishes no error code for it: InvalidRequestFormat stands in).
- `ApplicationGatewayWebApplicationFirewallPolicies` PUT (a plain PUT, 201 /
  200) / GET / list / DELETE, validated as the published schema says
  (required fields and enums, unique custom rule priorities, base64 block
  bodies and Application Gateway's block status codes). An Application
  Gateway that associates a WAF policy (gateway, listener or path rule)
  must name one that exists and be of SKU tier WAF_v2 ("WAF policy
  associations are only supported for the Application Gateway WAF_v2 sku");
  a policy still associated cannot be deleted. ARM does not publish the error
  codes of those two refusals: the codes here are descriptive stand-ins.
- Azure DNS record sets (Microsoft.Network/dnsZones, API 2018-05-01, as the
  published REST specification and the Azure DNS docs have them): GET (404
  NotFound when absent), PUT (201 created / 200 replaced) with `If-Match`
  (the record set must exist with that ETag) and `If-None-Match: *` (it must
  not exist), both 412 PreconditionFailed otherwise; DELETE (200, or 204 when
  absent; `If-Match` as for PUT); list by type. The zone must exist
  (`seed_dns_zone`): 404 ParentResourceNotFound otherwise. Record set names
  are relative to the zone, case-insensitive, `@` the apex, `*` a wildcard
  label; a CNAME record set cannot share its name with another record set
  ("CNAME records ... cannot coexist with other records of the same name"),
  refused 409 Conflict (ARM publishes no code for it: a stand-in).
- Injected failures (`inject`), and a record of every request (`requests`).

Like ARM, it fills in IDs, etags, provisioningState and a few defaults the
client did not send, and never returns certificate secrets.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.azure.tls import server_context

Json = dict[str, Any]

_GATEWAY = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Network/applicationGateways/(?P<name>[^/]+)"
)
_WAF_POLICIES = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Network/ApplicationGatewayWebApplicationFirewallPolicies"
)
_WAF_POLICY = _WAF_POLICIES + r"/(?P<name>[^/]+)"
_WAF_VARIABLES = frozenset(
    {
        "RemoteAddr",
        "RequestMethod",
        "QueryString",
        "PostArgs",
        "RequestUri",
        "RequestHeaders",
        "RequestBody",
        "RequestCookies",
    }
)
_WAF_OPERATORS = frozenset(
    {
        "IPMatch",
        "Equal",
        "Contains",
        "LessThan",
        "GreaterThan",
        "LessThanOrEqual",
        "GreaterThanOrEqual",
        "BeginsWith",
        "EndsWith",
        "Regex",
        "GeoMatch",
        "Any",
    }
)
_WAF_TRANSFORMS = frozenset(
    {"Uppercase", "Lowercase", "Trim", "UrlDecode", "UrlEncode", "RemoveNulls", "HtmlEntityDecode"}
)
_BASE64 = re.compile(
    r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
)
_DNS_ZONE = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Network/dnsZones/(?P<zone>[^/]+)"
)
_DNS_RECORD_SETS = _DNS_ZONE + r"/(?P<type>[A-Za-z]+)"
_DNS_RECORD_SET = _DNS_RECORD_SETS + r"/(?P<name>[^/]+)"
# record types the server keeps, with the property each one's records are in (the
# published RecordSetProperties)
_DNS_RECORDS = {
    "A": "ARecords",
    "AAAA": "AAAARecords",
    "CNAME": "CNAMERecord",
    "TXT": "TXTRecords",
}
_DNS_NAME = re.compile(
    r"@|(\*|[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_-]{1,63})*"
)
_PUBLIC_IP = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Network/publicIPAddresses/(?P<name>[^/]+)"
)
# the server's own copy of the v2 limits: independent of the provider's table on purpose
_LIMITS = {
    "httpListeners": 100,
    "requestRoutingRules": 400,
    "backendAddressPools": 100,
    "backendHttpSettingsCollection": 100,
    "sslCertificates": 100,
    "frontendPorts": 100,
    "probes": 100,
    "urlPathMaps": 100,
    "redirectConfigurations": 100,
    # Application Gateway v2 limits (Azure subscription and service limits)
    "rewriteRuleSets": 400,
}
# a WAF_v2 gateway running the Core Rule Set 3.1 or older (its own WAF configuration)
# takes at most 40 of each collection limited to 100 above
_OLD_CRS_VERSIONS = frozenset({"2.2.9", "3.0", "3.1"})
_OLD_CRS_LIMIT = 40
# rewrites Application Gateway refuses: headers it does not let a rewrite set, or remove
_REWRITE_NOT_SET = frozenset({"connection", "upgrade"})
_REWRITE_NOT_REMOVED = frozenset({"connection", "upgrade", "host"})
_REWRITE_HEADERS_MAX = 40
# ApplicationGatewayConnectionDraining.drainTimeoutInSec (the published schema's bounds:
# the server's own copy, independent of the provider's)
_DRAIN_TIMEOUT_MIN_S = 1
_DRAIN_TIMEOUT_MAX_S = 3600
_CHILD_COLLECTIONS = (
    "gatewayIPConfigurations",
    "frontendIPConfigurations",
    "frontendPorts",
    "sslCertificates",
    "trustedClientCertificates",
    "trustedRootCertificates",
    "sslProfiles",
    "backendAddressPools",
    "backendHttpSettingsCollection",
    "probes",
    "httpListeners",
    "rewriteRuleSets",
    "redirectConfigurations",
    "urlPathMaps",
    "requestRoutingRules",
)


class ArmError(Exception):
    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@attrs.frozen
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Json | None
    status: int
    time: float
    api_version: str = ""


@attrs.define
class Failure:
    """An injected failure: the next `times` matching requests get it."""

    method: str  # GET, PUT, DELETE, or LRO (the async operation of the next PUT fails)
    status: int
    code: str
    message: str
    retry_after: float | None = None
    times: int = 1
    # only requests whose path contains this
    path_contains: str = "/applicationGateways/"


@attrs.define
class _Operation:
    done_at: float
    gateway: str
    fail: Failure | None = None


@attrs.define
class ArmServer:
    """Start with `async with ArmServer(tmp_path) as arm:`; `arm.endpoint` is its URL."""

    directory: Path
    # how long a PUT's async operation stays InProgress
    operation_seconds: float = 0.2
    # Retry-After sent with 429 during an operation
    busy_retry_after: float = 0.2
    requests: list[Recorded] = attrs.field(factory=list)
    failures: list[Failure] = attrs.field(factory=list)
    # (text, code, message): a gateway PUT whose body holds the text gets 400 (a
    # configuration ARM refuses, whichever Gateway's children carry it)
    poisons: list[tuple[str, str, str]] = attrs.field(factory=list)
    # resource ID (lower case) -> resource body (what GET returns)
    resources: dict[str, Json] = attrs.field(factory=dict)
    _operations: dict[str, _Operation] = attrs.field(factory=dict)
    _runner: web.AppRunner | None = None
    port: int = 0
    ca_file: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ArmServer:
        app = web.Application(middlewares=[self._record])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        context, self.ca_file = server_context(self.directory)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test helpers -------------------------------------------------------------

    def seed_gateway(
        self, subscription: str, resource_group: str, name: str, properties: Json | None = None
    ) -> Json:
        """Create an Application Gateway as its owner would: frontends, and what else is given."""
        gateway_id = _gateway_id(subscription, resource_group, name)
        public_ip_id = (
            f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
            f"/providers/Microsoft.Network/publicIPAddresses/{name}-pip"
        )
        self.resources[public_ip_id.lower()] = {
            "id": public_ip_id,
            "name": f"{name}-pip",
            "type": "Microsoft.Network/publicIPAddresses",
            "properties": {"ipAddress": "203.0.113.10", "publicIPAllocationMethod": "Static"},
        }
        props: Json = {
            "sku": {"name": "Standard_v2", "tier": "Standard_v2", "capacity": 2},
            "gatewayIPConfigurations": [
                {
                    "name": "appGatewayIpConfig",
                    "properties": {"subnet": {"id": f"{gateway_id}-vnet/subnets/appgw"}},
                }
            ],
            "frontendIPConfigurations": [
                {
                    "name": "appGwPublicFrontendIp",
                    "properties": {"publicIPAddress": {"id": public_ip_id}},
                },
                {
                    "name": "appGwPrivateFrontendIp",
                    "properties": {
                        "privateIPAddress": "10.1.0.10",
                        "privateIPAllocationMethod": "Static",
                        "subnet": {"id": f"{gateway_id}-vnet/subnets/appgw"},
                    },
                },
            ],
        }
        props.update(copy.deepcopy(properties or {}))
        body = {"name": name, "location": "westeurope", "properties": props}
        self.resources[gateway_id.lower()] = self._stored(gateway_id, body, "Succeeded")
        return self.resources[gateway_id.lower()]

    def gateway(self, subscription: str, resource_group: str, name: str) -> Json:
        return self.resources[_gateway_id(subscription, resource_group, name).lower()]

    def props_state(self, name: str = "appgw") -> str:
        """provisioningState of the first Application Gateway named `name`."""
        gateway = next(r for k, r in self.resources.items() if k.endswith(f"/{name}"))
        return str(gateway["properties"]["provisioningState"])

    def seed_dns_zone(self, subscription: str, resource_group: str, zone: str) -> None:
        """Create a DNS zone, as its owner would (with no record sets but SOA/NS ones,
        which the server does not keep)."""
        zone_id = _dns_zone_id(subscription, resource_group, zone)
        self.resources[zone_id.lower()] = {
            "id": zone_id,
            "name": zone,
            "type": "Microsoft.Network/dnszones",
            "location": "global",
            "properties": {"zoneType": "Public"},
        }

    def record_sets(self, subscription: str, resource_group: str, zone: str) -> dict[str, Json]:
        """`<TYPE> <relative name>` -> the stored record set, of one zone."""
        prefix = _dns_zone_id(subscription, resource_group, zone).lower() + "/"
        return {
            f"{r['type'].rsplit('/', 1)[1]} {r['name']}": r
            for k, r in self.resources.items()
            if k.startswith(prefix)
        }

    def put_record_set(
        self,
        subscription: str,
        resource_group: str,
        zone: str,
        *,
        record_type: str,
        name: str,
        properties: Json,
    ) -> Json:
        """Write a record set as someone else would (a person, another controller)."""
        record_id = f"{_dns_zone_id(subscription, resource_group, zone)}/{record_type}/{name}"
        stored = self._record_set(record_id, zone, record_type, name, {"properties": properties})
        self.resources[record_id.lower()] = stored
        return stored

    def inject(self, failure: Failure) -> None:
        self.failures.append(failure)

    def puts(self) -> list[Recorded]:
        """Accepted PUTs of Application Gateways (201)."""
        return [
            r
            for r in self.requests
            if r.method == "PUT" and "/applicationGateways/" in r.path and r.status in (200, 201)
        ]

    def calls(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method]

    # -- HTTP ---------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        response: web.StreamResponse = await handler(request)
        self.requests.append(
            Recorded(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                body=body,
                status=response.status,
                time=time.monotonic(),
                api_version=request.query.get("api-version", ""),
            )
        )
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            if not request.headers.get("Authorization", "").startswith("Bearer "):
                raise ArmError(401, "AuthenticationFailed", "Authentication failed.")
            if "api-version" not in request.query:
                raise ArmError(400, "MissingApiVersionParameter", "The api-version is missing.")
            self._maybe_fail(request)
            path = request.path
            if path.startswith("/operations/"):
                return self._operation(path.rsplit("/", 1)[1])
            if m := re.fullmatch(_GATEWAY, path):
                return await self._gateway(request, m)
            if m := re.fullmatch(_WAF_POLICY, path, re.IGNORECASE):
                return await self._waf_policy(request, m)
            if re.fullmatch(_WAF_POLICIES, path, re.IGNORECASE):
                prefix = path.lower() + "/"
                return web.json_response(
                    {"value": [r for k, r in self.resources.items() if k.startswith(prefix)]}
                )
            if m := re.fullmatch(_DNS_RECORD_SET, path, re.IGNORECASE):
                return await self._dns_record_set(request, m)
            if m := re.fullmatch(_DNS_RECORD_SETS, path, re.IGNORECASE):
                return self._dns_list(request, m)
            if re.fullmatch(_PUBLIC_IP, path):
                resource = self.resources.get(path.lower())
                if resource is None:
                    raise ArmError(404, "ResourceNotFound", f"Resource {path} was not found.")
                return web.json_response(resource)
            raise ArmError(404, "InvalidResourceType", f"No route for {path}.")
        except ArmError as e:
            headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else {}
            return web.json_response(
                {"error": {"code": e.code, "message": e.message}}, status=e.status, headers=headers
            )

    def _maybe_fail(self, request: web.Request) -> None:
        for failure in self.failures:
            if (
                failure.method == request.method
                and failure.path_contains in request.path
                and failure.times > 0
            ):
                failure.times -= 1
                raise ArmError(failure.status, failure.code, failure.message, failure.retry_after)

    def _operation(self, operation_id: str) -> web.Response:
        op = self._operations.get(operation_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", "The operation was not found.")
        if time.monotonic() < op.done_at:
            return web.json_response({"status": "InProgress"}, headers={"Retry-After": "0"})
        self._finish(op)
        if op.fail is not None:
            return web.json_response(
                {"status": "Failed", "error": {"code": op.fail.code, "message": op.fail.message}}
            )
        return web.json_response({"status": "Succeeded"})

    def _finish(self, op: _Operation) -> None:
        """An operation past its time has ended, whether or not anyone polls it: the
        gateway's provisioningState says how."""
        gateway = self.resources.get(op.gateway)
        if gateway is not None and gateway["properties"]["provisioningState"] == "Updating":
            gateway["properties"]["provisioningState"] = "Failed" if op.fail else "Succeeded"

    def _finish_due(self, key: str) -> None:
        for op in self._operations.values():
            if op.gateway == key and time.monotonic() >= op.done_at:
                self._finish(op)

    def _busy(self, key: str) -> bool:
        return any(
            op.gateway == key and time.monotonic() < op.done_at for op in self._operations.values()
        )

    async def _gateway(self, request: web.Request, m: re.Match[str]) -> web.Response:
        gateway_id = _gateway_id(m["sub"], m["rg"], m["name"])
        key = gateway_id.lower()
        self._finish_due(key)
        current = self.resources.get(key)
        if request.method == "GET":
            if current is None:
                raise ArmError(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.Network/applicationGateways/{m['name']}' under "
                    f"resource group '{m['rg']}' was not found.",
                )
            return web.json_response(current, headers={"ETag": current["etag"]})
        if_match = request.headers.get("If-Match")
        if if_match and (current is None or if_match != current["etag"]):
            raise ArmError(
                412,
                "PreconditionFailed",
                "The condition specified using HTTP conditional header(s) is not met.",
            )
        if self._busy(key):
            raise ArmError(
                429,
                "RetryableErrorDueToAnotherOperation",
                f"Operation PutApplicationGatewayOperation (Put) on Application Gateway "
                f"{m['name']} cannot be performed because another operation is in progress.",
                self.busy_retry_after,
            )
        if request.method == "DELETE":
            if current is None:
                return web.Response(status=204)
            del self.resources[key]
            return web.Response(status=200)
        if request.method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported.")
        raw = await request.read()
        for text, code, message in self.poisons:
            if text in raw.decode():
                raise ArmError(400, code, message)
        body = json.loads(raw)
        self._check_associations(gateway_id, body.get("properties") or {})
        stored = self._stored(gateway_id, body, "Updating", previous=current)
        self.resources[key] = stored
        operation_id = uuid.uuid4().hex
        lro_failure = next((f for f in self.failures if f.method == "LRO" and f.times > 0), None)
        if lro_failure is not None:
            lro_failure.times -= 1
        self._operations[operation_id] = _Operation(
            done_at=time.monotonic() + self.operation_seconds, gateway=key, fail=lro_failure
        )
        return web.json_response(
            stored,
            status=201,
            headers={
                "Azure-AsyncOperation": f"{self.endpoint}/operations/{operation_id}"
                f"?api-version={request.query['api-version']}",
                "Retry-After": "0",
            },
        )

    def _dns_zone(self, m: re.Match[str]) -> str:
        """The zone's resource ID (as created); 404 ParentResourceNotFound if none."""
        zone_id = _dns_zone_id(m["sub"], m["rg"], m["zone"])
        zone = self.resources.get(zone_id.lower())
        if zone is None:
            raise ArmError(
                404,
                "ParentResourceNotFound",
                f"Can not perform requested operation on nested resource. Parent resource "
                f"'{m['zone']}' not found.",
            )
        return str(zone["id"])

    def _dns_list(self, request: web.Request, m: re.Match[str]) -> web.Response:
        if request.method != "GET":
            raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported.")
        record_type = _dns_type(m["type"])
        prefix = f"{self._dns_zone(m)}/{record_type}/".lower()
        return web.json_response(
            {"value": [r for k, r in sorted(self.resources.items()) if k.startswith(prefix)]}
        )

    async def _dns_record_set(self, request: web.Request, m: re.Match[str]) -> web.Response:
        zone_id = self._dns_zone(m)
        record_type = _dns_type(m["type"])
        name = m["name"]
        if not _DNS_NAME.fullmatch(name) or len(name) > 253:
            raise ArmError(400, "BadRequest", f"The record set name {name!r} is invalid.")
        record_id = f"{zone_id}/{record_type}/{name}"
        key = record_id.lower()
        current = self.resources.get(key)
        if request.method == "GET":
            if current is None:
                raise ArmError(
                    404,
                    "NotFound",
                    f"The resource record '{name}' does not exist in resource group "
                    f"'{m['rg']}' of subscription '{m['sub']}'.",
                )
            return web.json_response(current, headers={"ETag": current["etag"]})
        if_match = request.headers.get("If-Match")
        if_none_match = request.headers.get("If-None-Match")
        if (if_match and (current is None or if_match != current["etag"])) or (
            if_none_match == "*" and current is not None
        ):
            raise ArmError(
                412,
                "PreconditionFailed",
                f"The Record set {name} has been modified (etag mismatch).",
            )
        if request.method == "DELETE":
            if current is None:
                return web.Response(status=204)
            del self.resources[key]
            return web.Response(status=200)
        if request.method not in ("PUT", "PATCH"):
            raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported.")
        body = json.loads(await request.read())
        if request.method == "PATCH":
            if current is None:
                raise ArmError(404, "NotFound", f"The resource record '{name}' does not exist.")
            body = {"properties": {**current["properties"], **(body.get("properties") or {})}}
        self._check_cname(zone_id, record_type, name)
        stored = self._record_set(record_id, m["zone"], record_type, name, body)
        self.resources[key] = stored
        return web.json_response(
            stored, status=200 if current is not None else 201, headers={"ETag": stored["etag"]}
        )

    def _check_cname(self, zone_id: str, record_type: str, name: str) -> None:
        for other in _DNS_RECORDS:
            if other == record_type or "CNAME" not in (other, record_type):
                continue
            if f"{zone_id}/{other}/{name}".lower() in self.resources:
                raise ArmError(
                    409,
                    "Conflict",
                    f"The record set {name} of type {record_type} conflicts with the "
                    f"{other} record set of the same name: a CNAME record set cannot share "
                    "its name with another record set.",
                )

    def _record_set(
        self, record_id: str, zone: str, record_type: str, name: str, body: Json
    ) -> Json:
        """A record set as ARM stores and returns it."""
        props = copy.deepcopy(body.get("properties") or {})
        ttl = props.get("TTL")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= 2147483647:
            raise ArmError(400, "BadRequest", f"The TTL of record set {name} is invalid.")
        records = props.get(_DNS_RECORDS[record_type])
        if records is None:
            raise ArmError(
                400,
                "BadRequest",
                f"A record set of type {record_type} needs {_DNS_RECORDS[record_type]}.",
            )
        fqdn = f"{zone}." if name == "@" else f"{name}.{zone}."
        props.update(fqdn=fqdn.lower(), provisioningState="Succeeded")
        return {
            "id": record_id,
            "name": name,
            "type": f"Microsoft.Network/dnszones/{record_type}",
            "etag": str(uuid.uuid4()),
            "properties": props,
        }

    async def _waf_policy(self, request: web.Request, m: re.Match[str]) -> web.Response:
        policy_id = (
            f"/subscriptions/{m['sub']}/resourceGroups/{m['rg']}/providers/Microsoft.Network/"
            f"ApplicationGatewayWebApplicationFirewallPolicies/{m['name']}"
        )
        key = policy_id.lower()
        current = self.resources.get(key)
        if request.method == "GET":
            if current is None:
                raise ArmError(404, "ResourceNotFound", f"Resource {policy_id} was not found.")
            return web.json_response(current)
        if request.method == "DELETE":
            if current is None:
                return web.Response(status=204)
            users = [
                str(gateway["id"])
                for gateway in self.resources.values()
                if gateway.get("type") == "Microsoft.Network/applicationGateways"
                and key in {ref.lower() for ref in _firewall_policy_refs(gateway["properties"])}
            ]
            if users:
                raise ArmError(
                    400,
                    "WebApplicationFirewallPolicyInUse",
                    f"Web application firewall policy {policy_id} cannot be deleted: it is "
                    f"associated with {', '.join(users)}.",
                )
            del self.resources[key]
            return web.Response(status=200)
        if request.method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{request.method} is not supported.")
        body = json.loads(await request.read())
        props = copy.deepcopy(body.get("properties") or {})
        _validate_waf_policy(policy_id, props)
        props["provisioningState"] = "Succeeded"
        self.resources[key] = {
            "name": m["name"],
            "id": policy_id,
            "etag": f'W/"{uuid.uuid4()}"',
            "type": "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies",
            "location": body.get("location", "westeurope"),
            **({"tags": body["tags"]} if "tags" in body else {}),
            "properties": props,
        }
        return web.json_response(self.resources[key], status=201 if current is None else 200)

    def _check_associations(self, gateway_id: str, props: Json) -> None:
        refs = _firewall_policy_refs(props)
        for ref in refs:
            if ref.lower() not in self.resources:
                raise ArmError(
                    400,
                    "InvalidResourceReference",
                    f"Resource {ref} referenced by resource {gateway_id} was not found.",
                )
        tier = (props.get("sku") or {}).get("tier")
        if refs and tier != "WAF_v2":
            raise ArmError(
                400,
                "ApplicationGatewayFirewallPolicyNotSupportedForSku",
                f"Application Gateway {gateway_id}: WAF policy associations are only supported "
                f"for the Application Gateway WAF_v2 sku (this one is {tier}).",
            )

    # -- ARM semantics ------------------------------------------------------------

    def _stored(
        self, gateway_id: str, body: Json, state: str, previous: Json | None = None
    ) -> Json:
        """Validate a PUT body and turn it into what GET returns (raises ArmError)."""
        props = copy.deepcopy(body.get("properties") or {})
        _validate(gateway_id, props, previous)
        _validate_key_vault(gateway_id, props, body.get("identity"))
        for collection in _CHILD_COLLECTIONS:
            for child in props.get(collection) or []:
                child["id"] = f"{gateway_id}/{collection}/{child['name']}"
                child["etag"] = f'W/"{uuid.uuid4()}"'
                child["type"] = f"Microsoft.Network/applicationGateways/{collection}"
                child.setdefault("properties", {})["provisioningState"] = state
                for path_rule in child["properties"].get("pathRules") or []:
                    path_rule["id"] = f"{child['id']}/pathRules/{path_rule['name']}"
                    path_rule.setdefault("properties", {})["provisioningState"] = state
        for settings in props.get("backendHttpSettingsCollection") or []:
            # defaults ARM fills in
            settings["properties"].setdefault("pickHostNameFromBackendAddress", False)
            settings["properties"].setdefault("path", None)
        _store_certificates(props, previous)
        props["provisioningState"] = state
        props["operationalState"] = "Running"
        props.setdefault("resourceGuid", str(uuid.uuid4()))
        return {
            "name": gateway_id.rsplit("/", 1)[1],
            "id": gateway_id,
            "etag": f'W/"{uuid.uuid4()}"',
            "type": "Microsoft.Network/applicationGateways",
            "location": body.get("location", "westeurope"),
            **({"tags": body["tags"]} if "tags" in body else {}),
            **({"identity": body["identity"]} if "identity" in body else {}),
            "properties": props,
        }


def _firewall_policy_refs(props: Json) -> list[str]:
    """The WAF policies an Application Gateway associates: itself, listeners, path rules."""
    holders = [
        props,
        *(listener.get("properties") or {} for listener in props.get("httpListeners") or []),
        *(
            rule.get("properties") or {}
            for path_map in props.get("urlPathMaps") or []
            for rule in (path_map.get("properties") or {}).get("pathRules") or []
        ),
    ]
    return [str(h["firewallPolicy"]["id"]) for h in holders if h.get("firewallPolicy")]


def _validate_waf_policy(policy_id: str, props: Json) -> None:
    def invalid(message: str) -> ArmError:
        return ArmError(400, "InvalidRequestFormat", f"{policy_id}: {message}")

    rule_sets = (props.get("managedRules") or {}).get("managedRuleSets")
    if not rule_sets:
        raise invalid("properties.managedRules.managedRuleSets is required.")
    for rule_set in rule_sets:
        if not rule_set.get("ruleSetType") or not rule_set.get("ruleSetVersion"):
            raise invalid("ruleSetType and ruleSetVersion are required.")
        for override in rule_set.get("ruleGroupOverrides") or []:
            if not override.get("ruleGroupName"):
                raise invalid("ruleGroupName is required.")
            if any(not r.get("ruleId") for r in override.get("rules") or []):
                raise invalid("ruleId is required.")
    for exclusion in (props.get("managedRules") or {}).get("exclusions") or []:
        if not all(k in exclusion for k in ("matchVariable", "selectorMatchOperator", "selector")):
            raise invalid("an exclusion needs matchVariable, selectorMatchOperator and selector.")
    settings = props.get("policySettings") or {}
    if settings.get("mode", "Prevention") not in ("Prevention", "Detection"):
        raise invalid(f"policySettings.mode {settings.get('mode')} is invalid.")
    status = settings.get("customBlockResponseStatusCode")
    if status is not None and status not in {200, 403, 405, 406, 429, *range(990, 1000)}:
        raise invalid(f"customBlockResponseStatusCode {status} is not allowed.")
    body = settings.get("customBlockResponseBody")
    if body is not None and (len(body) > 32768 or not _BASE64.match(body)):
        raise invalid("customBlockResponseBody must be base64 of at most 32768 characters.")
    priorities: set[int] = set()
    for rule in props.get("customRules") or []:
        for key in ("priority", "ruleType", "matchConditions", "action"):
            if key not in rule:
                raise invalid(f"custom rule {rule.get('name')}: {key} is required.")
        if rule["priority"] in priorities:
            raise invalid(f"two custom rules have priority {rule['priority']}.")
        priorities.add(rule["priority"])
        if rule["ruleType"] not in ("MatchRule", "RateLimitRule"):
            raise invalid(f"custom rule {rule.get('name')}: ruleType {rule['ruleType']}.")
        for condition in rule["matchConditions"]:
            if "matchValues" not in condition or "operator" not in condition:
                raise invalid(f"custom rule {rule.get('name')}: operator and matchValues.")
            if condition["operator"] not in _WAF_OPERATORS:
                raise invalid(f"operator {condition['operator']} is invalid.")
            if not set(condition.get("transforms") or []) <= _WAF_TRANSFORMS:
                raise invalid(f"transforms {condition.get('transforms')} are invalid.")
            for variable in condition.get("matchVariables") or []:
                if variable.get("variableName") not in _WAF_VARIABLES:
                    raise invalid(f"variableName {variable.get('variableName')} is invalid.")


def _dns_zone_id(subscription: str, resource_group: str, zone: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.Network/dnszones/{zone.lower()}"
    )


def _dns_type(record_type: str) -> str:
    kind = record_type.upper()
    if kind not in _DNS_RECORDS:
        raise ArmError(400, "BadRequest", f"The record type {record_type} is not supported.")
    return kind


def _gateway_id(subscription: str, resource_group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.Network/applicationGateways/{name}"
    )


def _ids(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "id" and isinstance(v, str):
                yield v
            else:
                yield from _ids(v)
    elif isinstance(value, list):
        for item in value:
            yield from _ids(item)


def _validate_limits(gateway_id: str, props: Json) -> None:
    waf = props.get("webApplicationFirewallConfiguration") or {}
    old_crs = (
        (props.get("sku") or {}).get("tier") == "WAF_v2"
        and waf.get("enabled")
        and waf.get("ruleSetVersion") in _OLD_CRS_VERSIONS
    )
    for collection, limit in _LIMITS.items():
        allowed = _OLD_CRS_LIMIT if old_crs and limit == 100 else limit
        if len(props.get(collection) or []) > allowed:
            raise ArmError(
                400,
                "ApplicationGatewayLimitExceeded",
                f"Application Gateway {gateway_id} exceeds the limit of {allowed} {collection}.",
            )


def _validate(gateway_id: str, props: Json, previous: Json | None) -> None:
    known: set[str] = set()
    for collection in _CHILD_COLLECTIONS:
        names: set[str] = set()
        for child in props.get(collection) or []:
            name = child.get("name", "")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,78}[A-Za-z0-9_]", name):
                raise ArmError(400, "InvalidResourceName", f"Resource name {name} is invalid.")
            if name.lower() in names:
                raise ArmError(
                    400,
                    "DuplicateResourceName",
                    f"Application Gateway {gateway_id} cannot have two {collection} with the "
                    f"same name {name}.",
                )
            names.add(name.lower())
            known.add(f"{gateway_id}/{collection}/{name}".lower())
    _validate_limits(gateway_id, props)
    for collection in _CHILD_COLLECTIONS:
        if collection in ("gatewayIPConfigurations", "frontendIPConfigurations"):
            continue
        for child in props.get(collection) or []:
            for ref in _ids(child.get("properties")):
                if ref.lower().startswith(gateway_id.lower() + "/") and ref.lower() not in known:
                    raise ArmError(
                        400,
                        "InvalidResourceReference",
                        f"Resource {ref} referenced by resource {gateway_id}/{collection}/"
                        f"{child['name']} was not found. Please make sure that the referenced "
                        "resource exists, and that both resources are in the same region.",
                    )
    ports: dict[int, str] = {}
    for port in props.get("frontendPorts") or []:
        number = port["properties"]["port"]
        if number in ports:
            raise ArmError(
                400,
                "ApplicationGatewayFrontendPortsUsingSamePort",
                f"Frontend ports {ports[number]} and {port['name']} use the same port {number}.",
            )
        ports[number] = port["name"]
    _validate_listeners(gateway_id, props)
    _validate_rewrites(props)
    _validate_backend_settings(props)
    rules = props.get("requestRoutingRules") or []
    with_priority = [r for r in rules if r["properties"].get("priority") is not None]
    if with_priority and len(with_priority) != len(rules):
        raise ArmError(
            400,
            "ApplicationGatewayRequestRoutingRulePartialPriorityDefined",
            f"Application Gateway {gateway_id}: either every request routing rule has a "
            "priority, or none has.",
        )
    priorities: dict[int, str] = {}
    for rule in with_priority:
        priority = rule["properties"].get("priority")
        if not isinstance(priority, int) or not 1 <= priority <= 20000:
            raise ArmError(
                400,
                "ApplicationGatewayRequestRoutingRulePriorityCannotBeEmpty",
                f"Request routing rule {rule['name']} must have a priority from 1 to 20000.",
            )
        if priority in priorities:
            raise ArmError(
                400,
                "ApplicationGatewayRequestRoutingRulePriorityCannotBeDuplicated",
                f"Request routing rules {priorities[priority]} and {rule['name']} have the same "
                f"priority {priority}.",
            )
        priorities[priority] = rule["name"]
    for path_map in props.get("urlPathMaps") or []:
        seen: set[str] = set()
        rules = path_map["properties"].get("pathRules") or []
        if len(rules) > 100:
            raise ArmError(
                400,
                "ApplicationGatewayUrlPathMapPathRulesLimitExceeded",
                f"URL path map {path_map['name']} has more than 100 path rules.",
            )
        for path_rule in rules:
            for path in path_rule["properties"].get("paths") or []:
                if path in seen:
                    raise ArmError(
                        400,
                        "ApplicationGatewayUrlPathMapDuplicatePaths",
                        f"URL path map {path_map['name']} has the path {path} twice.",
                    )
                seen.add(path)
    previous_certs = {
        c["name"] for c in ((previous or {}).get("properties") or {}).get("sslCertificates") or []
    }
    for cert in props.get("sslCertificates") or []:
        p = cert.get("properties") or {}
        if "data" not in p and "keyVaultSecretId" not in p and cert["name"] not in previous_certs:
            raise ArmError(
                400,
                "ApplicationGatewaySslCertificateDataMustBeSpecified",
                f"Data must be specified for certificate {cert['name']}.",
            )
        if "data" in p:
            try:
                pkcs12.load_key_and_certificates(
                    base64.b64decode(p["data"]), (p.get("password") or "").encode()
                )
            except ValueError as e:
                raise ArmError(
                    400,
                    "ApplicationGatewaySslCertificateInvalidData",
                    f"The certificate {cert['name']} data or password is invalid.",
                ) from e


def _validate_listeners(gateway_id: str, props: Json) -> None:
    listeners: dict[tuple[str, str, str], str] = {}
    for listener in props.get("httpListeners") or []:
        p = listener["properties"]
        # hostNames, or the older singular hostName; none: a basic listener
        hosts = list(p.get("hostNames") or []) + ([p["hostName"]] if p.get("hostName") else [])
        for host in hosts or [""]:
            key = (
                p["frontendIPConfiguration"]["id"].lower(),
                p["frontendPort"]["id"].lower(),
                host.lower(),
            )
            if key in listeners:
                raise ArmError(
                    400,
                    "ApplicationGatewayHttpListenersUsingSameFrontendPortAndFrontendIpConfig",
                    f"Two Http Listeners of Application Gateway {gateway_id} are using the same "
                    f"Frontend Port, Frontend IP and Host names "
                    f"({listeners[key]}, {listener['name']}).",
                )
            listeners[key] = listener["name"]


def _validate_backend_settings(props: Json) -> None:
    for settings in props.get("backendHttpSettingsCollection") or []:
        draining = (settings.get("properties") or {}).get("connectionDraining")
        if draining is None:
            continue
        timeout = draining.get("drainTimeoutInSec") if isinstance(draining, dict) else None
        if (
            not isinstance(draining, dict)
            or not isinstance(draining.get("enabled"), bool)
            or not isinstance(timeout, int)
            or isinstance(timeout, bool)
            or not _DRAIN_TIMEOUT_MIN_S <= timeout <= _DRAIN_TIMEOUT_MAX_S
        ):
            raise ArmError(
                400,
                "InvalidRequestFormat",
                f"Backend http settings {settings.get('name')}: connectionDraining needs "
                "enabled (true or false) and drainTimeoutInSec, from "
                f"{_DRAIN_TIMEOUT_MIN_S} to {_DRAIN_TIMEOUT_MAX_S} seconds "
                f"(got {json.dumps(draining)[:100]}).",
            )


def _validate_rewrites(props: Json) -> None:
    for rule_set in props.get("rewriteRuleSets") or []:
        for rewrite in rule_set["properties"].get("rewriteRules") or []:
            action = rewrite.get("actionSet") or {}
            headers = [
                *(action.get("requestHeaderConfigurations") or []),
                *(action.get("responseHeaderConfigurations") or []),
            ]
            if len(headers) > _REWRITE_HEADERS_MAX:
                raise ArmError(
                    400,
                    "ApplicationGatewayRewriteRuleSetLimitExceeded",
                    f"Rewrite rule set {rule_set['name']} has more than "
                    f"{_REWRITE_HEADERS_MAX} header configurations.",
                )
            for header in headers:
                name = header.get("headerName", "").lower()
                removed = not header.get("headerValue")
                if name in _REWRITE_NOT_SET or (removed and name in _REWRITE_NOT_REMOVED):
                    raise ArmError(
                        400,
                        "ApplicationGatewayRewriteRuleSetHeaderNotAllowed",
                        f"Rewrite rule set {rule_set['name']} cannot rewrite header "
                        f"{header.get('headerName')}.",
                    )


def _validate_key_vault(gateway_id: str, props: Json, identity: Json | None) -> None:
    """Application Gateway v2 reads a certificate from Key Vault (`keyVaultSecretId`,
    a secret's identifier) with a user-assigned managed identity of its own, and only
    with one ("TLS termination with Key Vault certificates", Microsoft Learn). The
    error code of the refusal is not published: this one is a stand-in."""
    for cert in props.get("sslCertificates") or []:
        secret = (cert.get("properties") or {}).get("keyVaultSecretId")
        if secret is None:
            continue
        if not re.fullmatch(r"https://[^/]+/secrets/[^/]+(/[0-9a-fA-F]{32})?/?", secret):
            raise ArmError(
                400,
                "InvalidKeyVaultSecretId",
                f"Key Vault secret id {secret} of {cert['name']} is not a secret's identifier.",
            )
        if not (identity or {}).get("userAssignedIdentities"):
            raise ArmError(
                400,
                "ApplicationGatewayKeyVaultSecretRequiresUserAssignedIdentity",
                f"Application Gateway {gateway_id}: sslCertificate {cert['name']} references a "
                "Key Vault secret, which needs a user-assigned identity on the Application "
                "Gateway.",
            )


def _store_certificates(props: Json, previous: Json | None) -> None:
    """Keep public data only, as ARM does; an entry without data keeps the stored one."""
    stored = {
        c["name"]: c
        for c in ((previous or {}).get("properties") or {}).get("sslCertificates") or []
    }
    for cert in props.get("sslCertificates") or []:
        p = cert["properties"]
        if "data" in p:
            _, certificate, _ = pkcs12.load_key_and_certificates(
                base64.b64decode(p.pop("data")), p.pop("password", "").encode()
            )
            assert certificate is not None
            p["publicCertData"] = base64.b64encode(
                certificate.public_bytes(serialization.Encoding.DER)
            ).decode()
        elif cert["name"] in stored:
            p["publicCertData"] = stored[cert["name"]]["properties"].get("publicCertData")


async def wait_idle(server: ArmServer, seconds: float = 0.05) -> None:
    """Let in-flight operations finish."""
    while any(time.monotonic() < op.done_at for op in server._operations.values()):
        await asyncio.sleep(seconds)
