"""The Helm chart installed onto a real node, run from the images deploy/Dockerfile builds.

What a user gets from `helm install` and `kubectl apply`, with nothing in between:
- the controller Deployment (2 replicas, leader election) from the controller
  image, as uid 65532, Ready through its probes;
- per Gateway, the data-plane Deployment the controller provisions, from the
  data-plane image, serving through its pods and its Service (kube-proxy);
- each data-plane pod's /metrics counts the requests it answered;
- a route change reaches the data plane without an NGINX reload;
- the leader killed: the standby takes over and programs the next change, and
  traffic never fails meanwhile (wrk, which never retries);
- a rolling update of the data-plane Deployment under load loses no request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from devcluster.cluster import CHART, helm, image_values, install_chart
from devcluster.node import STATIC_SUBNET
from tests.cluster.conftest import Cluster
from tests.e2e.load import Load

NAMESPACE = "agc-system"
RELEASE = "agc"
APP = "demo"
T = TypeVar("T")

# the backend: the controller image's Python answering with its pod's name
BACKEND = """
import http.server, os
NAME = os.environ["POD_NAME"].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out as two writes: without this, Nagle and delayed ACKs
    # hold every answer for 40 ms
    disable_nagle_algorithm = True
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(NAME)))
        self.end_headers()
        self.wfile.write(NAME)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""


def wait_for(what: str, probe: Callable[[], T | None], *, within: float = 90.0) -> T:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (value := probe()) is not None:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")


def http_get(url: str, *, host: str | None = None) -> tuple[int, str] | None:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None


def condition(obj: dict[str, Any], type_: str) -> str | None:
    return next(
        (c["status"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_),
        None,
    )


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Cluster:
    install_chart(
        cluster.plane.kubeconfig,
        release=RELEASE,
        namespace=NAMESPACE,
        values={
            **image_values(cluster.images.values()),
            # no load balancer here: the host reaches the Service at its ClusterIP
            "dataplane.serviceType": "ClusterIP",
            "dataplane.staticAddresses": "{" + STATIC_SUBNET + "}",
        },
    )
    cluster.kubectl("apply", "-f", "-", manifest=_demo(cluster.images["agc-controller"]))
    return cluster


def _demo(image: str) -> str:
    backend = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": APP},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-c", BACKEND],
                            "env": [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                }
                            ],
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                        }
                    ]
                },
            },
        },
    }
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}},
        backend,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": APP},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": APP},
            "spec": {
                "gatewayClassName": "agc",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        _route(["/"]),
    ]
    return "\n---\n".join(json.dumps(o) for o in objects)


def _route(paths: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": APP},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["web.example"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": p}} for p in paths],
                    "backendRefs": [{"name": "web", "port": 80}],
                }
            ],
        },
    }


def _pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.get("pods", "-n", namespace, "-l", selector)["items"]
    return pods


def _ready(pod: dict[str, Any]) -> bool:
    return pod["metadata"].get("deletionTimestamp") is None and condition(pod, "Ready") == "True"


def _ready_pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]] | None:
    """The two pods `selector` selects, once both are ready (each Deployment here has two)."""
    pods = [p for p in _pods(cluster, namespace, selector) if _ready(p)]
    return pods if len(pods) == 2 else None


def _data_plane_pods(cluster: Cluster) -> list[dict[str, Any]] | None:
    return _ready_pods(cluster, APP, "app.kubernetes.io/name=agc-dataplane")


def _programmed_gateway(cluster: Cluster) -> dict[str, Any] | None:
    gateway = cluster.get("gateway", "-n", APP, "gw")
    return gateway if condition(gateway, "Programmed") == "True" else None


def _reloads(pod_ip: str) -> float:
    with urllib.request.urlopen(f"http://{pod_ip}:8081/metrics", timeout=3) as response:
        text = response.read().decode()
    match = re.search(r"^agc_dataplane_nginx_reloads_total (\S+)$", text, re.M)
    assert match, "the data plane's metrics have no reload counter"
    return float(match.group(1))


