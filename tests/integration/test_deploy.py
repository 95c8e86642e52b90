"""The Helm chart against a real kube-apiserver, and `agc-controller run` as it runs in a pod.

- `helm template` output applies (server-side dry run, then for real).
- The controller runs as a subprocess with the chart's ServiceAccount: a token
  minted with the TokenRequest API and the cluster CA, like a pod's mounted
  service account, so every request is checked against the chart's RBAC.
- SIGTERM on the leader hands the lease to a standby process within 2 s.

helm is built from its Go module by hack/helm.sh (cached under $AGC_CACHE_DIR).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
import yaml
from kubernetes_asyncio import client

from agc_controller.dataplane.config import (
    DIGEST_ANNOTATION,
    SHARDS,
    VERSION_ANNOTATION,
    decode_manifest,
    decode_shard,
    shard_name,
)
from agc_controller.dataplane.manifests import APP as DATAPLANE_APP
from agc_controller.dataplane.manifests import LABEL_NAME
from agc_controller.providers.azure.settings import AzureSettings
from devcluster import ControlPlane
from devcluster.controlplane import free_port
from devcluster.crds import OWN_CRDS, load_crds
from tests.integration.test_controller import GW, Env, condition, eventually, our_parents

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "chart" / "agc-controller"
# the chart's default Lease name
LEASE = "agc-controller"
# the chart's dataplane.staticAddresses in these tests: nothing routes to them
STATIC_ADDRESSES = "10.217.3.0/24"


@pytest.fixture(scope="session")
def helm() -> Path:
    out = subprocess.run(
        [str(REPO / "hack" / "helm.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def helm_template(
    helm: Path, *, release: str, namespace: str, values: dict[str, str], chart: Path = CHART
) -> str:
    sets = [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]
    return subprocess.run(
        [str(helm), "template", release, str(chart), "--namespace", namespace, *sets],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def kubectl(
    control_plane: ControlPlane, *args: str, manifest: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(control_plane.binaries.kubectl), f"--kubeconfig={control_plane.kubeconfig}", *args],
        input=manifest,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )


def apply(control_plane: ControlPlane, manifest: str, *, dry_run: bool = False) -> None:
    args = ["apply", "-f", "-", *(["--dry-run=server"] if dry_run else [])]
    result = kubectl(control_plane, *args, manifest=manifest)
    assert result.returncode == 0, result.stdout


def documents(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


@attrs.frozen
class Install:
    """One rendered and applied chart release, with its own GatewayClass and controllerName."""

    manifest: str
    namespace: str
    release: str
    class_name: str
    controller_name: str

    @property
    def fullname(self) -> str:
        return f"{self.release}-agc-controller"


@pytest.fixture
def provider() -> str:
    """The chart's `provider` value for `install` (a test overrides it by parametrizing)."""
    return "memory"


@pytest.fixture
def install(
    helm: Path, control_plane: ControlPlane, namespace: str, provider: str
) -> Iterator[Install]:
    suffix = uuid.uuid4().hex[:8]
    release = f"t{suffix}"
    install = Install(
        manifest=helm_template(
            helm,
            release=release,
            namespace=namespace,
            values={
                # the session installed our CRDs; deleting this release must keep them
                "crds.install": "false",
                "provider": provider,
                "gatewayClass.name": f"agc-{suffix}",
                "controllerName": f"agc-controller.io/test-{suffix}",
                "ingressClass.name": f"agc-{suffix}",
                "ingressController": f"agc-controller.io/test-ingress-{suffix}",
                "dataplane.imagePullSecrets": "{registry-a,registry-b}",
                "dataplane.staticAddresses": "{" + STATIC_ADDRESSES + "}",
            },
        ),
        namespace=namespace,
        release=release,
        class_name=f"agc-{suffix}",
        controller_name=f"agc-controller.io/test-{suffix}",
    )
    apply(control_plane, install.manifest)
    yield install
    kubectl(control_plane, "delete", "--ignore-not-found", "-f", "-", manifest=install.manifest)


