"""Health probes from the backend pods' readinessProbe (graph/readiness.py), what the
informer keeps of a pod for them, and the updates that re-translate."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from agc_controller.controller.cache import Cache
from agc_controller.controller.mapper import Mapper
from agc_controller.core.keys import ObjectKey
from agc_controller.informers import Store
from agc_controller.informers.transforms import trim_pod
from agc_controller.providers.azure import azure_translate_settings
from agc_controller.providers.local.capabilities import LOCAL_CAPABILITIES
from agc_controller.translate import Memo, Snapshot, translate_gateway
from agc_controller.translate.graph.readiness import readiness_check
from agc_controller.translate.model import BackendHealth, HealthCheck

GATEWAY = ObjectKey("Gateway", "ns", "gw")
GATEWAY_KEY = "default/gw"


def _pod(name: str, *containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": name, "resourceVersion": "1"},
        "spec": {"serviceAccountName": "web", "containers": list(containers)},
        "status": {"phase": "Running"},
    }


def _container(port: int = 8080, port_name: str = "http", **probes: Any) -> dict[str, Any]:
    return {
        "name": "app",
        "image": "app:1",
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        **probes,
    }


def _http(path: str = "/ready", port: int | str = 8080, **more: Any) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port, **more}}


def _slice(*pods: str, port: int = 8080, port_name: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": "web-x", "namespace": "ns", "labels": {}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port}],
        "endpoints": [
            {
                "addresses": [f"10.0.0.{i + 1}"],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": pod, "namespace": "ns"},
            }
            for i, pod in enumerate(pods)
        ],
    }


def _check(pods: list[dict[str, Any]], *slices: dict[str, Any]) -> HealthCheck | None:
    by_key = {f"ns/{p['metadata']['name']}": trim_pod(p) for p in pods}
    return readiness_check(
        slices or (_slice(*(p["metadata"]["name"] for p in pods)),), None, by_key
    )


def test_a_readiness_probe_becomes_the_backends_probe() -> None:
    probe = {
        **_http(
            scheme="HTTPS",
            httpHeaders=[{"name": "X-Other", "value": "1"}, {"name": "host", "value": "web.test"}],
        ),
        "periodSeconds": 7,
        "timeoutSeconds": 2,
        "failureThreshold": 4,
        "initialDelaySeconds": 30,
    }
    assert _check([_pod("a", _container(readinessProbe=probe))]) == HealthCheck(
        interval_ms=7000,
        timeout_ms=2000,
        healthy_threshold=1,
        unhealthy_threshold=4,
        protocol="HTTPS",
        host="web.test",
        path="/ready",
        status_codes=((200, 399),),
    )


def test_kubernetes_defaults_fill_what_a_probe_leaves_out() -> None:
    check = _check([_pod("a", _container(readinessProbe={"httpGet": {"port": 8080}}))])
    assert check is not None
    assert (check.interval_ms, check.timeout_ms, check.unhealthy_threshold) == (10_000, 1000, 3)
    assert (check.path, check.host, check.port, check.protocol) == ("/", None, None, "HTTP")


def test_without_an_http_readiness_probe_the_liveness_probe_serves() -> None:
    container = _container(
        readinessProbe={"exec": {"command": ["true"]}}, livenessProbe=_http("/alive")
    )
    check = _check([_pod("a", container)])
    assert check is not None
    assert check.path == "/alive"


@pytest.mark.parametrize(
    "probe",
    [
        {"exec": {"command": ["true"]}},
        {"tcpSocket": {"port": 8080}},
        {"grpc": {"port": 8080}},
        # what a probe request cannot carry, or a port the container does not name
        _http("no-slash"),
        _http(httpHeaders=[{"name": "Host", "value": "bad host"}]),
        _http(port="metrics"),
        _http(scheme="FTP"),
    ],
)
def test_a_probe_that_cannot_be_repeated_leaves_the_default(probe: dict[str, Any]) -> None:
    assert _check([_pod("a", _container(readinessProbe=probe, livenessProbe=probe))]) is None


def test_the_container_is_the_one_declaring_the_endpoints_port() -> None:
    sidecar = _container(port=15090, port_name="stats", readinessProbe=_http("/sidecar", 15090))
    app = _container(port=8080, port_name="http", readinessProbe=_http("/app", "http"))
    # the slice's port is the Service's targetPort resolved (named "http" or 8080 alike)
    pods = {"ns/a": trim_pod(_pod("a", sidecar, app))}
    check = readiness_check((_slice("a", port=8080, port_name="web"),), "web", pods)
    assert check is not None
    # a named httpGet port resolves to the container's port: the endpoint's own
    assert (check.path, check.port) == ("/app", None)
    check = readiness_check((_slice("a", port=15090, port_name="web"),), "web", pods)
    assert check is not None
    assert check.path == "/sidecar"


def test_a_probe_on_another_port_is_probed_there() -> None:
    container = _container(readinessProbe=_http(port=9000))
    container["ports"].append({"name": "health", "containerPort": 9000})
    check = _check([_pod("a", container)])
    assert check is not None
    assert check.port == 9000


def test_pods_that_disagree_follow_the_first_by_name() -> None:
    pods = [
        _pod("web-b", _container(readinessProbe=_http("/b"))),
        _pod("web-c", _container()),
        _pod("web-a", _container(readinessProbe=_http("/a"))),
    ]
    check = _check(pods)
    assert check is not None
    assert check.path == "/a"
    # whatever order the slices list them in
    check = _check(pods, _slice("web-b"), _slice("web-a"))
    assert check is not None
    assert check.path == "/a"
    # a pod without a probe does not decide
    check = _check(pods, _slice("web-c", "web-b"))
    assert check is not None
    assert check.path == "/b"


def test_a_pod_keeps_only_its_account_probes_and_their_ports() -> None:
    container = _container(
        readinessProbe={**_http(httpHeaders=[{"name": "X-A", "value": "1"}]), "periodSeconds": 5},
        livenessProbe={"exec": {"command": ["true"]}},
        env=[{"name": "SECRET", "value": "x"}],
    )
    trimmed = trim_pod(_pod("a", container, _container(port=9090)))
    assert trimmed["spec"] == {
        "serviceAccountName": "web",
        "containers": [
            {
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {
                    "periodSeconds": 5,
                    "httpGet": {"path": "/ready", "port": 8080},
                },
            }
        ],
    }
    assert "status" not in trimmed


def _pod_setup() -> tuple[Mapper, list[ObjectKey]]:
    cache = Cache.with_stores(
        {"HTTPRoute": Store(), "Service": Store(), "EndpointSlice": Store(), "Pod": Store()}
    )
    cache.store("HTTPRoute").upsert(
        {
            "metadata": {"name": "r", "namespace": "ns", "generation": 1, "resourceVersion": "1"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
            },
        }
    )
    endpoint_slice = _slice("a")
    endpoint_slice["metadata"]["labels"] = {"kubernetes.io/service-name": "web"}
    cache.store("EndpointSlice").upsert(endpoint_slice)
    enqueued: list[ObjectKey] = []
    return Mapper(cache=cache, enqueue=enqueued.append), enqueued


def _edited(pod: dict[str, Any], edit: Any) -> dict[str, Any]:
    new = copy.deepcopy(pod)
    new["metadata"]["resourceVersion"] = "2"
    edit(new)
    return new


@pytest.mark.parametrize(
    ("edit", "enqueues"),
    [
        (lambda p: p["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(path="/x"), True),
        (lambda p: p["spec"]["containers"][0]["readinessProbe"].update(periodSeconds=3), True),
        (lambda p: p["spec"]["containers"][0]["ports"][0].update(containerPort=8081), True),
        # kubelet's status writes, and what no probe reads
        (lambda p: p["status"].update(phase="Failed", podIP="10.0.0.9"), False),
        (lambda p: p["spec"]["containers"][0].update(image="app:2"), False),
        (
            lambda p: p["spec"]["containers"][0]["readinessProbe"].update(initialDelaySeconds=9),
            False,
        ),
    ],
)
def test_a_pods_probe_edit_retranslates_its_gateways(edit: Any, enqueues: bool) -> None:
    mapper, enqueued = _pod_setup()
    old = _pod("a", _container(readinessProbe=_http()))
    # the handlers see what the informer stored: the trimmed pod
    mapper.handler("Pod").on_update(trim_pod(old), trim_pod(_edited(old, edit)))
    assert enqueued == ([GATEWAY] if enqueues else [])


def test_a_memo_follows_probe_edits_as_a_translation_from_scratch() -> None:
    case = Path(__file__).parents[1] / "golden" / "cases" / "azure-pod-readiness-probes.in.yaml"
    objects = [doc for doc in yaml.safe_load_all(case.read_text()) if doc]
    settings = azure_translate_settings("agc-controller.io/gateway-controller")
    memo = Memo()
    paths = []
    # None: the same objects again (the memo's entry is kept); "": no probe left
    for path in ("/ready", None, "/edited", ""):
        if path is not None:
            # the informer replaces an object, never edits it in place
            i = next(i for i, o in enumerate(objects) if o["metadata"]["name"] == "web-a")
            objects[i] = web_a = copy.deepcopy(objects[i])
            container = web_a["spec"]["containers"][0]
            if path:
                container["readinessProbe"]["httpGet"]["path"] = path
            else:
                del container["readinessProbe"]
        snapshot = Snapshot.from_objects(objects)
        incremental = translate_gateway(snapshot, GATEWAY_KEY, settings, memo=memo)
        assert incremental == translate_gateway(snapshot, GATEWAY_KEY, settings)
        assert incremental.load_balancer is not None
        health = incremental.load_balancer.health_checks["default/web:80"]
        assert health.probe is not None
        paths.append(health.probe.path)
    # web-b's probe once web-a has none
    assert paths == ["/ready", "/ready", "/edited", "/ready-v2"]


def test_an_ingress_class_snapshot_has_the_pods_behind_its_backends() -> None:
    cache = Cache.with_stores({kind: Store() for kind in ("Ingress", "EndpointSlice", "Pod")})
    cache.store("Ingress").upsert(
        {
            "metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1"},
            "spec": {
                "ingressClassName": "agc",
                "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
            },
        }
    )
    endpoint_slice = _slice("a", "gone")
    endpoint_slice["metadata"]["labels"] = {"kubernetes.io/service-name": "web"}
    cache.store("EndpointSlice").upsert(endpoint_slice)
    pod = trim_pod(_pod("a", _container(readinessProbe=_http())))
    cache.store("Pod").upsert(pod)
    # a pod no endpoint targets is not read
    cache.store("Pod").upsert(trim_pod(_pod("other", _container())))
    assert cache.snapshot_for_ingress_class("agc").pods == {"ns/a": pod}


def test_a_policy_asking_more_failures_than_arm_takes_is_refused_on_azure() -> None:
    """ARM takes an unhealthyThreshold of 1-20: a policy asking more is refused there,
    never clamped in silence (the local data plane takes the CRD's range)."""

    def policy(threshold: int) -> BackendHealth:
        return BackendHealth(
            probe=HealthCheck(
                interval_ms=5000,
                timeout_ms=1000,
                healthy_threshold=1,
                unhealthy_threshold=threshold,
                protocol="HTTP",
                path="/healthz",
            )
        )

    azure = azure_translate_settings().capabilities
    assert azure.health_check_problem(policy(20)) is None
    assert azure.health_check_problem(policy(21)) == (
        "spec.default.unhealthyThreshold above 20 is not supported by the azure provider"
    )
    assert LOCAL_CAPABILITIES.health_check_problem(policy(50)) is None
