"""The main job's example: two backends, a Gateway and routes to curl.

The backends are echo servers in a network namespace of our own (EndpointSlice
addresses may not be loopback) at the fixed addresses examples/10-backends.yaml
names. The HTTPS listener's certificate is made here, once, for *.example.com.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.core.resources import BY_KIND, GATEWAY_GROUP
from agc_controller.kube import server_side_apply
from agc_controller.localcluster.netns import BackendNamespace
from agc_controller.selfsigned import self_signed

NETNS = "agc-examples"
SUBNET_TAG = 250
BACKENDS = ("blue", "green")  # at 10.213.250.2 and .3, in that order
GATEWAY = ("default", "example")
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


async def wait_programmed(api: client.ApiClient, *, within: float = 60.0) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    async with asyncio.timeout(within):
        while True:
            gw: dict[str, Any] = await custom.get_namespaced_custom_object(
                GATEWAY_GROUP, "v1", GATEWAY[0], "gateways", GATEWAY[1]
            )
            status = gw.get("status") or {}
            if status.get("addresses") and any(
                c["type"] == "Programmed" and c["status"] == "True"
                for c in status.get("conditions") or []
            ):
                return gw
            await asyncio.sleep(0.2)


def describe(gateway: dict[str, Any], *, port_offset: int, kubeconfig: Path) -> str:
    status = gateway["status"]
    address = status["addresses"][0]["value"]
    http, https = 80 + port_offset, 443 + port_offset
    lines = [f"Gateway {GATEWAY[0]}/{GATEWAY[1]} at {address}:"]
    lines += [
        f"  {c['type']}={c['status']} ({c['reason']}): {c['message']}" for c in status["conditions"]
    ]
    for listener in status.get("listeners") or []:
        conds = ", ".join(f"{c['type']}={c['status']}" for c in listener["conditions"])
        lines.append(
            f"  listener {listener['name']}: attachedRoutes={listener['attachedRoutes']}; {conds}"
        )
    h = "-H 'Host: app.example.com'"
    split = f'curl -s {h} http://{address}:{http}/ | grep -o \'"name": "[a-z]*"\''
    lines += [
        "",
        "Try:",
        f"  curl -s {h} http://{address}:{http}/blue            # path routing -> blue",
        f"  curl -s {h} http://{address}:{http}/green           # path routing -> green",
        f"  curl -s {h} -H 'x-canary: true' http://{address}:{http}/  # header routing -> green",
        f"  for i in $(seq 20); do {split}; done  # 80/20 split",
        f"  curl -sk --resolve app.example.com:{https}:{address} https://app.example.com:{https}/blue"
        "  # HTTPS",
        "",
        f"  export KUBECONFIG={kubeconfig}",
        "  kubectl get gateways,httproutes -A; kubectl apply -f examples/30-routes.yaml",
    ]
    return "\n".join(lines)