def _leader(cluster: Cluster) -> str:
    """The pod holding the Lease (its identity is `<pod name>_<pid>`)."""
    lease = cluster.get("lease", "-n", NAMESPACE, "agc-controller")
    holder: str = lease["spec"].get("holderIdentity") or ""
    return holder.rsplit("_", 1)[0]


def _other_leader(cluster: Cluster, old: str) -> str | None:
    holder = _leader(cluster)
    return holder if holder and holder != old else None


def _none_of(
    cluster: Cluster, old: set[str], *, namespace: str = APP, app: str = "agc-dataplane"
) -> set[str] | None:
    """The pods of `app` (the data plane's by default), once none of `old` is left."""
    names = {
        p["metadata"]["name"] for p in _pods(cluster, namespace, f"app.kubernetes.io/name={app}")
    }
    return None if names & old else names


def _serving(cluster: Cluster, path: str) -> str:
    """The Gateway's address, once it is Programmed and its route serves only `path`."""
    gateway = wait_for("the Gateway to be Programmed", lambda: _programmed_gateway(cluster))
    (address,) = [a["value"] for a in gateway["status"]["addresses"]]
    cluster.kubectl("apply", "-f", "-", manifest=json.dumps(_route([path])))
    wait_for(f"{path} served", lambda: _serves(address, path, 200))
    return str(address)


def _serves(ip: str, path: str, status: int) -> bool | None:
    answer = http_get(f"http://{ip}{path}", host="web.example")
    return True if answer is not None and answer[0] == status else None


def test_the_controller_runs_from_its_image_as_non_root_and_one_replica_leads(
    release: Cluster,
) -> None:
    pods = _pods(release, NAMESPACE, "app.kubernetes.io/name=agc-controller")
    assert len(pods) == 2
    assert all(_ready(p) for p in pods)
    for pod in pods:
        (status,) = pod["status"]["containerStatuses"]
        assert status["image"] == release.images["agc-controller"]
        assert status["user"]["linux"]["uid"] == 65532
    leader = _leader(release)
    assert leader in {p["metadata"]["name"] for p in pods}
    assert release.get("pdb", "-n", NAMESPACE)["items"], "the chart's PodDisruptionBudget"
    # pods/log: the apiserver reads the container's log from the kubelet, which
    # authenticates it by its client certificate (what `kubectl logs` does)
    assert "leader_acquired" in release.kubectl("logs", "-n", NAMESPACE, leader)


def test_traffic_reaches_the_backends_through_the_data_plane_pods_and_service(
    release: Cluster,
) -> None:
    gateway = wait_for("the Gateway to be Programmed", lambda: _programmed_gateway(release))
    pods = wait_for("two ready data-plane pods", lambda: _data_plane_pods(release))
    for pod in pods:
        (status,) = pod["status"]["containerStatuses"]
        assert status["image"] == release.images["agc-dataplane"]
        assert status["user"]["linux"]["uid"] == 65532
    backends = {
        p["metadata"]["name"]
        for p in wait_for("two ready backends", lambda: _ready_pods(release, APP, "app=web"))
    }
    # the Gateway's address is its Service's ClusterIP (kube-proxy) and each pod serves too
    (address,) = [a["value"] for a in gateway["status"]["addresses"]]
    for ip in [address, *(p["status"]["podIP"] for p in pods)]:
        seen: set[str] = set()
        for _ in range(20):
            answer = wait_for(
                f"an answer at {ip}", lambda ip=ip: http_get(f"http://{ip}/", host="web.example")
            )
            assert answer[0] == 200, answer
            seen.add(answer[1])
        assert seen == backends, f"{ip} balanced over {seen}, not {backends}"
        other = http_get(f"http://{ip}/", host="other.example")
        assert other is not None
        assert other[0] == 404, other


