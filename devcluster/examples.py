"""The main job's example: two backends, a Gateway and routes to curl.

The backends are echo servers in a network namespace of our own (EndpointSlice
addresses may not be loopback) at the fixed addresses examples/10-backends.yaml
names. The HTTPS listener's certificate is made here, once, for *.example.com.

Invariant: every curl line the banner prints is a `CurlCheck`, and
`wait_serving` sends the same request and checks the answer the line's
comment promises, so the banner never claims what was not tried.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import yaml
from cryptography import x509
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.core.resources import BY_KIND, GATEWAY_GROUP
from agc_controller.kube import server_side_apply
from agc_controller.selfsigned import self_signed
from devcluster.netns import BackendNamespace

NETNS = "agc-examples"
SUBNET_TAG = 250
BACKENDS = ("blue", "green")  # at 10.213.250.2 and .3, in that order
GATEWAY = ("default", "example")
INGRESS = ("default", "shop")  # examples/50-ingress.yaml
TLS_SECRET = "example-tls"


def start_backends() -> BackendNamespace:
    ns = BackendNamespace.create(name=NETNS, tag=SUBNET_TAG)
    for name in BACKENDS:
        ns.start_echo(name)
    return ns


def load_manifests(directory: Path) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


async def apply_examples(api: client.ApiClient, manifests: list[dict[str, Any]]) -> None:
    """Server-side apply the manifests; make the HTTPS listener's Secret if missing."""
    core = client.CoreV1Api(api)
    try:
        await core.read_namespaced_secret(TLS_SECRET, GATEWAY[0])
    except ApiException as e:
        if e.status != 404:
            raise
        cert, key = self_signed("*.example.com", sans=[x509.DNSName("*.example.com")])
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name=TLS_SECRET),
            type="kubernetes.io/tls",
            data={
                "tls.crt": base64.b64encode(cert.encode()).decode(),
                "tls.key": base64.b64encode(key.encode()).decode(),
            },
        )
        await core.create_namespaced_secret(GATEWAY[0], secret)
    for doc in manifests:
        await server_side_apply(api, doc, plural=BY_KIND[doc["kind"]].plural)


# the status the Gateway CRD gives a new Gateway (its schema's default)
_PENDING_CONDITIONS = [
    {
        "type": condition_type,
        "status": "Unknown",
        "reason": "Pending",
        "message": "Waiting for controller",
        "lastTransitionTime": "1970-01-01T00:00:00Z",
    }
    for condition_type in ("Accepted", "Programmed")
]


async def forget_previous_status(api: client.ApiClient) -> None:
    """Give the example Gateway, if an earlier run left it, a new Gateway's conditions.

    Call it before the controller starts. Its status writer skips writes that
    change nothing, so without this a Programmed=True left by an earlier run
    would stand for this run's data plane before that serves anything.
    """
    path = BY_KIND["Gateway"].object_path(GATEWAY[1], GATEWAY[0]) + "/status"
    try:
        await api.call_api(
            path,
            "PATCH",
            header_params={
                "Content-Type": "application/merge-patch+json",
                "Accept": "application/json",
            },
            body={"status": {"conditions": _PENDING_CONDITIONS}},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except ApiException as e:
        if e.status != 404:  # a fresh state directory: nothing to forget
            raise


async def read_gateway(api: client.ApiClient) -> dict[str, Any]:
    """The example Gateway as it is now."""
    gw: dict[str, Any] = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        GATEWAY_GROUP, "v1", GATEWAY[0], "gateways", GATEWAY[1]
    )
    return gw