def test_chart_applies_dry_run_then_for_real(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    manifest = helm_template(
        helm,
        release="dry",
        namespace=namespace,
        values={
            # test_chart_installs_the_crds_directory checks the CRDs; deleting this
            # release must keep the session's
            "crds.install": "false",
            "gatewayClass.name": f"agc-{namespace}",
            "controllerName": "example.com/dry",
            "ingressClass.name": f"agc-{namespace}",
            "ingressController": "example.com/dry-ingress",
        },
    )
    kinds = sorted(doc["kind"] for doc in documents(manifest))
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "GatewayClass",
        "IngressClass",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    try:
        apply(control_plane, manifest, dry_run=True)
        assert kubectl(control_plane, "get", "gatewayclass", f"agc-{namespace}").returncode != 0
        apply(control_plane, manifest)
        got = kubectl(control_plane, "get", "gatewayclass", f"agc-{namespace}", "-o", "json")
        assert json.loads(got.stdout)["spec"]["controllerName"] == "example.com/dry"
        deployment = kubectl(control_plane, "-n", namespace, "get", "deploy/dry-agc-controller")
        assert deployment.returncode == 0, deployment.stdout
    finally:
        kubectl(control_plane, "delete", "--ignore-not-found", "-f", "-", manifest=manifest)


def test_chart_installs_the_crds_directory(
    helm: Path, control_plane: ControlPlane, namespace: str
) -> None:
    manifest = helm_template(
        helm, release="crds", namespace=namespace, values={"gatewayClass.create": "false"}
    )
    rendered = [doc for doc in documents(manifest) if doc["kind"] == "CustomResourceDefinition"]
    ours = sorted(str(crd["metadata"]["name"]) for crd in load_crds(OWN_CRDS))
    assert ours, "crds/ holds our policy CRDs"
    assert sorted(doc["metadata"]["name"] for doc in rendered) == ours
    for doc in rendered:
        assert doc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert "CustomResourceDefinition" not in helm_template(
        helm, release="crds", namespace=namespace, values={"crds.install": "false"}
    )
    # the session's API server already serves them (installed from crds/ by the test
    # set-up); the server checks the chart's copy, CEL rules included, without a change
    apply(control_plane, "\n---\n".join(yaml.safe_dump(doc) for doc in rendered), dry_run=True)


async def service_account_kubeconfig(
    kube: client.ApiClient,
    control_plane: ControlPlane,
    *,
    namespace: str,
    service_account: str,
    path: Path,
) -> Path:
    """What a pod running as `service_account` would see: its token and the cluster CA."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = await client.CoreV1Api(kube).create_namespaced_service_account_token(
        service_account, namespace, request
    )
    text = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": control_plane.server,
                        "certificate-authority": str(control_plane.pki.ca.cert),
                    },
                }
            ],
            "users": [{"name": "sa", "user": {"token": token.status.token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "sa"}}],
            "current-context": "sa",
        }
    )
    await asyncio.to_thread(path.write_text, text)
    return path


@pytest.fixture
async def sa_kubeconfig(
    kube: client.ApiClient, control_plane: ControlPlane, install: Install, tmp_path: Path
) -> Path:
    """What a pod of the chart would see: the ServiceAccount's token and the cluster CA."""
    return await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=install.namespace,
        service_account=install.fullname,
        path=tmp_path / "sa.kubeconfig",
    )


def chart_env(manifest: str) -> dict[str, str]:
    """The plain environment variables of the chart's controller container."""
    deployment = next(doc for doc in documents(manifest) if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: str(e["value"]) for e in container["env"] if "value" in e}


def test_the_charts_monitors_and_dashboard(helm: Path, namespace: str) -> None:
    values = {"metrics.serviceMonitor.enabled": "true", "metrics.grafanaDashboard.enabled": "true"}
    docs = documents(helm_template(helm, release="mon", namespace=namespace, values=values))
    by_kind = {d["kind"]: d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")}
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics")
    )
    # the ServiceMonitor selects the metrics Service by its labels, on its port's name
    monitor = by_kind["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["endpoints"]] == [
        p["name"] for p in service["spec"]["ports"]
    ]
    # the PodMonitor finds the data-plane pods the controller provisions, anywhere
    pods = by_kind["PodMonitor"]["spec"]
    assert pods["namespaceSelector"] == {"any": True}
    assert pods["selector"]["matchLabels"] == {LABEL_NAME: DATAPLANE_APP}
    assert [e["port"] for e in pods["podMetricsEndpoints"]] == ["health"]
    (dashboard,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = CHART / "dashboards" / "agc-controller.json"
    assert json.loads(dashboard["data"]["agc-controller.json"]) == json.loads(shipped.read_text())
    # without a PodMonitor for a provider with no data-plane pods
    azure = {**values, "provider": "azure", "azure.subscriptionId": "s"}
    docs = documents(helm_template(helm, release="mon", namespace=namespace, values=azure))
    assert [d["kind"] for d in docs if d["kind"].endswith("Monitor")] == ["ServiceMonitor"]


def test_the_charts_azure_values_reach_the_controller(helm: Path, namespace: str) -> None:
    manifest = helm_template(
        helm,
        release="az",
        namespace=namespace,
        values={
            "provider": "azure",
            "azure.subscriptionId": "sub",
            "azure.resourceGroup": "group",
            "azure.applicationGatewayName": "appgw",
            "azure.frontend": "both",
            "azure.caBundle": "-----BEGIN CERTIFICATE-----",
        },
    )
    env = chart_env(manifest)
    assert {k: v for k, v in env.items() if k.startswith("AGC_AZURE_")} == {
        "AGC_AZURE_SUBSCRIPTION_ID": "sub",
        "AGC_AZURE_RESOURCE_GROUP": "group",
        "AGC_AZURE_APPLICATION_GATEWAY": "appgw",
        "AGC_AZURE_FRONTEND": "both",
        "AGC_AZURE_CA_BUNDLE": "/etc/agc-controller/azure/ca.pem",
    }
    # the CA bundle is a ConfigMap mounted where that variable says
    docs = documents(manifest)
    (ca,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert ca["data"] == {"ca.pem": "-----BEGIN CERTIFICATE-----"}
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "azure-ca", "configMap": {"name": ca["metadata"]["name"]}}]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "azure-ca", "mountPath": "/etc/agc-controller/azure", "readOnly": True}
    ]
    # and the settings the azure provider reads from them
    settings = AzureSettings.from_env(env)
    assert (settings.application_gateway, settings.frontend) == ("appgw", "both")