def _counted(pod_ip: str, **labels: str) -> float:
    """The sum of agc_dataplane_requests_total over the series with these labels."""
    with urllib.request.urlopen(f"http://{pod_ip}:8081/metrics", timeout=3) as response:
        text = response.read().decode()
    total = 0.0
    for match in re.finditer(r"^agc_dataplane_requests_total\{(.*)\} (\S+)$", text, re.M):
        series = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(series.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_the_data_plane_pods_count_the_requests_they_answer(release: Cluster) -> None:
    wait_for("the Gateway to be Programmed", lambda: _programmed_gateway(release))
    pod = wait_for("data-plane pods", lambda: _data_plane_pods(release))[0]
    ip = pod["status"]["podIP"]
    wait_for(f"{ip} to serve /", lambda: _serves(ip, "/", 200))
    served = {"gateway": f"{APP}/gw", "route": f"{APP}/web", "code": "2xx"}
    unrouted = {"gateway": f"{APP}/gw", "route": "", "code": "4xx"}
    time.sleep(1.5)  # the requests so far reach the counters (workers flush every second)
    before = _counted(ip, **served), _counted(ip, **unrouted)
    for _ in range(10):
        assert _serves(ip, "/", 200)
    answer = http_get(f"http://{ip}/", host="other.example")
    assert answer is not None
    assert answer[0] == 404
    # each worker adds its counts every second (lua/agc/metrics.lua)
    want = (before[0] + 10, before[1] + 1)
    wait_for(
        "the requests counted",
        lambda: (_counted(ip, **served), _counted(ip, **unrouted)) == want or None,
        within=10,
    )
    time.sleep(1.5)  # one more flush: nothing else is counted
    assert (_counted(ip, **served), _counted(ip, **unrouted)) == want


def test_a_route_change_reaches_the_data_plane_pods_without_a_reload(release: Cluster) -> None:
    wait_for("the Gateway to be Programmed", lambda: _programmed_gateway(release))
    ips = [
        p["status"]["podIP"] for p in wait_for("data-plane pods", lambda: _data_plane_pods(release))
    ]
    for ip in ips:
        wait_for(f"{ip} to serve /", lambda ip=ip: _serves(ip, "/", 200))
    reloads = {ip: _reloads(ip) for ip in ips}
    release.kubectl("apply", "-f", "-", manifest=json.dumps(_route(["/a", "/b"])))
    for ip in ips:
        wait_for(f"{ip} to stop serving /", lambda ip=ip: _serves(ip, "/", 404), within=30)
        assert _serves(ip, "/a", 200)
        assert _serves(ip, "/b/c", 200)
    assert {ip: _reloads(ip) for ip in ips} == reloads


async def test_the_leader_killed_a_standby_takes_over_and_traffic_never_fails(
    release: Cluster,
) -> None:
    address = await asyncio.to_thread(_serving, release, "/a")
    leader = _leader(release)
    async with Load(f"http://{address}/a", host="web.example", seconds=12) as load:
        await asyncio.sleep(1)
        release.kubectl("delete", "pod", "-n", NAMESPACE, leader, "--grace-period=0", "--force")
        standby = await asyncio.to_thread(
            wait_for,
            "a standby to take the Lease",
            lambda: _other_leader(release, leader),
            within=30,
        )
        # the new leader programs the next change
        release.kubectl("apply", "-f", "-", manifest=json.dumps(_route(["/a", "/after"])))
        await asyncio.to_thread(
            wait_for,
            "the change after the failover",
            lambda: _serves(address, "/after", 200),
            within=30,
        )
    assert standby != leader
    assert load.result is not None
    assert load.result.requests > 0
    assert load.result.failed == 0, load.result.output


async def test_a_rolling_update_of_the_data_plane_loses_no_request(release: Cluster) -> None:
    address = await asyncio.to_thread(_serving, release, "/")
    old = {
        p["metadata"]["name"] for p in _pods(release, APP, "app.kubernetes.io/name=agc-dataplane")
    }
    (deployment,) = release.kubectl(
        "get", "deploy", "-n", APP, "-l", "app.kubernetes.io/name=agc-dataplane", "-o", "name"
    ).split()
    async with Load(f"http://{address}/", host="web.example", seconds=30) as load:
        await asyncio.sleep(1)
        release.kubectl("rollout", "restart", "-n", APP, deployment)
        await asyncio.to_thread(
            release.kubectl, "rollout", "status", "-n", APP, deployment, "--timeout=60s"
        )
        # the old pods drain (5 s) and stop while the load still runs
        pods = await asyncio.to_thread(
            wait_for,
            "the old data-plane pods to be gone",
            lambda: _none_of(release, old),
            within=25,
        )
    assert len(pods) == 2
    assert load.result is not None
    assert load.result.requests > 0
    assert load.result.failed == 0, load.result.output


async def test_a_helm_upgrade_rolls_controller_and_data_plane_and_loses_no_request(
    release: Cluster,
) -> None:
    """What an operator's `helm upgrade` does: new controller pods (leadership
    moves), whose leader gives every data plane its new settings (a rolling update
    of the data-plane pods); traffic never notices, and the next change is served."""
    address = await asyncio.to_thread(_serving, release, "/")
    controllers = {
        p["metadata"]["name"]
        for p in _pods(release, NAMESPACE, "app.kubernetes.io/name=agc-controller")
    }
    data_planes = {
        p["metadata"]["name"] for p in _pods(release, APP, "app.kubernetes.io/name=agc-dataplane")
    }
    async with Load(f"http://{address}/", host="web.example", seconds=45) as load:
        await asyncio.sleep(1)
        await asyncio.to_thread(
            helm,
            release.plane.kubeconfig,
            "upgrade",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--reuse-values",
            "--set",
            "dataplane.resources.requests.cpu=60m",
            "--wait",
            "--timeout=120s",
        )
        await asyncio.to_thread(
            wait_for,
            "new controller pods",
            lambda: _none_of(release, controllers, namespace=NAMESPACE, app="agc-controller"),
            within=60,
        )
        # the old data-plane pods drain (5 s) and stop while the load still runs
        new_data_planes = await asyncio.to_thread(
            wait_for,
            "the data-plane pods replaced",
            lambda: _none_of(release, data_planes),
            within=60,
        )
    assert len(new_data_planes) == 2
    (pod,) = _pods(release, APP, "app.kubernetes.io/name=agc-dataplane")[:1]
    requests = pod["spec"]["containers"][0]["resources"]["requests"]
    assert requests["cpu"] == "60m"
    assert load.result is not None
    assert load.result.requests > 0
    assert load.result.failed == 0, load.result.output
    # the upgraded controller serves the next change
    release.kubectl("apply", "-f", "-", manifest=json.dumps(_route(["/", "/upgraded"])))
    await asyncio.to_thread(
        wait_for, "the change after the upgrade", lambda: _serves(address, "/upgraded", 200)
    )


def _infra_gateway(labels: dict[str, str], annotations: dict[str, str]) -> str:
    return json.dumps(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "infra", "namespace": APP},
            "spec": {
                "gatewayClassName": "agc",
                "infrastructure": {"labels": labels, "annotations": annotations},
                "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}],
            },
        }
    )