async def wait_programmed(
    api: client.ApiClient,
    *,
    since: datetime.datetime,
    report: Callable[[str], None],
    patience: float = 60.0,
) -> dict[str, Any]:
    """The example Gateway once an address and Programmed=True for its current
    generation, with a transition at or after `since` (written by this run), are in
    its status. Meanwhile each new reason it is not programmed (a port in use, a
    refused configuration; not the passing Pending) goes to `report`, once, and so
    does a wait longer than `patience` seconds; it waits on (the controller retries)."""
    reported: set[str] = set()
    loop = asyncio.get_running_loop()
    impatient_at = loop.time() + patience
    while True:
        gw = await read_gateway(api)
        status = gw.get("status") or {}
        conditions = status.get("conditions") or []
        if status.get("addresses") and any(
            _programmed_since(c, gw["metadata"]["generation"], since) for c in conditions
        ):
            return gw
        for c in conditions:
            if (c["type"], c["status"]) == ("Programmed", "False") and c["reason"] != "Pending":
                why = f"{c['reason']}: {c['message']}"
                if why not in reported:
                    reported.add(why)
                    report(f"the example Gateway is not programmed ({why})")
        if loop.time() > impatient_at:
            impatient_at = float("inf")
            report(
                f"the example Gateway is still not programmed after {patience:.0f}s; "
                "`AGC_LOG_LEVEL=info make run` shows the controller's logs"
            )
        await asyncio.sleep(0.2)


def _programmed_since(condition: dict[str, Any], generation: int, since: datetime.datetime) -> bool:
    if (condition["type"], condition["status"]) != ("Programmed", "True"):
        return False
    if condition.get("observedGeneration") != generation:
        return False
    transition = datetime.datetime.fromisoformat(condition["lastTransitionTime"])
    return transition >= since


async def ingress_address(api: client.ApiClient, *, within: float = 30.0) -> str | None:
    """The example Ingress's address once its status has one (None: not in time)."""
    networking = client.NetworkingV1Api(api)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ingress = await networking.read_namespaced_ingress(INGRESS[1], INGRESS[0])
        lb = ingress.status.load_balancer if ingress.status else None
        if lb and lb.ingress and lb.ingress[0].ip:
            return str(lb.ingress[0].ip)
        await asyncio.sleep(0.2)
    return None


@attrs.frozen
class CurlCheck:
    """One curl line of the banner and the request that shows it works."""

    command: str  # the line as printed, with its comment
    url: str  # where the request goes (the Gateway's address)
    host: str  # the Host header, and the TLS server name for https
    headers: tuple[tuple[str, str], ...]  # more request headers
    backends: frozenset[str]  # the echo backends that may answer (the comment's promise)
    # the promised status: 200 from one of `backends`, or this one from the gateway
    status: int = 200

    def promise(self) -> str:
        if self.status != 200:
            return f"{self.url} (Host {self.host}) should be answered {self.status}"
        backends = " or ".join(sorted(self.backends))
        return f"{self.url} (Host {self.host}) should be answered by {backends}"


HOST = "app.example.com"
INGRESS_HOST = "shop.example.com"


def curl_checks(
    gateway: dict[str, Any], *, port_offset: int, ingress: str | None = None
) -> list[CurlCheck]:
    """The banner's curl lines for the programmed `gateway`, and for the example
    Ingress at address `ingress` (none: no line for it)."""
    address = gateway["status"]["addresses"][0]["value"]
    http, https = 80 + port_offset, 443 + port_offset
    h = f"-H 'Host: {HOST}'"
    split = f'curl -s {h} http://{address}:{http}/ | grep -o \'"name": "[a-z]*"\''
    base = f"http://{address}:{http}"
    codes = "curl -s -o /dev/null -w '%{http_code} '"

    def check(
        command: str, url: str, backends: Sequence[str], *headers: tuple[str, str]
    ) -> CurlCheck:
        return CurlCheck(command, url, HOST, headers, frozenset(backends))

    ingress_checks = []
    if ingress is not None:
        shop = f"http://{ingress}:{http}"
        ingress_checks = [
            CurlCheck(
                f"curl -s -H 'Host: {INGRESS_HOST}' {shop}/blue  # Ingress -> blue",
                f"{shop}/blue",
                INGRESS_HOST,
                (),
                frozenset({"blue"}),
            ),
            CurlCheck(
                f"{codes} -H 'Host: {INGRESS_HOST}' {shop}/; echo  # app-root -> 302",
                f"{shop}/",
                INGRESS_HOST,
                (),
                frozenset(),
                status=302,
            ),
        ]
    return [
        check(
            f"curl -s {h} {base}/blue            # path routing -> blue", f"{base}/blue", ["blue"]
        ),
        check(
            f"curl -s {h} {base}/green           # path routing -> green",
            f"{base}/green",
            ["green"],
        ),
        check(
            f"curl -s {h} -H 'x-canary: true' {base}/  # header routing -> green",
            f"{base}/",
            ["green"],
            ("x-canary", "true"),
        ),
        check(f"for i in $(seq 20); do {split}; done  # 80/20 split", f"{base}/", BACKENDS),
        check(
            f"for i in $(seq 5); do {codes} {h} {base}/api; done; echo  # 2 a second, then 429",
            f"{base}/api",
            ["blue"],
        ),
        CurlCheck(
            f"{codes} {h} '{base}/green?q=<script>alert(1)</script>'; echo  # WAF -> 403",
            f"{base}/green?q=<script>alert(1)</script>",
            HOST,
            (),
            frozenset(),
            status=403,
        ),
        check(
            f"curl -sk --resolve {HOST}:{https}:{address} https://{HOST}:{https}/blue  # HTTPS",
            f"https://{address}:{https}/blue",
            ["blue"],
        ),
        *ingress_checks,
    ]