def test_the_charts_mesh_values_reach_the_controller_and_its_rbac(
    helm: Path, namespace: str
) -> None:
    values = {"mesh.enabled": "true", "mesh.caAddress": "istiod.mesh:15012"}
    manifest = helm_template(helm, release="m", namespace=namespace, values=values)
    docs = documents(manifest)
    # the controller checks mesh endpoints as its own ServiceAccount
    account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    assert {k: v for k, v in chart_env(manifest).items() if k.startswith("AGC_MESH_")} == {
        "AGC_MESH_IDENTITY": f"{namespace}/{account}",
        "AGC_MESH_CA_ADDRESS": "istiod.mesh:15012",
        "AGC_MESH_CA_SERVER_NAME": "istiod.istio-system.svc",
        "AGC_MESH_TRUST_DOMAIN": "cluster.local",
    }
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-mesh")]
    assert role["metadata"]["namespace"] == namespace
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": [account],
            "verbs": ["create"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["istio-ca-root-cert"],
            "verbs": ["get"],
        },
    ]
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    pods = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}
    assert pods in cluster_role["rules"]
    # off by default: none of it
    plain = helm_template(helm, release="m", namespace=namespace, values={})
    assert not [d for d in documents(plain) if d["metadata"]["name"].endswith("-mesh")]
    assert not [k for k in chart_env(plain) if k.startswith("AGC_MESH_")]
    assert pods not in next(d for d in documents(plain) if d["kind"] == "ClusterRole")["rules"]


@attrs.define
class ControllerProcess:
    """`agc-controller run` in a child process, logging JSON to a file."""

    process: subprocess.Popen[bytes]
    identity: str
    health_port: int
    log_path: Path

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def logged(self, event: str, **fields: Any) -> bool:
        return any(
            entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items())
            for entry in self.logs()
        )

    async def probe(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                return response.status, await response.text()
        except aiohttp.ClientConnectionError:
            return 0, ""


@pytest.fixture
def start_controller(install: Install, sa_kubeconfig: Path, tmp_path: Path) -> Iterator[Any]:
    """`start(name)` runs a controller as the chart's ServiceAccount, with HOSTNAME=name."""
    started: list[ControllerProcess] = []

    def start(name: str) -> ControllerProcess:
        port = free_port()
        log_path = tmp_path / f"{name}.log"
        env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
        # what the chart's Deployment sets (provider, data-plane settings...), then the
        # pod's identity and a port of its own
        env |= chart_env(install.manifest)
        env |= {"HOSTNAME": name, "POD_NAMESPACE": install.namespace}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agc_controller.cli",
                    "run",
                    f"--kubeconfig={sa_kubeconfig}",
                    f"--health-address=127.0.0.1:{port}",
                ],
                env=env,
                stdout=log,
                stderr=log,
            )
        controller = ControllerProcess(process, f"{name}_{process.pid}", port, log_path)
        started.append(controller)
        return controller

    yield start
    for controller in started:
        if controller.process.poll() is None:
            controller.process.kill()
            controller.process.wait()


@pytest.fixture
def env(kube: client.ApiClient, install: Install) -> Env:
    # the chart created the GatewayClass; the fixture in test_controller would make another
    return Env(kube, install.namespace, install.controller_name, install.class_name)


async def lease_holder(kube: client.ApiClient, namespace: str) -> str:
    try:
        lease = await client.CoordinationV1Api(kube).read_namespaced_lease(LEASE, namespace)
    except client.ApiException as e:
        if e.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


