"""The local data plane, measured (numbers only, no assertions).

1. Throughput and latency (wrk, keep-alive) at 64 and 1,000 connections:
   the backend directly, through agc-controller's NGINX, and through a minimal
   hand-written NGINX proxy (upstream keep-alive 1,024). The backend is NGINX
   answering 200 in a network namespace, so the proxies are what is measured.
   The rows take turns, three runs each, and show their median run. Two rows
   go through NGINX's stream layer: a TCP listener, and TLS passthrough (wrk
   speaks TLS to the backend's own certificate; its SNI, from the URL, picks
   the TLSRoute). Two rows measure a RateLimitPolicy: on the route the load
   goes to (a limit far above the load: every request is checked and counted,
   none refused), and on another route only (what a policy costs the routes
   it does not govern: nothing, if all is well). One row has a HealthCheckPolicy
   probing the backend every second (each request asks whether its endpoint
   is out). Two rows have an AuthPolicy on the route the load uses: a JWT
   (RS256, verified on every request) and HTTP basic (bcrypt, cost 10, the
   passed check remembered: the row measures the lookup, not bcrypt). Two rows
   measure a WebApplicationFirewallPolicy (the OWASP Core Rule Set at its
   defaults, every request inspected and let through): on the route the load
   uses, and on another route only (the rest of the Gateway must lose nothing).
2. NGINX reloads caused by 100 endpoint changes (target 0), and NGINX memory
   (master + workers RSS) with 1,000 and 5,000 routes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agc_controller.providers.local import LocalProvider
from agc_controller.providers.local.capabilities import local_translate_settings
from agc_controller.selfsigned import self_signed
from agc_controller.translate import Snapshot, translate_gateway
from devcluster.netns import BackendNamespace
from tests.bench.plane import wrk as plane_wrk

SETTINGS = local_translate_settings("agc-controller.io/gateway-controller")
NETNS_TAG = 249
DURATION = 5
# wrk runs per row and connection count
RUNS = 3

_BACKEND_CONF = """
worker_processes 1;
pid {dir}/backend.pid;
error_log {dir}/backend.err;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{ listen {address}:8080 reuseport backlog=4096; location / {{ return 200 "ok"; }} }}
{tls}}}
"""
_BACKEND_TLS_SERVER = """  server {{
    listen {address}:8443 ssl reuseport backlog=4096;
    ssl_certificate {dir}/backend.crt;
    ssl_certificate_key {dir}/backend.key;
    location / {{ return 200 "ok"; }}
  }}
"""


def backend_conf(directory: Path, address: str, *, tls: bool = False) -> str:
    """The backend NGINX's configuration: 200 "ok" on port 8080, and on 8443 in TLS
    with `directory`/backend.crt and .key when `tls`."""
    server = _BACKEND_TLS_SERVER.format(dir=directory, address=address) if tls else ""
    return _BACKEND_CONF.format(dir=directory, address=address, tls=server)


PROXY_CONF = """
worker_processes 2;
pid {dir}/proxy.pid;
error_log {dir}/proxy.err;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  upstream backend {{ server {address}:8080; keepalive 1024; }}
  server {{
    listen 127.0.0.3:8088 reuseport;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def wrk(
    url: str,
    connections: int,
    hosts_file: Path | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, float]:
    return plane_wrk(
        url,
        connections=connections,
        seconds=DURATION,
        host=HOST,
        hosts_file=hosts_file,
        headers=headers,
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# the JWT rows' issuer: an RSA key made per run, its JWKS, and a token it signed
_JWT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "kid": "bench",
                "n": _b64url(_JWT_KEY.public_key().public_numbers().n.to_bytes(256, "big")),
                "e": _b64url((65537).to_bytes(3, "big")),
            }
        ]
    }
)


def _jwt() -> str:
    header = _b64url(json.dumps({"alg": "RS256", "kid": "bench"}).encode())
    claims = {"iss": "https://bench.test", "sub": "bench", "exp": int(time.time()) + 86400}
    signing_input = f"{header}.{_b64url(json.dumps(claims).encode())}"
    signature = _JWT_KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


# bcrypt (cost 10) of "bench": a passed check is remembered, so this measures the rest
_HTPASSWD = "bench:$2b$10$MQBqZfCEVeNEdch5LgyrMuMjSULqGf29sRze46FhtIMO8Fcsot/mW\n"
# the request headers of the rows with an AuthPolicy, by its kind of sign-in
AUTH_HEADERS = {
    "jwt": {"Authorization": f"Bearer {_jwt()}"},
    "basic": {"Authorization": "Basic " + base64.b64encode(b"bench:bench").decode()},
}