# measured: the local data plane serves within ~1 s of Programmed on 2 cores
_SERVING_WITHIN = 30.0
_SERVING_RETRY = 0.2


async def wait_serving(
    checks: Sequence[CurlCheck], *, within: float = _SERVING_WITHIN
) -> list[str]:
    """Send each check's request until it is answered as promised, for up to `within`
    seconds in all; what still fails then, as messages (empty: all served)."""
    deadline = time.monotonic() + within
    failures = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        for check in checks:
            last = ""
            while (last := await _try(session, check)) and time.monotonic() < deadline:
                await asyncio.sleep(_SERVING_RETRY)
            if last:
                failures.append(f"{check.promise()}: {last}")
    return failures


async def _try(session: aiohttp.ClientSession, check: CurlCheck) -> str:
    """Why the check's request was not answered as promised ("" when it was)."""
    https = check.url.startswith("https:")
    try:
        async with session.get(
            check.url,
            headers={"Host": check.host, **dict(check.headers)},
            allow_redirects=False,
            ssl=False,  # the example's certificate is self-signed (curl -k)
            server_hostname=check.host if https else None,
        ) as response:
            body = await response.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return str(e) or type(e).__name__
    if response.status != check.status:
        return f"status {response.status}"
    if check.status != 200:
        return ""
    try:
        name = json.loads(body).get("name")
    except (ValueError, AttributeError):
        return "the answer is not the echo backend's JSON"
    return "" if name in check.backends else f"answered by {name!r}"


def describe_failures(failures: Sequence[str]) -> str:
    """What the banner adds when some of its curl lines were not served in time."""
    if not failures:
        return ""
    lines = [
        "",
        "",
        f"WARNING: {len(failures)} of the requests above were not answered as their comment "
        f"says within {_SERVING_WITHIN:.0f}s:",
        *(f"  {failure}" for failure in failures),
        "The controller's logs say why: run with --log-level info (AGC_LOG_LEVEL=info make run).",
    ]
    return "\n".join(lines)


def describe(
    gateway: dict[str, Any], checks: Sequence[CurlCheck], *, kubeconfig: Path, kubectl: Path
) -> str:
    status = gateway["status"]
    address = status["addresses"][0]["value"]
    lines = [f"Gateway {GATEWAY[0]}/{GATEWAY[1]} at {address}:"]
    lines += [
        f"  {c['type']}={c['status']} ({c['reason']}): {c['message']}" for c in status["conditions"]
    ]
    for listener in status.get("listeners") or []:
        conds = ", ".join(f"{c['type']}={c['status']}" for c in listener["conditions"])
        lines.append(
            f"  listener {listener['name']}: attachedRoutes={listener['attachedRoutes']}; {conds}"
        )
    lines += ["", "Try:"]
    lines += [f"  {check.command}" for check in checks]
    lines += [
        "",
        # kubectl of the control plane's own version, built with it
        f"  export KUBECONFIG={kubeconfig} PATH={kubectl.parent}:$PATH",
        "  kubectl get gateways,httproutes,ingresses -A; kubectl apply -f examples/30-routes.yaml",
    ]
    return "\n".join(lines)