async def test_controller_with_the_charts_rbac_does_its_whole_job(
    kube: client.ApiClient, install: Install, env: Env, start_controller: Any
) -> None:
    controller = start_controller("rbac")
    await env.service()
    await client.CoreV1Api(kube).create_namespaced_config_map(
        env.namespace, {"metadata": {"name": "ca"}, "data": {"ca.crt": "not a certificate"}}
    )
    await env.gateway("gw")
    await env.route("web", "gw")
    await env.create(
        "grpcroutes",
        {
            "apiVersion": f"{GW}/v1",
            "kind": "GRPCRoute",
            "metadata": {"name": "rpc"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}],
            },
        },
    )
    await env.create(
        "backendtlspolicies",
        {
            "apiVersion": f"{GW}/v1",
            "kind": "BackendTLSPolicy",
            "metadata": {"name": "tls"},
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                "validation": {
                    "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}],
                    "hostname": "web.example.com",
                },
            },
        },
    )

    await env.create_policy(
        "RateLimitPolicy",
        "limit",
        {
            "targetRefs": [{"group": GW, "kind": "Gateway", "name": "gw"}],
            "limit": {"requests": 10, "unit": "Second"},
        },
    )
    await env.create_policy(
        "HealthCheckPolicy",
        "health",
        {
            "targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
            "default": {"interval": "10s", "http": {"path": "/healthz"}},
        },
    )

    async def everything_reported() -> bool:
        gw = await env.get("gateways", "gw")
        cls = await env.custom.get_cluster_custom_object(
            GW, "v1", "gatewayclasses", install.class_name
        )
        policy = await env.get("backendtlspolicies", "tls")
        ours = [
            await env.get_policy(kind, name)
            for kind, name in (("RateLimitPolicy", "limit"), ("HealthCheckPolicy", "health"))
        ]
        ancestors = [
            a
            for a in (policy.get("status") or {}).get("ancestors") or []
            if a["controllerName"] == env.controller_name
        ]
        return (
            condition((gw.get("status") or {}).get("conditions"), "Programmed").get("status")
            == "True"
            and condition((cls.get("status") or {}).get("conditions"), "Accepted").get("status")
            == "True"
            and bool(our_parents(await env.get("httproutes", "web"), env.controller_name))
            and bool(our_parents(await env.get("grpcroutes", "rpc"), env.controller_name))
            and bool(ancestors)
            and all(
                any(
                    a["controllerName"] == env.controller_name
                    and condition(a["conditions"], "Accepted").get("status") == "True"
                    for a in (policy.get("status") or {}).get("ancestors") or []
                )
                for policy in ours
            )
        )

    await eventually(everything_reported)
    assert await lease_holder(kube, install.namespace) == controller.identity
    await eventually(lambda: _ready(controller))
    # raw objects: events from kube-controller-manager (running when a test started it)
    # lack eventTime, which the generated model refuses
    events = await env.custom.list_namespaced_custom_object(
        "events.k8s.io", "v1", env.namespace, "events"
    )
    ours = [e for e in events["items"] if e.get("reportingController") == env.controller_name]
    assert [(e["reason"], e["regarding"]["kind"], e["regarding"]["name"]) for e in ours] == [
        ("Programmed", "Gateway", "gw")
    ]
    assert controller.process.poll() is None
    failures = [
        entry
        for entry in controller.logs()
        if (entry.get("level") in ("warning", "error") and "403" in json.dumps(entry))
        or entry.get("event") == "permission_denied"
    ]
    assert failures == []


async def _ready(controller: ControllerProcess) -> bool:
    return (await controller.probe("/readyz"))[0] == 200


async def test_a_missing_verb_is_logged_and_keeps_the_controller_not_ready(
    kube: client.ApiClient, control_plane: ControlPlane, install: Install, start_controller: Any
) -> None:
    role = next(doc for doc in documents(install.manifest) if doc["kind"] == "ClusterRole")
    core = next(rule for rule in role["rules"] if rule["apiGroups"] == [""])
    core["resources"].remove("services")
    role["rules"].append({"apiGroups": [""], "resources": ["services"], "verbs": ["watch"]})
    apply(control_plane, yaml.safe_dump(role))
    controller = start_controller("denied")

    await eventually(
        lambda: _is(controller.logged("permission_denied", verb="list", resource="services"))
    )
    denied = next(e for e in controller.logs() if e.get("event") == "permission_denied")
    assert denied["level"] == "error"
    assert "grant 'list' on 'services'" in denied["fix"]

    async def only_services_unsynced() -> bool:
        # the other informers sync meanwhile (until then they are listed too)
        status, body = await controller.probe("/readyz")
        reasons = body.splitlines()
        return (
            status == 503
            and "permission denied: list services" in reasons
            and "caches not synced: services" in reasons
        )

    await eventually(only_services_unsynced)
    # still running and retrying, not crash-looping: alive, and the failure repeats
    await eventually(
        lambda: _is(sum(e.get("event") == "permission_denied" for e in controller.logs()) >= 2)
    )
    assert controller.process.poll() is None
    assert (await controller.probe("/healthz"))[0] == 200
    assert await lease_holder(kube, install.namespace) == ""

    # granting the verb is enough: the controller recovers without a restart
    apply(control_plane, install.manifest)
    await eventually(lambda: _ready(controller), within=60)
    assert controller.process.poll() is None


