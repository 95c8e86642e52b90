"""Scale, measured the way a user's change travels: kubectl-style API calls to a real
kube-apiserver, the controller as its own process (`agc-controller run`, local
provider), its NGINX serving a backend in a network namespace. Numbers only.

One Gateway carries 10 catch-all HTTPRoutes (no hostnames; a prefix and a regex
rule each, as health pages and static assets do) and a growing number of host
routes (one hostname each). At 100 / 1,000 / 3,000 / 5,000 host routes:

- new route -> first 200: the time from the API server's answer to the create
  until a request with the new route's Host header gets 200 through the gateway
  (polled every millisecond; 100 routes, one at a time);
- one route edit -> its status at the new generation (10 edits), seen through a
  watch;
- gateway latency (wrk, 64 connections, keep-alive, never retries) without
  changes, then while 100 routes are created, edited and deleted and the
  backend's endpoints flip; failed = socket errors + non-2xx;
- controller RSS; NGINX master + workers unique set size (private pages);
- the controller's event-loop lag while the new routes and edits go through
  (its agc_event_loop_lag_seconds histogram): how many looks found the loop
  held for over 10 ms, and the bucket of the longest. (Not during wrk: then
  the controller shares one core with etcd and the API server, and the lag
  shows that as much as its own steps.)

And once: 1,000 HTTPRoutes applied at once (32 in flight) onto 1,000 existing:
the time from the last create's answer until every one is Accepted at its
generation and the listener's attachedRoutes is exact.

Then Ingress, the same way: one IngressClass of ours whose Ingresses (one host
each) grow to 100 / 1,000 / 3,000 (BENCH_SCALE_INGRESS_SIZES), and at each size
new Ingress -> first 200 (as for routes: from the create's answer, 100 of them).

Where the machine has two cores or more, the data plane (the gateway's NGINX and
the backend) runs on CPU 1, and while wrk runs (on CPU 1 too) the control plane
(etcd, kube-apiserver, the controller and this script's API clients) is kept on
CPU 0, as a cluster keeps its control plane off its gateway's cores: the churn
columns then show what churn costs the gateway, not what an API server on the
same core takes from it. Everything else runs with the control plane on every
core. BENCH_SCALE_PIN=0 shares every core between them throughout.

Run with `make bench` (or `python -m tests.bench.bench_scale`, root); sizes can
be narrowed with BENCH_SCALE_SIZES=100,1000.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, watch

from agc_controller.kube import api_client_from_kubeconfig, server_side_apply
from devcluster import ControlPlane, install_gateway_api_crds
from devcluster.controlplane import free_port
from devcluster.netns import BackendNamespace
from tests.bench.bench_dataplane import backend_conf
from tests.bench.plane import REPO, control_plane, create_all, rss_mib
from tests.bench.plane import wrk as plane_wrk

SIZES = tuple(int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "100,1000,3000,5000").split(","))
INGRESS_SIZES = tuple(
    int(s) for s in os.environ.get("BENCH_SCALE_INGRESS_SIZES", "100,1000,3000").split(",") if s
)
INGRESS_CONTROLLER = "agc-controller.io/scale-bench-ingress"
INGRESS_CLASS = "scale"
NS = "scale"
GW = "gateway.networking.k8s.io"
CONTROLLER = "agc-controller.io/scale-bench"
CATCH_ALLS = 10
PROBES = 100
EDITS = 10
WRK_SECONDS = 10
NETNS_TAG = 248
# (control plane, data plane) CPU sets, or None: not pinned
PINNED = (
    ({0}, {1})
    if os.environ.get("BENCH_SCALE_PIN", "1") != "0" and (os.cpu_count() or 1) >= 2
    else None
)


def pin(pids: list[int], cpus: set[int] | None) -> None:
    if cpus is not None:
        for pid in pids:
            os.sched_setaffinity(pid, cpus)


def data_plane_cpus() -> set[int] | None:
    return PINNED[1] if PINNED else None


def own_threads(data_plane: list[int]) -> list[int]:
    """Every thread of this process and its descendants but the `data_plane`
    processes and theirs: the control plane (the backends run detached)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # the parent pid follows the parenthesised command name
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    pids, pending = [], [os.getpid()]
    while pending:
        pid = pending.pop()
        if pid in data_plane:
            continue
        pids.append(pid)
        pending.extend(children.get(pid, ()))
    threads = []
    for pid in pids:
        with contextlib.suppress(OSError):
            threads.extend(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    return threads


def pin_threads(threads: list[int], cpus: set[int]) -> None:
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def control_plane_aside(data_plane: list[int]) -> Iterator[None]:
    """The control plane on its own CPU for the block (wrk runs), then on all again."""
    if PINNED is None:
        yield
        return
    pin_threads(own_threads(data_plane), PINNED[0])
    try:
        yield
    finally:
        pin_threads(own_threads(data_plane), PINNED[0] | PINNED[1])


def route(name: str, *, hostname: str | None, rules: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [{"name": "gw"}], "rules": rules}
    if hostname is not None:
        spec["hostnames"] = [hostname]
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def backend_rule(path_type: str = "PathPrefix", path: str = "/") -> dict[str, Any]:
    return {
        "matches": [{"path": {"type": path_type, "value": path}}],
        "backendRefs": [{"name": "svc", "port": 80}],
    }


def host_route(i: int) -> dict[str, Any]:
    return route(f"host-{i:05d}", hostname=f"host-{i}.example.com", rules=[backend_rule()])


def catch_all(i: int) -> dict[str, Any]:
    return route(
        f"catch-all-{i}",
        hostname=None,
        rules=[
            backend_rule("PathPrefix", f"/static-{i}/"),
            backend_rule("RegularExpression", f"/health-{i}/[0-9]+"),
        ],
    )


def ingress(name: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "ingressClassName": INGRESS_CLASS,
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "svc", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


async def first_200(session: aiohttp.ClientSession, url: str, host: str) -> None:
    """Until a GET of `url` with Host `host` answers 200 (polled every millisecond)."""
    while True:
        async with session.get(url, headers={"Host": host}) as response:
            await response.read()
            if response.status == 200:
                return
        await asyncio.sleep(0.001)


async def time_to_200(
    api: client.ApiClient,
    url: str,
    plural: str,
    objects: list[dict[str, Any]],
    hosts: list[str],
    *,
    what: str,
) -> list[float]:
    """Apply each object in turn and time it, from the API server's answer to the first
    200 from `url` with its host (ms, sorted; printed in order too)."""
    samples = []
    async with aiohttp.ClientSession() as session:
        for obj, host in zip(objects, hosts, strict=True):
            await server_side_apply(api, obj, plural=plural)
            answered = time.perf_counter()
            await first_200(session, url, host)
            samples.append((time.perf_counter() - answered) * 1000)
    print(f"[bench] {what} -> 200, in order (ms):", *(f"{v:.0f}" for v in samples), file=sys.stderr)
    return sorted(samples)


def endpoint_slice(addresses: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "svc-a",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": "svc"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [a]} for a in addresses],
    }


class Routes:
    """Every HTTPRoute's Accepted generation and the listener's attachedRoutes, from watches."""

    def __init__(self) -> None:
        # route name -> (generation, the generation our Accepted=True condition observed)
        self.routes: dict[str, tuple[int, int | None]] = {}
        self.attached = -1
        self.changed = asyncio.Condition()
        # why waiting is pointless now (the controller is gone)
        self.stopped: str | None = None

    def stop(self, why: str) -> None:
        self.stopped = why

        async def wake() -> None:
            async with self.changed:
                self.changed.notify_all()

        self._wake = asyncio.get_running_loop().create_task(wake())

    async def follow(self, api: client.ApiClient) -> None:
        custom = client.CustomObjectsApi(api)
        await asyncio.gather(
            self._watch(custom, "httproutes", self._route),
            self._watch(custom, "gateways", self._gateway),
        )

    async def _watch(self, custom: client.CustomObjectsApi, plural: str, on: Any) -> None:
        """Follow `plural` for good: a watch that fails (the CRD not served yet, a
        closed stream) starts again, and replays every object as it starts."""
        while True:
            try:
                async with watch.Watch().stream(
                    custom.list_namespaced_custom_object,
                    GW,
                    "v1",
                    NS,
                    plural,
                    timeout_seconds=300,
                ) as stream:
                    async for event in stream:
                        on(event["type"], event["object"])
                        async with self.changed:
                            self.changed.notify_all()
            except (client.ApiException, aiohttp.ClientError, TimeoutError) as error:
                print(f"[bench] watching {plural} again after: {error!r:.200}", file=sys.stderr)
                await asyncio.sleep(0.5)

    def _route(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.routes.pop(name, None)
            return
        accepted = None
        for parent in (obj.get("status") or {}).get("parents") or []:
            if parent.get("controllerName") == CONTROLLER:
                for c in parent.get("conditions") or []:
                    if c["type"] == "Accepted" and c["status"] == "True":
                        accepted = c.get("observedGeneration")
        self.routes[name] = (obj["metadata"]["generation"], accepted)

    def _gateway(self, _kind: str, obj: dict[str, Any]) -> None:
        listeners = (obj.get("status") or {}).get("listeners") or []
        self.attached = listeners[0]["attachedRoutes"] if listeners else -1

    def accepted(self, name: str, generation: int) -> bool:
        return self.routes.get(name, (0, None))[1] == generation

    def converged(self, expected: int) -> bool:
        return (
            len(self.routes) == expected
            and self.attached == expected
            and all(gen == accepted for gen, accepted in self.routes.values())
        )

    async def wait_for(self, done: Callable[[], bool]) -> float:
        """Wait until `done()` (5 minutes at most, while the watches run); the time
        it was first seen true."""
        async with asyncio.timeout(300), self.changed:
            while not done():
                if self.stopped:
                    raise RuntimeError(self.stopped)
                await self.changed.wait()
        return time.perf_counter()


async def delete_routes(custom: client.CustomObjectsApi, names: list[str]) -> None:
    gate = asyncio.Semaphore(32)

    async def one(name: str) -> None:
        async with gate:
            await custom.delete_namespaced_custom_object(GW, "v1", NS, "httproutes", name)

    await asyncio.gather(*(one(n) for n in names))


def wrk(url: str, host: str) -> dict[str, float]:
    return plane_wrk(url, connections=64, seconds=WRK_SECONDS, host=host, cpus=data_plane_cpus())


def private_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total / 1024


def nginx_pids(state_dir: Path) -> list[int]:
    """The gateway's NGINX master and workers (workers forked later inherit the
    master's CPU set)."""
    return master_and_workers(state_dir / f"{NS}_gw" / "nginx.pid")


def master_and_workers(pid_file: Path) -> list[int]:
    master = int(pid_file.read_text())
    children = subprocess.run(
        ["pgrep", "-P", str(master)], check=False, capture_output=True, text=True
    ).stdout.split()
    return [master, *map(int, children)]


async def stop_nginx(state_dir: Path) -> None:
    """Stop every NGINX the controller left serving: the Gateway's and the IngressClass's."""
    masters = [int(p.read_text()) for p in sorted(state_dir.glob("*/nginx.pid"))]  # noqa: ASYNC240 (a few bytes at exit)
    await asyncio.gather(*(_stop_master(m) for m in masters))


async def _stop_master(master: int) -> None:
    try:
        os.kill(master, signal.SIGQUIT)
        for _ in range(100):
            await asyncio.sleep(0.1)
            os.kill(master, 0)  # ProcessLookupError once it is gone
        os.kill(master, signal.SIGKILL)
    except (OSError, ValueError):
        return


class Bench:
    def __init__(self, api: client.ApiClient, address: str, tracker: Routes) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.address = address
        self.tracker = tracker
        self.hosts = 0

    async def grow(self, size: int) -> float:
        """Host routes up to `size`; seconds from the last create's answer to convergence."""
        last = await create_all(
            self.api, [("httproutes", host_route(i)) for i in range(self.hosts, size)]
        )
        self.hosts = size
        seen = await self.tracker.wait_for(lambda: self.tracker.converged(size + CATCH_ALLS))
        return seen - last

    async def propagation(self, size: int) -> list[float]:
        names = [f"probe-{size}-{i}" for i in range(PROBES)]
        samples = await time_to_200(
            self.api,
            f"http://{self.address}/",
            "httproutes",
            [route(n, hostname=f"{n}.example.com", rules=[backend_rule()]) for n in names],
            [f"{n}.example.com" for n in names],
            what=f"{size}: new route",
        )
        await delete_routes(self.custom, names)
        await self.tracker.wait_for(lambda: self.tracker.converged(size + CATCH_ALLS))
        return samples

    async def edits(self) -> list[float]:
        samples = []
        for i in range(EDITS):
            name = f"host-{i:05d}"
            edited = await self.custom.patch_namespaced_custom_object(
                GW,
                "v1",
                NS,
                "httproutes",
                name,
                {"spec": {"rules": [backend_rule("PathPrefix", f"/v{time.monotonic_ns()}")]}},
                _content_type="application/merge-patch+json",
            )
            answered = time.perf_counter()
            generation = edited["metadata"]["generation"]
            seen = await self.tracker.wait_for(
                functools.partial(self.tracker.accepted, name, generation)
            )
            samples.append((seen - answered) * 1000)
        return sorted(samples)

    @contextlib.asynccontextmanager
    async def churn(self, endpoints: list[str]) -> AsyncIterator[None]:
        """100 routes created, edited and deleted, endpoints flipping, until the block ends."""
        stop = asyncio.Event()

        async def routes() -> None:
            round_ = 0
            while not stop.is_set():
                batch = [
                    (
                        "httproutes",
                        route(
                            f"churn-{j}",
                            hostname=f"churn-{j}.example.com",
                            rules=[backend_rule("PathPrefix", f"/r{round_}")],
                        ),
                    )
                    for j in range(100)
                ]
                await create_all(self.api, batch)
                await delete_routes(self.custom, [f"churn-{j}" for j in range(100)])
                round_ += 1

        async def flips() -> None:
            on = False
            while not stop.is_set():
                on = not on
                await server_side_apply(
                    self.api,
                    endpoint_slice(endpoints if on else endpoints[:1]),
                    plural="endpointslices",
                )
                await asyncio.sleep(0.5)

        tasks = [asyncio.create_task(routes()), asyncio.create_task(flips())]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await server_side_apply(
                self.api, endpoint_slice(endpoints[:1]), plural="endpointslices"
            )


class IngressBench:
    """Ingresses of one class of ours, one host each, and new ones timed to their first 200."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.networking = client.NetworkingV1Api(api)
        self.count = 0
        self.address = ""

    async def grow(self, size: int) -> None:
        """Ingresses up to `size`, until the last one is served and every one has its
        address in its status (the controller is done with them)."""
        await create_all(
            self.api,
            [
                ("ingresses", ingress(f"ing-{i:05d}", f"ing-{i}.example.com"))
                for i in range(self.count, size)
            ],
        )
        self.count = size
        async with asyncio.timeout(300):
            while not self.address:
                obj = await self.networking.read_namespaced_ingress("ing-00000", NS)
                lb = obj.status.load_balancer if obj.status else None
                if lb and lb.ingress:
                    self.address = str(lb.ingress[0].ip)
                else:
                    await asyncio.sleep(0.05)
            async with aiohttp.ClientSession() as session:
                await first_200(session, f"http://{self.address}/", f"ing-{size - 1}.example.com")
            while True:
                listed = await self.networking.list_namespaced_ingress(NS)
                if all(i.status and i.status.load_balancer.ingress for i in listed.items):
                    return
                await asyncio.sleep(0.2)

    async def propagation(self, size: int) -> list[float]:
        names = [f"probe-ing-{size}-{i}" for i in range(PROBES)]
        samples = await time_to_200(
            self.api,
            f"http://{self.address}/",
            "ingresses",
            [ingress(n, f"{n}.example.com") for n in names],
            [f"{n}.example.com" for n in names],
            what=f"{size}: new Ingress",
        )
        for name in names:
            await self.networking.delete_namespaced_ingress(name, NS)
        return samples


async def measure_ingresses(api: client.ApiClient) -> None:
    await client.NetworkingV1Api(api).create_ingress_class(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS},
            "spec": {"controller": INGRESS_CONTROLLER},
        }
    )
    ingresses = IngressBench(api)
    rows = []
    for size in INGRESS_SIZES:
        await ingresses.grow(size)
        rows.append((size, await ingresses.propagation(size)))
        print(f"[bench] {size} Ingresses measured", file=sys.stderr)
    print_ingress_table(rows)


class LoopLag:
    """The controller's event-loop lag histogram, read from its /metrics."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def buckets(self) -> dict[float, float]:
        """Cumulative counts by upper bound (inf included)."""
        async with aiohttp.ClientSession() as session, session.get(self.url) as response:
            text = await response.text()
        return {
            float(m.group(1)): float(m.group(2))
            for m in re.finditer(
                r'^agc_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M
            )
        }

    @staticmethod
    def summary(before: dict[float, float], after: dict[float, float]) -> tuple[int, int, float]:
        """(looks, looks over 10 ms, upper bound of the longest) between two reads."""
        delta = {le: after[le] - before.get(le, 0) for le in after}
        looks = int(delta[float("inf")])
        worst = min((le for le in delta if delta[le] == looks), default=float("inf"))
        return looks, looks - int(delta[0.01]), worst


async def run(plane: ControlPlane, workdir: Path, endpoints: list[str]) -> None:
    api = await api_client_from_kubeconfig(plane.kubeconfig)
    async with api:
        await install_gateway_api_crds(api, plane.binaries.crds)
        await client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        state_dir = workdir / "dataplane"
        metrics_port = free_port()
        controller = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agc_controller.cli",
            "--log-level",
            os.environ.get("BENCH_CONTROLLER_LOG_LEVEL", "warning"),
            "run",
            "--kubeconfig",
            str(plane.kubeconfig),
            "--no-leader-elect",
            "--controller-name",
            CONTROLLER,
            "--ingress-controller",
            INGRESS_CONTROLLER,
            "--provider",
            "local",
            "--local-state-dir",
            str(state_dir),
            "--health-address",
            f"127.0.0.1:{metrics_port}",
            cwd=REPO,
        )
        lag = LoopLag(f"http://127.0.0.1:{metrics_port}/metrics")
        tracker = Routes()
        following = asyncio.create_task(tracker.follow(api))
        # a controller that exits early (it cannot start) ends the bench, not a wait
        exited = asyncio.create_task(controller.wait())
        exited.add_done_callback(lambda _: tracker.stop("the controller exited"))
        try:
            await create_all(
                api,
                [
                    (
                        "gatewayclasses",
                        {
                            "apiVersion": f"{GW}/v1",
                            "kind": "GatewayClass",
                            "metadata": {"name": "scale"},
                            "spec": {"controllerName": CONTROLLER},
                        },
                    ),
                    (
                        "gateways",
                        {
                            "apiVersion": f"{GW}/v1",
                            "kind": "Gateway",
                            "metadata": {"name": "gw", "namespace": NS},
                            "spec": {
                                "gatewayClassName": "scale",
                                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                            },
                        },
                    ),
                    (
                        "services",
                        {
                            "apiVersion": "v1",
                            "kind": "Service",
                            "metadata": {"name": "svc", "namespace": NS},
                            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
                        },
                    ),
                    ("endpointslices", endpoint_slice(endpoints[:1])),
                    *[("httproutes", catch_all(i)) for i in range(CATCH_ALLS)],
                ],
            )
            await tracker.wait_for(lambda: tracker.converged(CATCH_ALLS))
            gateway = await client.CustomObjectsApi(api).get_namespaced_custom_object(
                GW, "v1", NS, "gateways", "gw"
            )
            address = gateway["status"]["addresses"][0]["value"]
            pin(nginx_pids(state_dir), data_plane_cpus())
            bench = Bench(api, address, tracker)
            rows = []
            bulk: float | None = None
            for size in SIZES:
                await bench.grow(size)
                if size == 1000 and bulk is None:
                    # 1,000 at once onto 1,000: measured, then taken away again
                    bulk = await bench.grow(2000)
                    await delete_routes(bench.custom, [f"host-{i:05d}" for i in range(1000, 2000)])
                    bench.hosts = 1000
                    await tracker.wait_for(lambda: tracker.converged(1000 + CATCH_ALLS))
                lag_before = await lag.buckets()
                probes = await bench.propagation(size)
                edits = await bench.edits()
                lag_after = await lag.buckets()
                host = f"host-{EDITS}.example.com"  # a route the edits leave alone
                with control_plane_aside(nginx_pids(state_dir)):
                    quiet = await asyncio.to_thread(wrk, f"http://{address}/", host)
                    async with bench.churn(endpoints):
                        busy = await asyncio.to_thread(wrk, f"http://{address}/", host)
                rows.append(
                    (
                        size,
                        probes,
                        edits,
                        quiet,
                        busy,
                        rss_mib(controller.pid),
                        private_mib(nginx_pids(state_dir)),
                        LoopLag.summary(lag_before, lag_after),
                    )
                )
                print(f"[bench] {size} host routes measured", file=sys.stderr)
            print_table(rows, bulk)
            await measure_ingresses(api)
        finally:
            following.cancel()
            controller.terminate()
            await asyncio.wait_for(controller.wait(), 30)
            # `agc-controller run` leaves its NGINXes serving for the next controller to
            # adopt; a bench must not leave them behind (a later run's NGINX would share
            # the address with them through reuseport)
            await stop_nginx(state_dir)


def print_table(rows: list[tuple[Any, ...]], bulk: float | None) -> None:
    print(
        f"\nOne Gateway, {CATCH_ALLS} catch-all routes (prefix + regex rules) + N host routes; "
        "through kube-apiserver; wrk 64 conns, never retries; "
        + (
            f"data plane and wrk on CPU {min(PINNED[1])}, control plane on CPU "
            f"{min(PINNED[0])} while wrk runs"
            if PINNED
            else "every process on every core"
        )
    )
    print(
        f"{'N':>5} | {'new route -> 200 p50/p99/max':>29} | {'edit -> status p50/max':>22} | "
        f"{'quiet p99/max':>14} | {'churn p99/max':>15} | {'failed':>6} | "
        f"{'ctrl RSS':>8} | {'NGINX USS':>9} | loop lag >10 ms (longest)"
    )
    for size, probes, edits, quiet, busy, rss, uss, (looks, late, worst) in rows:
        p99 = probes[max(0, round(len(probes) * 0.99) - 1)]
        print(
            f"{size:>5} | {statistics.median(probes):>9.1f} / {p99:>6.1f} / {probes[-1]:>6.1f} ms"
            f" | {statistics.median(edits):>8.1f} / {edits[-1]:>6.1f} ms"
            f" | {quiet['p99']:>5.1f} / {quiet['max']:>5.0f} ms"
            f" | {busy['p99']:>5.1f} / {busy['max']:>6.0f} ms"
            f" | {quiet['failed'] + busy['failed']:>6.0f}"
            f" | {rss:>4.0f} MiB | {uss:>5.0f} MiB"
            f" | {late} of {looks} (≤ {worst * 1000:g} ms)"
        )
    if bulk is not None:
        print(
            f"1,000 HTTPRoutes applied at once onto 1,000: all Accepted with exact "
            f"attachedRoutes {bulk * 1000:.0f} ms after the last create was answered"
        )


def print_ingress_table(rows: list[tuple[int, list[float]]]) -> None:
    if not rows:
        return
    print(
        "\nOne IngressClass, N Ingresses (one host each); through kube-apiserver\n"
        f"{'N':>5} | {'new Ingress -> 200 p50/p99/max':>31}"
    )
    for size, probes in rows:
        p99 = probes[max(0, round(len(probes) * 0.99) - 1)]
        print(
            f"{size:>5} | {statistics.median(probes):>11.1f} / {p99:>6.1f} / {probes[-1]:>6.1f} ms"
        )


def main() -> None:
    ns = BackendNamespace.create(name="agc-scale", tag=NETNS_TAG)
    backends: list[Path] = []
    try:
        with control_plane("agc-scale") as (plane, workdir):
            endpoints = [ns.add_address(), ns.add_address()]
            for i, address in enumerate(endpoints):
                conf = workdir / f"backend-{i}.conf"
                conf.write_text(backend_conf(workdir / f"b{i}", address))
                (workdir / f"b{i}").mkdir()
                subprocess.run(
                    ["ip", "netns", "exec", ns.name, "nginx", "-c", str(conf)], check=True
                )
                backends.append(conf)
                pin(master_and_workers(workdir / f"b{i}" / "backend.pid"), data_plane_cpus())
            try:
                asyncio.run(run(plane, workdir, endpoints))
            finally:
                for conf in backends:
                    subprocess.run(
                        ["ip", "netns", "exec", ns.name, "nginx", "-c", str(conf), "-s", "quit"],
                        check=False,
                    )
    finally:
        ns.destroy()


if __name__ == "__main__":
    main()