# the port of the TCP listener the stream row sends its HTTP through
TCP_PORT = 9000
# the host every row asks for; the TLS passthrough row's SNI too
HOST = "bench.example.com"


def service(
    name: str, port: int, endpoints: list[str], *, target_port: int
) -> list[dict[str, Any]]:
    """A Service in namespace bench and its EndpointSlice (the backends are not pods)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"ports": [{"name": "p", "port": port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-1",
                "namespace": "bench",
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "p", "port": target_port}],
            "endpoints": [{"addresses": [a]} for a in endpoints],
        },
    ]


def route(
    kind: str,
    name: str,
    *,
    parents: list[dict[str, str]],
    backend: tuple[str, int],
    hostnames: list[str] | None = None,
) -> dict[str, Any]:
    """A route in namespace bench with one rule sending everything to `backend`."""
    spec: dict[str, Any] = {
        "parentRefs": parents,
        "rules": [{"backendRefs": [{"name": backend[0], "port": backend[1]}]}],
    }
    if hostnames:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "bench"},
        "spec": spec,
    }


def route_policy(kind: str, where: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One of our policies on the route the load uses ("load") or on another ("other")."""
    target = "zz-default" if where == "load" else "other"
    return {
        "apiVersion": "agc-controller.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "policy", "namespace": "bench"},
        "spec": {
            "targetRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": target}
            ],
            **spec,
        },
    }


def objects(
    routes: int,
    endpoints: list[str],
    *,
    extra: int = 0,
    grpc: bool = False,
    tcp: bool = False,
    tls: bool = False,
    rate_limit: str = "",
    health: bool = False,
    auth: str = "",
    waf: str = "",
) -> list[dict[str, Any]]:
    """The bench Gateway with `routes` (+ `extra`) routes; `rate_limit` puts a
    RateLimitPolicy on the route the load uses ("load") or on another ("other"),
    `waf` a WebApplicationFirewallPolicy;
    `health` a HealthCheckPolicy on the backend the load goes to; `auth` an
    AuthPolicy ("jwt" or "basic") on the route the load uses."""
    gw = "gateway.networking.k8s.io/v1"
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": gw,
            "kind": "GatewayClass",
            "metadata": {"name": "agc"},
            "spec": {"controllerName": "agc-controller.io/gateway-controller"},
        },
        {
            "apiVersion": gw,
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "bench"},
            "spec": {
                "gatewayClassName": "agc",
                "listeners": [
                    {"name": "http", "port": 80, "protocol": "HTTP"},
                    *([{"name": "tcp", "port": TCP_PORT, "protocol": "TCP"}] if tcp else []),
                    *(
                        [
                            {
                                "name": "tls",
                                "port": 443,
                                "protocol": "TLS",
                                "hostname": HOST,
                                "tls": {"mode": "Passthrough"},
                            }
                        ]
                        if tls
                        else []
                    ),
                ],
            },
        },
        *service("svc", 80, endpoints, target_port=8080),
    ]
    for i in range(routes + extra):
        objs.append(
            {
                "apiVersion": gw,
                "kind": "HTTPRoute",
                "metadata": {
                    "name": f"r{i:05d}",
                    "namespace": "bench",
                    "creationTimestamp": f"2026-01-01T00:{i // 3600 % 60:02d}:{i % 60:02d}Z",
                },
                "spec": {
                    "parentRefs": [{"name": "gw"}],
                    "hostnames": ["bench.example.com"],
                    "rules": [
                        {
                            "matches": [{"path": {"type": "PathPrefix", "value": f"/r{i}"}}],
                            "backendRefs": [{"name": "svc", "port": 80}],
                        }
                    ],
                },
            }
        )
    if grpc:
        # a gRPC route on the same port puts the protocol sniffer in front of it
        objs.append(
            route(
                "GRPCRoute",
                "grpc",
                parents=[{"name": "gw"}],
                hostnames=["grpc.example.com"],
                backend=("svc", 80),
            )
        )
    if tcp:
        # a TCP listener: NGINX's stream layer forwards connections whole
        objs.append(
            route(
                "TCPRoute",
                "tcp",
                parents=[{"name": "gw", "sectionName": "tcp"}],
                backend=("svc", 80),
            )
        )
    if tls:
        # TLS passthrough: the backend's TLS port, chosen by the SNI
        objs += [
            *service("svc-tls", 443, endpoints, target_port=8443),
            route(
                "TLSRoute",
                "tls",
                parents=[{"name": "gw", "sectionName": "tls"}],
                hostnames=[HOST],
                backend=("svc-tls", 443),
            ),
        ]
    if rate_limit or waf:
        # the route a policy governs when it is not the one the load uses
        objs.append(
            route(
                "HTTPRoute",
                "other",
                parents=[{"name": "gw"}],
                hostnames=["other.example.com"],
                backend=("svc", 80),
            )
        )
    if rate_limit:
        # far above any load here: every request is checked, none refused
        objs.append(
            route_policy(
                "RateLimitPolicy", rate_limit, {"limit": {"requests": 1_000_000, "unit": "Second"}}
            )
        )
    if waf:
        # the Core Rule Set at its defaults: each request is inspected, none blocked
        objs.append(route_policy("WebApplicationFirewallPolicy", waf, {}))
    if health:
        objs.append(
            {
                "apiVersion": "agc-controller.io/v1alpha1",
                "kind": "HealthCheckPolicy",
                "metadata": {"name": "health", "namespace": "bench"},
                "spec": {
                    "targetRefs": [{"group": "", "kind": "Service", "name": "svc"}],
                    "default": {"interval": "1s", "timeout": "1s"},
                },
            }
        )
    if auth:
        objs += [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "jwks", "namespace": "bench"},
                "data": {"jwks.json": _JWKS},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "users", "namespace": "bench"},
                "type": "Opaque",
                "data": {".htpasswd": base64.b64encode(_HTPASSWD.encode()).decode()},
            },
            {
                "apiVersion": "agc-controller.io/v1alpha1",
                "kind": "AuthPolicy",
                "metadata": {"name": "guard", "namespace": "bench"},
                "spec": {
                    "targetRefs": [
                        {
                            "group": "gateway.networking.k8s.io",
                            "kind": "HTTPRoute",
                            "name": "zz-default",
                        }
                    ],
                    **(
                        {
                            "jwt": {
                                "providers": [
                                    {
                                        "issuer": "https://bench.test",
                                        "jwks": {"configMapRef": {"name": "jwks"}},
                                    }
                                ]
                            }
                        }
                        if auth == "jwt"
                        else {"basic": {"secretRef": {"name": "users"}}}
                    ),
                },
            },
        ]
    # the catch-all the load uses, last in precedence
    objs.append(
        route(
            "HTTPRoute",
            "zz-default",
            parents=[{"name": "gw"}],
            hostnames=[HOST],
            backend=("svc", 80),
        )
    )
    return objs