async def _is(value: bool) -> bool:
    return value


async def test_sigterm_hands_over_to_the_standby_within_2s(
    kube: client.ApiClient, install: Install, env: Env, start_controller: Any
) -> None:
    first = start_controller("first")
    await eventually(lambda: _holds(kube, install, first))
    second = start_controller("second")
    await eventually(lambda: _ready(second))  # a synced standby is ready
    await env.gateway("gw")
    await eventually(lambda: _programmed(env))
    assert await lease_holder(kube, install.namespace) == first.identity

    first.process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    while await lease_holder(kube, install.namespace) != second.identity:
        assert time.monotonic() - sent < 10, "the standby never took over"
        await asyncio.sleep(0.02)
    handover = time.monotonic() - sent
    assert handover <= 2.0, f"handover took {handover:.2f}s"

    assert await asyncio.to_thread(first.process.wait, 30) == 0
    assert first.logged("leader_released")
    assert first.logged("controller_stopped")
    # the new leader does the work
    await env.route("web", "gw")
    await env.service()
    await eventually(lambda: _attached_via(env, "gw"))


async def _holds(kube: client.ApiClient, install: Install, controller: ControllerProcess) -> bool:
    return await lease_holder(kube, install.namespace) == controller.identity


async def _programmed(env: Env) -> bool:
    gw = await env.get("gateways", "gw")
    return (
        condition((gw.get("status") or {}).get("conditions"), "Programmed").get("status") == "True"
    )


async def _attached_via(env: Env, gateway: str) -> bool:
    listeners = ((await env.get("gateways", gateway)).get("status") or {}).get("listeners") or []
    return bool(listeners) and listeners[0]["attachedRoutes"] == 1