def _carried(
    cluster: Cluster, labels: dict[str, str], annotations: dict[str, str], missing: list[str]
) -> list[str] | None:
    """The kinds of the infra Gateway's data-plane objects, once every one of them
    (its ready pods included) carries the labels and annotations; else what is
    missing goes into `missing` (for the failure's message)."""
    selector = "gateway.networking.k8s.io/gateway-name=infra"
    items = cluster.get("deployments,services,serviceaccounts", "-n", APP, "-l", selector)["items"]
    missing.clear()
    for deployment in (o for o in items if o["kind"] == "Deployment"):
        # its pods carry its selector's labels (the Gateway's name may not fit a label)
        match = deployment["spec"]["selector"]["matchLabels"]
        pod_selector = ",".join(f"{k}={v}" for k, v in match.items())
        items += cluster.get("pods", "-n", APP, "-l", pod_selector)["items"]
    pods = [o for o in items if o["kind"] == "Pod" and not o["metadata"].get("deletionTimestamp")]
    if len(pods) != 2 or not all(_ready(p) for p in pods):
        missing.append(f"{len(pods)} pods, ready: {[_ready(p) for p in pods]}")
    for obj in items:
        meta = obj["metadata"]
        for kind, want in (("labels", labels), ("annotations", annotations)):
            if lacking := want.items() - (meta.get(kind) or {}).items():
                missing.append(f"{obj['kind']}/{meta['name']} lacks {kind} {dict(lacking)}")
    return None if missing else sorted({o["kind"] for o in items})