async def apply(provider: LocalProvider, objs: list[dict[str, Any]]) -> str:
    translation = translate_gateway(Snapshot.from_objects(objs), "bench/gw", SETTINGS)
    assert translation.load_balancer is not None
    result = await provider.apply(translation.load_balancer)
    assert result.programmed, result.message
    return result.addresses[0].value


def nginx_rss_mib(prefix: Path) -> float:
    pid = int((prefix / "nginx.pid").read_text())
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True
    ).stdout.split()
    total = 0
    for p in [str(pid), *children]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def start_backend_and_proxy(workdir: Path, ns: BackendNamespace) -> str:
    backend = ns.add_address()
    cert, key = self_signed(HOST, sans=[x509.DNSName(HOST)])
    (workdir / "backend.crt").write_text(cert)
    (workdir / "backend.key").write_text(key)
    (workdir / "backend.conf").write_text(backend_conf(workdir, backend, tls=True))
    subprocess.run(
        ["ip", "netns", "exec", ns.name, "nginx", "-c", str(workdir / "backend.conf")], check=True
    )
    (workdir / "proxy.conf").write_text(PROXY_CONF.format(dir=workdir, address=backend))
    subprocess.run(["nginx", "-c", str(workdir / "proxy.conf")], check=True)
    return backend