# the objects the controller provisions per Gateway with provider local
DATAPLANE_KINDS = {
    "ServiceAccount": ("", "v1", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "Secret": ("", "v1", "secrets"),
    "Service": ("", "v1", "services"),
    "Deployment": ("apps", "v1", "deployments"),
}


async def get_object(kube: client.ApiClient, kind: str, namespace: str, name: str) -> Any:
    """The object as raw JSON, or None if it does not exist."""
    group, version, plural = DATAPLANE_KINDS[kind]
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    try:
        return await kube.call_api(
            f"{base}/namespaces/{namespace}/{plural}/{name}",
            "GET",
            header_params={"Accept": "application/json"},
            response_types_map={200: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


async def delivered_shards(
    kube: client.ApiClient, namespace: str, name: str
) -> dict[str, dict[str, Any]]:
    """The shard Secrets the manifest in Secret `name` lists, by name, each checked
    to hold the digest listed."""
    manifest = decode_manifest(await get_object(kube, "Secret", namespace, name))
    shards = {}
    for shard, listed in manifest.shards.items():
        secret = await get_object(kube, "Secret", namespace, shard_name(name, shard))
        assert decode_shard(secret, shard).digest == listed
        assert secret["metadata"]["annotations"][DIGEST_ANNOTATION] == listed
        shards[shard_name(name, shard)] = secret
    return shards


async def delivered_paths(kube: client.ApiClient, namespace: str, name: str) -> set[str]:
    """The path matches of the rules the Secrets deliver, read as an agent reads them."""
    paths = set()
    for secret in (await delivered_shards(kube, namespace, name)).values():
        shard = int(secret["metadata"]["name"].rpartition("-s")[2])
        for part, text in decode_shard(secret, shard).parts.items():
            if part.startswith("r:"):
                paths.add(json.loads(text)["match"]["path"]["value"])
    return paths


async def secrets_of(kube: client.ApiClient, namespace: str, name: str) -> set[str]:
    """The names of the Secrets of the data plane whose objects are named `name`."""
    secrets = await client.CoreV1Api(kube).list_namespaced_secret(
        namespace, label_selector=f"app.kubernetes.io/instance={name}"
    )
    return {s.metadata.name for s in secrets.items}


def check_data_plane(
    objects: dict[str, Any], shards: dict[str, dict[str, Any]], gateway: dict[str, Any]
) -> None:
    """The provisioned objects of `gateway` are owned by it, carry the chart's
    data-plane values, and give the agent exactly what it needs."""
    name = f"agc-{gateway['metadata']['name']}"
    namespace = gateway["metadata"]["namespace"]
    for kind, obj in [*objects.items(), *shards.items()]:
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": f"{GW}/v1",
                "kind": "Gateway",
                "name": gateway["metadata"]["name"],
                "uid": gateway["metadata"]["uid"],
                "controller": True,
            }
        ], kind
    # shards are labelled as the other objects (the controller's informer selects them)
    assert shards
    for shard in shards.values():
        assert shard["metadata"]["labels"] == objects["Secret"]["metadata"]["labels"]
    # the agent may read the manifest's Secret (by name: list and watch need the
    # field selector) and report on it, and get the shards; nothing else
    assert objects["Role"]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [name],
            "verbs": ["list", "watch", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{name}-s{shard:02d}" for shard in range(SHARDS)],
            "verbs": ["get"],
        },
    ]
    assert objects["RoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    ]
    assert objects["RoleBinding"]["roleRef"]["name"] == name
    # the chart's data-plane values reach the Deployment and the Service
    values = yaml.safe_load((CHART / "values.yaml").read_text())["dataplane"]
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == values["replicas"]
    assert container["image"] == f"{values['image']['repository']}:0.1.0"
    assert container["resources"] == values["resources"]
    assert f"--secret={name}" in container["args"]
    assert pod["serviceAccountName"] == name
    assert pod["imagePullSecrets"] == [{"name": "registry-a"}, {"name": "registry-b"}]
    service = objects["Service"]
    assert service["spec"]["type"] == values["serviceType"]
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, 80)]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("provider", ["local"])
async def test_deployment_mode_provisions_each_gateway_its_data_plane(
    kube: client.ApiClient,
    controller_manager: ControlPlane,
    install: Install,
    env: Env,
    start_controller: Any,
) -> None:
    """provider local in the chart: per Gateway a Secret, ServiceAccount, Role,
    RoleBinding, Service and Deployment, owned by the Gateway, written with the
    chart's RBAC; route edits reach the Secret; deleting the Gateway collects them."""
    controller = start_controller("provisioner")
    await env.service()
    await env.gateway("gw")
    await env.route("web", "gw")
    gateway = await env.get("gateways", "gw")
    name = "agc-gw"

    async def provisioned() -> bool:
        return all([await get_object(kube, kind, env.namespace, name) for kind in DATAPLANE_KINDS])

    await eventually(provisioned)
    objects = {kind: await get_object(kube, kind, env.namespace, name) for kind in DATAPLANE_KINDS}
    check_data_plane(objects, await delivered_shards(kube, env.namespace, name), gateway)
    deployment, service = objects["Deployment"], objects["Service"]
    assert await delivered_paths(kube, env.namespace, name) == {"/"}

    # no agent runs here: Programmed waits for one, at the Service's address
    async def pending() -> bool:
        status = (await env.get("gateways", "gw")).get("status") or {}
        return condition(status.get("conditions"), "Programmed").get("reason") == "Pending"

    await eventually(pending)
    status = (await env.get("gateways", "gw"))["status"]
    assert status["addresses"] == [{"type": "IPAddress", "value": service["spec"]["clusterIP"]}]

    # a route edit changes the Secrets, and only the Secrets
    version = objects["Secret"]["metadata"]["annotations"][VERSION_ANNOTATION]
    await env.patch(
        "httproutes",
        "web",
        {
            "spec": {
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                        "backendRefs": [{"name": "web", "port": 80}],
                    }
                ]
            }
        },
    )

    async def secret_changed() -> bool:
        secret = await get_object(kube, "Secret", env.namespace, name)
        return bool(secret["metadata"]["annotations"][VERSION_ANNOTATION] != version)

    await eventually(secret_changed)
    assert await delivered_paths(kube, env.namespace, name) == {"/v2"}
    deployment_now = await get_object(kube, "Deployment", env.namespace, name)
    assert deployment_now["metadata"]["generation"] == deployment["metadata"]["generation"]

    # a Gateway that moves to another class loses its data plane (the controller
    # deletes it: the Gateway still exists, so the garbage collector would not)
    await env.gateway("moving")

    async def gone(gateway: str) -> bool:
        return not any(
            [
                await get_object(kube, kind, env.namespace, f"agc-{gateway}")
                for kind in DATAPLANE_KINDS
            ]
        ) and not await secrets_of(kube, env.namespace, f"agc-{gateway}")

    await eventually(lambda: _exists(kube, "Deployment", env.namespace, "agc-moving"))
    await env.patch("gateways", "moving", {"spec": {"gatewayClassName": "someone-else"}})
    await eventually(lambda: gone("moving"))
    assert await get_object(kube, "Deployment", env.namespace, name) is not None

    assert controller.process.poll() is None
    failures = [
        entry
        for entry in controller.logs()
        if entry.get("level") in ("warning", "error")
        and ("403" in json.dumps(entry) or entry.get("event") == "permission_denied")
    ]
    assert failures == []

    # with no controller running, only the garbage collector can remove the data
    # plane of a deleted Gateway: the owner references make it do so
    controller.process.kill()
    controller.process.wait()
    await env.custom.delete_namespaced_custom_object(GW, "v1", env.namespace, "gateways", "gw")
    await eventually(lambda: gone("gw"), within=60)


