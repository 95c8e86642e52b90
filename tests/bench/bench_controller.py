"""The controller against a real kube-apiserver: convergence and edit latency.

1. Apply N HTTPRoutes to one Gateway at once; time until every route has
   Accepted=True from us and the listener's attachedRoutes == N.
2. With N routes in place, edit one route; time until its status carries the
   new generation.
The controller runs as its own process (`agc-controller run`, memory
provider), so its RSS is measured alone.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from kubernetes_asyncio import client

from agc_controller.kube import api_client_from_kubeconfig
from devcluster import ControlPlane, install_gateway_api_crds
from tests.bench import fixtures as f
from tests.bench.plane import REPO, control_plane, create_all, rss_mib

N = int(os.environ.get("BENCH_ROUTES", "1000"))
NS = "bench"


async def converged(custom: client.CustomObjectsApi) -> bool:
    gw = await custom.get_namespaced_custom_object(f.GW, "v1", NS, "gateways", "gw")
    listeners = (gw.get("status") or {}).get("listeners") or []
    if not listeners or listeners[0]["attachedRoutes"] != N:
        return False
    routes = await custom.list_namespaced_custom_object(f.GW, "v1", NS, "httproutes")
    return all(_accepted(r) for r in routes["items"]) and len(routes["items"]) == N


def _accepted(route: dict[str, Any]) -> bool:
    for parent in (route.get("status") or {}).get("parents") or []:
        if parent["controllerName"] == f.CONTROLLER:
            return any(
                c["type"] == "Accepted"
                and c["status"] == "True"
                and c["observedGeneration"] == route["metadata"]["generation"]
                for c in parent["conditions"]
            )
    return False


async def run(plane: ControlPlane) -> None:
    api = await api_client_from_kubeconfig(plane.kubeconfig)
    async with api:
        await install_gateway_api_crds(api, plane.binaries.crds)
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        await core.create_namespace({"metadata": {"name": NS}})
        controller = await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                "-m",
                "agc_controller.cli",
                "--log-level",
                "warning",
                "run",
                "--kubeconfig",
                str(plane.kubeconfig),
                "--no-leader-elect",
                "--controller-name",
                f.CONTROLLER,
                "--provider",
                "memory",
            ],
            cwd=REPO,
        )
        try:
            await create_all(api, [("gatewayclasses", f.gateway_class("bench"))])
            await create_all(api, [("gateways", f.gateway(NS, "bench"))])
            await create_all(api, [("services", f.service(NS, i)) for i in range(100)])
            await create_all(api, [("endpointslices", f.endpoint_slice(NS, i)) for i in range(100)])
            started = time.perf_counter()
            await create_all(api, [("httproutes", f.route(NS, i)) for i in range(N)])
            created = time.perf_counter() - started
            while not await converged(custom):
                await asyncio.sleep(0.05)
            total = time.perf_counter() - started
            print(
                f"{N} HTTPRoutes: applied in {created:.2f} s; all Accepted with exact "
                f"attachedRoutes {total:.2f} s after the first apply"
            )
            latencies = []
            for attempt in range(5):
                name = f"route-{attempt:05d}"
                started = time.perf_counter()
                edited = await custom.patch_namespaced_custom_object(
                    f.GW,
                    "v1",
                    NS,
                    "httproutes",
                    name,
                    {
                        "spec": {
                            "rules": [
                                f.route(NS, attempt, path_suffix=f"-v{attempt}")["spec"]["rules"][0]
                            ]
                        }
                    },
                    _content_type="application/merge-patch+json",
                )
                generation = edited["metadata"]["generation"]
                while True:
                    route = await custom.get_namespaced_custom_object(
                        f.GW, "v1", NS, "httproutes", name
                    )
                    if _accepted(route) and route["metadata"]["generation"] == generation:
                        break
                    await asyncio.sleep(0.005)
                latencies.append(time.perf_counter() - started)
            latencies.sort()
            print(
                f"edit -> status at {N} routes: median {latencies[2] * 1000:.0f} ms, "
                f"max {latencies[-1] * 1000:.0f} ms (5 edits)"
            )
            print(f"controller RSS with {N} routes cached: {rss_mib(controller.pid):.0f} MiB")
        finally:
            controller.terminate()
            await asyncio.wait_for(controller.wait(), 30)


def main() -> None:
    with control_plane("agc-bench") as (plane, _):
        asyncio.run(run(plane))


if __name__ == "__main__":
    main()