def _until_carried(
    cluster: Cluster, labels: dict[str, str], annotations: dict[str, str]
) -> list[str]:
    missing: list[str] = []
    try:
        return wait_for(
            "the infrastructure on every object",
            lambda: _carried(cluster, labels, annotations, missing),
        )
    except AssertionError as e:
        raise AssertionError(f"{e}; still: {missing}") from None


def test_a_gateways_infrastructure_labels_and_annotations_reach_its_data_plane(
    release: Cluster,
) -> None:
    """GatewayInfrastructurePropagation: spec.infrastructure's labels and
    annotations on every object made for the Gateway, and changes follow."""
    first = ({"team": "payments"}, {"example.com/cost-center": "42"})
    release.kubectl("apply", "-f", "-", manifest=_infra_gateway(*first))
    assert _until_carried(release, *first) == ["Deployment", "Pod", "Service", "ServiceAccount"]
    second = ({"team": "checkout"}, {"example.com/cost-center": "7"})
    release.kubectl("apply", "-f", "-", manifest=_infra_gateway(*second))
    _until_carried(release, *second)
    release.kubectl("delete", "gateway", "-n", APP, "infra")


def _addresses(cluster: Cluster) -> list[str]:
    """The Gateway's status.addresses once it is Programmed."""
    gateway = cluster.get("gateway", "-n", APP, "gw")
    if condition(gateway, "Programmed") != "True":
        return []
    return [a["value"] for a in gateway.get("status", {}).get("addresses", [])]


def test_a_requested_address_becomes_the_gateways_and_serves_through_kube_proxy(
    release: Cluster,
) -> None:
    """spec.addresses in the chart's dataplane.staticAddresses: the Service's external
    IP, which kube-proxy on the node forwards to the data-plane pods; given up, the
    Gateway's address is its cluster IP again."""
    cluster_ip = _serving(release, "/")
    address = str(ipaddress.ip_network(STATIC_SUBNET).network_address + 5)
    patch = {"spec": {"addresses": [{"type": "IPAddress", "value": address}]}}
    release.kubectl("patch", "gateway", "-n", APP, "gw", "--type=merge", "-p", json.dumps(patch))
    try:
        wait_for(
            f"{address} as the Gateway's address",
            lambda: True if _addresses(release) == [address] else None,
        )
        service = release.get("service", "-n", APP, "agc-gw")
        assert service["spec"]["externalIPs"] == [address]
        wait_for(f"{address} serving", lambda: _serves(address, "/", 200))
    finally:
        release.kubectl("patch", "gateway", "-n", APP, "gw", "--type=merge", "-p",
                        json.dumps({"spec": {"addresses": None}}))  # fmt: skip
    wait_for("the cluster IP back", lambda: True if _addresses(release) == [cluster_ip] else None)
    assert "externalIPs" not in release.get("service", "-n", APP, "agc-gw")["spec"]