@pytest.mark.parametrize("provider", ["local"])
async def test_deployment_mode_gives_a_requested_address_in_range_to_one_gateway(
    kube: client.ApiClient, install: Install, env: Env, start_controller: Any
) -> None:
    """spec.addresses in the chart's dataplane.staticAddresses become external IPs of
    the Gateway's Service and its status.addresses; one outside them, or held by
    another Gateway, leaves it unprogrammed (AddressNotUsable), saying why, until
    the other Gateway gives it up."""
    start_controller("addresses")
    await env.service()
    for gateway in ("gw", "other"):
        await env.gateway(gateway)

    async def programmed(gateway: str) -> dict[str, Any]:
        """The Programmed condition, {} until it is the current generation's."""
        obj = await env.get("gateways", gateway)
        found = condition((obj.get("status") or {}).get("conditions"), "Programmed")
        current = found.get("observedGeneration") == obj["metadata"]["generation"]
        return found if current else {}

    async def settled(gateway: str) -> bool:
        return bool(await programmed(gateway))

    async def external_ips(gateway: str) -> list[str]:
        service = await get_object(kube, "Service", env.namespace, f"agc-{gateway}")
        return list((service or {}).get("spec", {}).get("externalIPs") or [])

    async def request(gateway: str, *values: str) -> dict[str, Any]:
        await env.patch(
            "gateways",
            gateway,
            {"spec": {"addresses": [{"type": "IPAddress", "value": v} for v in values]}},
        )
        await eventually(lambda: settled(gateway))
        return await programmed(gateway)

    outside = await request("gw", "192.0.2.10")
    assert outside["reason"] == "AddressNotUsable"
    assert (
        f"192.0.2.10 is outside the ranges this controller assigns ({STATIC_ADDRESSES})"
        in (outside["message"])
    )
    inside = await request("gw", "10.217.3.7")
    assert inside["reason"] == "Pending"  # no agent runs here
    assert await external_ips("gw") == ["10.217.3.7"]
    status = (await env.get("gateways", "gw"))["status"]
    assert status["addresses"] == [{"type": "IPAddress", "value": "10.217.3.7"}]

    taken = await request("other", "10.217.3.7", "10.217.3.8")
    assert taken["reason"] == "AddressNotUsable"
    assert "10.217.3.7 is in use by Gateway" in taken["message"]
    assert await external_ips("other") == []

    # given up, the address is the cluster's again, and the Gateway that waited for
    # it gets it without a change of its own
    await env.patch("gateways", "gw", {"spec": {"addresses": None}})
    await eventually(lambda: settled("gw"))
    assert await external_ips("gw") == []
    service = await get_object(kube, "Service", env.namespace, "agc-gw")
    status = (await env.get("gateways", "gw"))["status"]
    assert status["addresses"] == [{"type": "IPAddress", "value": service["spec"]["clusterIP"]}]

    async def other_served() -> bool:
        return (await programmed("other")).get("reason") == "Pending"

    await eventually(other_served)
    assert await external_ips("other") == ["10.217.3.7", "10.217.3.8"]


@pytest.mark.parametrize("provider", ["local"])
async def test_external_ips_refused_by_admission_leave_the_gateway_invalid_saying_why(
    kube: client.ApiClient, install: Install, env: Env, start_controller: Any
) -> None:
    """A cluster that forbids external IPs (DenyServiceExternalIPs; here a
    ValidatingAdmissionPolicy answering 403 the same way): the Gateway is Invalid
    with the apiserver's message, not taken for missing RBAC."""
    admission = client.AdmissionregistrationV1Api(kube)
    name = f"deny-external-ips-{install.release}"
    await admission.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["services"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "!has(object.spec.externalIPs)",
                        "message": "use of external IPs is denied by admission control",
                        "reason": "Forbidden",
                    }
                ],
            },
        }
    )
    await admission.create_validating_admission_policy_binding(
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": env.namespace}
                    }
                },
            },
        }
    )
    try:
        await eventually(lambda: _external_ips_forbidden(kube, env.namespace))
        controller = start_controller("admission")
        await env.service()
        await env.gateway("gw")
        await env.patch(
            "gateways",
            "gw",
            {"spec": {"addresses": [{"type": "IPAddress", "value": "10.217.3.9"}]}},
        )

        async def refused() -> bool:
            status = (await env.get("gateways", "gw")).get("status") or {}
            return condition(status.get("conditions"), "Programmed").get("reason") == "Invalid"

        await eventually(refused)
        status = (await env.get("gateways", "gw"))["status"]
        message = condition(status["conditions"], "Programmed")["message"]
        assert message.startswith("The data-plane objects were refused: ")
        assert "use of external IPs is denied by admission control" in message
        assert not [e for e in controller.logs() if e.get("event") == "permission_denied"]
    finally:
        await admission.delete_validating_admission_policy_binding(name)
        await admission.delete_validating_admission_policy(name)