async def run(workdir: Path, ns: BackendNamespace, backend: str) -> None:
    provider = LocalProvider(state_dir=workdir / "dataplane")
    try:
        address = await apply(provider, objects(0, [backend]))
        await asyncio.sleep(0.5)
        print(
            f"{'path':<34} {'conns':>5} {'req/s (median)':>14} {'p50':>8} {'p99':>8} "
            f"{'failed':>6}  req/s of each run"
        )
        # wrk resolves the TLS row's host to the gateway (its SNI names the route)
        hosts_file = workdir / "hosts"
        hosts_file.write_text(f"{address} {HOST}\n")
        # (label, URL, the gateway's objects' options; None: not the gateway)
        rows: tuple[tuple[str, str, dict[str, Any] | None], ...] = (
            ("backend directly", f"http://{backend}:8080/", None),
            ("agc-controller gateway", f"http://{address}/", {}),
            ("hand-written NGINX proxy", "http://127.0.0.3:8088/", None),
            ("gateway, port shared with gRPC", f"http://{address}/", {"grpc": True}),
            ("gateway, TCP listener (stream)", f"http://{address}:{TCP_PORT}/", {"tcp": True}),
            ("gateway, TLS passthrough (stream)", f"https://{HOST}/", {"tls": True}),
            ("gateway, RateLimitPolicy on route", f"http://{address}/", {"rate_limit": "load"}),
            (
                "gateway, RateLimitPolicy elsewhere",
                f"http://{address}/",
                {"rate_limit": "other"},
            ),
            ("gateway, HealthCheckPolicy on backend", f"http://{address}/", {"health": True}),
            ("gateway, AuthPolicy jwt (RS256)", f"http://{address}/", {"auth": "jwt"}),
            ("gateway, AuthPolicy basic (bcrypt)", f"http://{address}/", {"auth": "basic"}),
            ("gateway, WAF (CRS 3.3, PL1) on route", f"http://{address}/", {"waf": "load"}),
            ("gateway, WAF elsewhere", f"http://{address}/", {"waf": "other"}),
        )
        for connections in (64, 1000):
            # runs of one row vary by 10-15% on a small machine: the rows take turns,
            # RUNS times, and each shows its median run
            runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in rows}
            for _ in range(RUNS):
                for label, url, options in rows:
                    if options is not None:
                        await apply(provider, objects(0, [backend], **options))
                        await asyncio.sleep(1)  # a reload's old workers drain
                    resolve = hosts_file if url.startswith("https") else None
                    headers = AUTH_HEADERS.get(str((options or {}).get("auth", "")))
                    runs[label].append(
                        await asyncio.to_thread(wrk, url, connections, resolve, headers)
                    )
            for label, results in runs.items():
                ordered = sorted(results, key=lambda r: r["rps"])
                r = ordered[len(ordered) // 2]
                print(
                    f"{label:<34} {connections:>5} {r['rps']:>14.0f} {r['p50']:>6.2f}ms"
                    f" {r['p99']:>6.2f}ms {sum(x['failed'] for x in results):>6.0f}  "
                    + " ".join(f"{x['rps']:.0f}" for x in results)
                )
        await apply(provider, objects(100, [backend]))
        reloads = provider.reloads
        extra = [ns.add_address() for _ in range(3)]
        for i in range(100):
            await apply(provider, objects(100, [backend, *extra[: i % 4]]))
        print(f"NGINX reloads during 100 endpoint changes: {provider.reloads - reloads}")
        prefix = workdir / "dataplane" / "bench_gw"
        for routes in (1000, 5000):
            await apply(provider, objects(routes, [backend]))
            # each worker compiles the new state on its next request; fresh connections
            # spread over the workers (reuseport)
            for _ in range(20):
                async with (
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
                    s.get(f"http://{address}/r1", headers={"Host": "bench.example.com"}),
                ):
                    pass
            await asyncio.sleep(1)
            rss = nginx_rss_mib(prefix)
            print(f"NGINX memory (master + 2 workers) with {routes} routes: {rss:.0f} MiB")
    finally:
        await provider.close()


def stop_backend_and_proxy(workdir: Path, ns: BackendNamespace) -> None:
    quit_ = ["-s", "quit"]
    subprocess.run(["nginx", "-c", str(workdir / "proxy.conf"), *quit_], check=False)
    backend = ["ip", "netns", "exec", ns.name, "nginx", "-c", str(workdir / "backend.conf")]
    subprocess.run([*backend, *quit_], check=False)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="agc-bench-dp-"))
    workdir.chmod(0o711)  # NGINX workers (nobody) reach files under it
    ns = BackendNamespace.create(name="agc-bench", tag=NETNS_TAG)
    try:
        backend = start_backend_and_proxy(workdir, ns)
        asyncio.run(run(workdir, ns, backend))
        stop_backend_and_proxy(workdir, ns)
    finally:
        ns.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