async def _external_ips_forbidden(kube: client.ApiClient, namespace: str) -> bool:
    """Whether the apiserver enforces the policy yet (it takes a moment to see it)."""
    probe = {
        "metadata": {"name": "probe"},
        "spec": {"ports": [{"port": 80}], "externalIPs": ["10.217.3.10"]},
    }
    try:
        await client.CoreV1Api(kube).create_namespaced_service(namespace, probe, dry_run="All")
    except client.ApiException as e:
        return e.status == 403
    return False


@pytest.mark.parametrize("provider", ["local"])
async def test_a_missing_provisioning_verb_is_logged_and_retried(
    kube: client.ApiClient,
    control_plane: ControlPlane,
    install: Install,
    env: Env,
    start_controller: Any,
) -> None:
    """Server-side apply creates with `create` and updates with `patch`: without
    `create` on deployments, the first apply is refused, said so, and retried."""
    role = next(doc for doc in documents(install.manifest) if doc["kind"] == "ClusterRole")
    rule = next(r for r in role["rules"] if r["apiGroups"] == ["apps"])
    rule["verbs"].remove("create")
    apply(control_plane, yaml.safe_dump(role))
    controller = start_controller("no-create")
    await env.service()
    await env.gateway("gw")

    def denied() -> list[dict[str, Any]]:
        return [
            e
            for e in controller.logs()
            if e.get("event") == "permission_denied" and e.get("resource") == "deployments"
        ]

    await eventually(lambda: _is(len(denied()) >= 2))
    assert denied()[0]["level"] == "error"
    assert "'create' and 'patch' on 'deployments'" in denied()[0]["fix"]
    assert await get_object(kube, "Deployment", env.namespace, "agc-gw") is None
    # what came before the Deployment in the apply order is there
    assert await get_object(kube, "Secret", env.namespace, "agc-gw") is not None

    apply(control_plane, install.manifest)
    await eventually(lambda: _exists(kube, "Deployment", env.namespace, "agc-gw"), within=60)
    assert controller.process.poll() is None


async def _exists(kube: client.ApiClient, kind: str, namespace: str, name: str) -> bool:
    return await get_object(kube, kind, namespace, name) is not None


@pytest.mark.parametrize("provider", ["local"])
async def test_deployment_mode_serves_an_ingress_class_from_the_controllers_namespace(
    kube: client.ApiClient,
    controller_manager: ControlPlane,
    install: Install,
    env: Env,
    start_controller: Any,
) -> None:
    """provider local in the chart: the chart's IngressClass gets a data plane of its
    own in the controller's namespace, owned by the IngressClass, its Ingresses' paths
    in its Secrets; deleting the class removes it."""
    start_controller("ingress")
    await env.service()
    networking = client.NetworkingV1Api(kube)
    await networking.create_namespaced_ingress(
        env.namespace,
        {
            "metadata": {"name": "shop"},
            "spec": {
                "ingressClassName": install.class_name,
                "rules": [
                    {
                        "host": "shop.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/cart",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        },
    )
    name = f"agc-ingress-{install.class_name}"

    async def provisioned() -> bool:
        return all(
            [await get_object(kube, kind, install.namespace, name) for kind in DATAPLANE_KINDS]
        )

    await eventually(provisioned)
    ingress_class = await networking.read_ingress_class(install.class_name)
    deployment = await get_object(kube, "Deployment", install.namespace, name)
    assert deployment["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "name": install.class_name,
            "uid": ingress_class.metadata.uid,
            "controller": True,
        }
    ]
    assert await delivered_paths(kube, install.namespace, name) == {"/cart"}

    # no agent runs here: the Ingress hears that its data plane has not reported yet
    async def told() -> bool:
        # core/v1's view: kube-controller-manager's Events here have no eventTime, which
        # events.k8s.io's client model refuses
        events = await client.CoreV1Api(kube).list_namespaced_event(env.namespace)
        return any(
            e.involved_object.name == "shop" and e.reason == "NotProgrammed" for e in events.items
        )

    await eventually(told)
    await networking.delete_ingress_class(install.class_name)

    async def gone() -> bool:
        return not any(
            [await get_object(kube, kind, install.namespace, name) for kind in DATAPLANE_KINDS]
        )

    await eventually(gone, within=60)
