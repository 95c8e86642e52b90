"""Starting what the suite runs against, one of two ways:
- embedded: the control plane with the CRDs, the node agent (the suite's pods
  as local processes), the controller (NGINX processes of its own) and our
  GatewayClass;
- in cluster: the control plane with a real node (devcluster.cluster), the
  suite's backends from images, and the Helm chart from our images, whose
  GatewayClass is ours and whose Gateways each get a data-plane Deployment.

Each step registers its teardown before it can fail, and waits until what it
started answers (or says, with the tail of the child's log, why not). Cluster
calls go through kubernetes-asyncio, one short event loop per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from agc_controller.kube import api_client_from_kubeconfig, server_side_apply
from agc_controller.translate.settings import DEFAULT_CONTROLLER_NAME
from devcluster import ControlPlane, ControlPlaneBinaries, install_gateway_api_crds
from devcluster.cluster import CHART, RealCluster, image_values, install_chart
from devcluster.conformance.base import (
    COREDNS_IMAGE,
    ECHO_IMAGE,
    GATEWAY_API_VERSION,
    GATEWAY_CLASS,
    GW,
    IN_CLUSTER_USABLE_ADDRESS,
    REPO,
    USABLE_ADDRESS,
    RunError,
    Teardown,
    say,
)
from devcluster.conformance.processes import Child, stop_nginx
from devcluster.conformance.rundirs import keep_dataplane
from devcluster.controlplane import free_port, tail
from devcluster.node import STATIC_SUBNET, NodeBinaries

# measured on 2 cores: node registered ~2 s, controller ready ~3 s, GatewayClass ~1 s
_START_TIMEOUT = 90.0
_CONTROLLER_GRACE = 10.0  # --shutdown-grace given to the controller
_AGENT_STOP_TIMEOUT = 90.0  # the agent stops every pod (3 s grace each, in parallel)


async def _install_crds(plane: ControlPlane, channel: str) -> int:
    async with await api_client_from_kubeconfig(plane.kubeconfig) as api:
        return len(await install_gateway_api_crds(api, plane.binaries.crds, channel=channel))


async def _wait_node_ready(kubeconfig: Path, node: str, agent: Child) -> None:
    async with await api_client_from_kubeconfig(kubeconfig) as api:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            agent.check_alive()
            with contextlib.suppress(ApiException):
                status = (await core.read_node(node)).status
                if any(c.type == "Ready" and c.status == "True" for c in status.conditions or []):
                    return
            await asyncio.sleep(0.5)
    raise RunError(
        f"node {node} was not Ready within {_START_TIMEOUT:.0f}s; the node agent's log "
        f"({agent.log}) ends with:\n{tail(agent.log, lines=40)}"
    )


async def _apply_gateway_class(kubeconfig: Path, controller: Child) -> frozenset[str]:
    """Apply our GatewayClass; return its status.supportedFeatures once Accepted."""
    gateway_class = {
        "apiVersion": f"{GW}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        "spec": {
            "controllerName": DEFAULT_CONTROLLER_NAME,
            "description": "agc-controller with the local NGINX data plane (conformance run)",
        },
    }
    async with await api_client_from_kubeconfig(kubeconfig) as api:
        await server_side_apply(api, gateway_class, plural="gatewayclasses")
    return await _accepted_features(
        kubeconfig,
        controller.check_alive,
        f"the controller's log ({controller.log}) ends with:\n{tail(controller.log, lines=40)}",
    )


async def _accepted_features(
    kubeconfig: Path, check_alive: Callable[[], None], where_to_look: str
) -> frozenset[str]:
    """Our GatewayClass's status.supportedFeatures once it is Accepted."""
    async with await api_client_from_kubeconfig(kubeconfig) as api:
        custom = client.CustomObjectsApi(api)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            check_alive()
            status = (
                await custom.get_cluster_custom_object(GW, "v1", "gatewayclasses", GATEWAY_CLASS)
            ).get("status") or {}
            accepted = any(
                c["type"] == "Accepted" and c["status"] == "True"
                for c in status.get("conditions") or []
            )
            features = [str(f["name"]) for f in status.get("supportedFeatures") or []]
            if accepted and features:
                return frozenset(features)
            await asyncio.sleep(0.2)
    raise RunError(
        f"GatewayClass {GATEWAY_CLASS} was not Accepted with supportedFeatures within "
        f"{_START_TIMEOUT:.0f}s; {where_to_look}"
    )


def _wait_http_ok(url: str, child: Child, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        child.check_alive()
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RunError(
        f"{what} did not answer {url} within {_START_TIMEOUT:.0f}s; its log ({child.log}) "
        f"ends with:\n{tail(child.log, lines=40)}"
    )


def start_control_plane(testenv: Path, run_dir: Path, channel: str, teardown: Teardown) -> Path:
    """etcd (on tmpfs), kube-apiserver, kube-controller-manager, the CRDs; the kubeconfig."""
    shm = Path("/dev/shm")
    tmpfs = shm if os.access(shm, os.W_OK) else None
    etcd_dir = Path(tempfile.mkdtemp(prefix="agc-conformance-etcd-", dir=tmpfs))
    (run_dir / "etcd-dir").write_text(str(etcd_dir))  # for the next run, if this one is killed
    teardown.append(("etcd data", lambda: shutil.rmtree(etcd_dir, ignore_errors=True)))
    plane = ControlPlane(
        binaries=ControlPlaneBinaries.from_testenv(testenv),
        workdir=run_dir / "control-plane",
        etcd_data_dir=etcd_dir,
    )
    say("starting the control plane (etcd, kube-apiserver, kube-controller-manager)")
    teardown.append(("the control plane", plane.stop))
    plane.start()
    plane.start_controller_manager()
    count = asyncio.run(_install_crds(plane, channel))
    say(f"installed {count} Gateway API {GATEWAY_API_VERSION} CRDs ({channel} channel)")
    return plane.kubeconfig


def start_node_agent(kubeconfig: Path, binaries: Path, run_dir: Path, teardown: Teardown) -> None:
    node = "agc-local"
    argv = [
        sys.executable, "-m", "devcluster.nodeagent",
        "--kubeconfig", str(kubeconfig),
        "--state-dir", str(run_dir / "node-agent"),
        "--node-name", node,
        "--image", f"{ECHO_IMAGE}={binaries / 'echo-basic'}",
        "--image", f"{COREDNS_IMAGE}={binaries / 'coredns'}",
    ]  # fmt: skip
    agent = Child.start("the node agent", argv, run_dir / "node-agent.log")
    teardown.append(("the node agent", lambda: agent.stop(grace=_AGENT_STOP_TIMEOUT)))
    asyncio.run(_wait_node_ready(kubeconfig, node, agent))
    say(f"node agent running: node {node} is Ready")


@attrs.frozen(kw_only=True)
class StartedController:
    # the controller's --local-state-dir, where NGINX runs (None: in cluster)
    dataplane: Path | None
    # an address a Gateway may request (GatewayStaticAddresses)
    usable_address: str
    # our GatewayClass's status.supportedFeatures once it was Accepted
    claimed_features: frozenset[str]


def start_controller(kubeconfig: Path, run_dir: Path, teardown: Teardown) -> StartedController:
    """The controller with the local provider, and our GatewayClass Accepted."""
    # NGINX workers (user nobody) use files under it, so it must not be below a
    # private directory ($AGC_CACHE_DIR is in root's home on CI)
    dataplane = Path(tempfile.mkdtemp(prefix="agc-conformance-dataplane-"))
    dataplane.chmod(0o711)
    (run_dir / "dataplane-dir").write_text(str(dataplane))  # found again if this run is killed
    teardown.append(("the data plane files", lambda: keep_dataplane(dataplane, run_dir)))
    health_port = free_port()
    argv = [
        sys.executable, "-m", "agc_controller.cli",
        "--log-format", "json",
        "run",
        "--kubeconfig", str(kubeconfig),
        "--provider", "local",
        "--local-state-dir", str(dataplane),
        "--no-leader-elect",
        "--health-address", f"127.0.0.1:{health_port}",
        "--shutdown-grace", str(_CONTROLLER_GRACE),
    ]  # fmt: skip
    controller = Child.start("the controller", argv, run_dir / "controller.log")
    # torn down in reverse: the controller first, then the NGINX it leaves running
    teardown.append(("NGINX", lambda: stop_nginx(dataplane)))
    teardown.append(("the controller", lambda: controller.stop(grace=_CONTROLLER_GRACE + 20)))
    _wait_http_ok(f"http://127.0.0.1:{health_port}/readyz", controller, "the controller")
    features = asyncio.run(_apply_gateway_class(kubeconfig, controller))
    say(f"GatewayClass {GATEWAY_CLASS} accepted; supportedFeatures: {', '.join(sorted(features))}")
    return StartedController(
        dataplane=dataplane, usable_address=USABLE_ADDRESS, claimed_features=features
    )


# the chart's release, the namespace it goes to, and its values beyond our images:
# the suite reaches each Gateway at its Service's ClusterIP (kube-proxy on this
# host; no load balancer here), one pod per Gateway and one controller are plenty
# for a suite that sends one request at a time, and the GatewayClass is ours
CHART_RELEASE = "agc"
CHART_NAMESPACE = "agc-system"
_CHART_VALUES = {
    "replicas": "1",
    "dataplane.replicas": "1",
    "dataplane.serviceType": "ClusterIP",
    "dataplane.staticAddresses": "{" + STATIC_SUBNET + "}",
    "gatewayClass.name": GATEWAY_CLASS,
}


def start_in_cluster(
    testenv: Path,
    *,
    node: NodeBinaries,
    images: Mapping[str, Path],
    backends: Mapping[str, Path],
    run_dir: Path,
    channel: str,
    teardown: Teardown,
) -> tuple[Path, StartedController]:
    """The control plane and a real node with our `images` and the suite's
    `backends` loaded (reference → OCI archive), the chart installed from our
    images, and our GatewayClass Accepted; the kubeconfig and what the
    controller claims."""
    cluster = RealCluster(
        testenv=testenv, node_binaries=node, workdir=run_dir / "control-plane", channel=channel
    )
    (run_dir / "etcd-dir").write_text(str(cluster.etcd_dir))  # found again if killed
    teardown.append(("the cluster", cluster.stop))
    say("starting the control plane and a node (kubelet, containerd, kube-proxy)")
    cluster.start([*images.values(), *backends.values()])
    kubeconfig = cluster.plane.kubeconfig
    teardown.append(("the controller's log", lambda: _save_controller_log(cluster, run_dir)))
    say(f"installing the chart ({CHART.relative_to(REPO)}) into {CHART_NAMESPACE}")
    try:
        install_chart(
            kubeconfig,
            release=CHART_RELEASE,
            namespace=CHART_NAMESPACE,
            values={**image_values(images), **_CHART_VALUES},
        )
    except RuntimeError as e:
        raise RunError(f"{e}; the node's logs end with:\n{cluster.logs()}") from None
    features = asyncio.run(
        _accepted_features(
            kubeconfig,
            lambda: None,
            f"see the controller's log (kubectl -n {CHART_NAMESPACE} logs "
            f"deployment/{CHART_RELEASE}-agc-controller, KUBECONFIG={kubeconfig})",
        )
    )
    say(f"GatewayClass {GATEWAY_CLASS} accepted; supportedFeatures: {', '.join(sorted(features))}")
    return kubeconfig, StartedController(
        dataplane=None, usable_address=IN_CLUSTER_USABLE_ADDRESS, claimed_features=features
    )


def _save_controller_log(cluster: RealCluster, run_dir: Path) -> None:
    """The controller pods' logs into the run directory, before the cluster goes."""
    done = subprocess.run(
        [
            str(cluster.plane.binaries.kubectl),
            f"--kubeconfig={cluster.plane.kubeconfig}",
            "logs",
            "--namespace",
            CHART_NAMESPACE,
            "--selector",
            "app.kubernetes.io/name=agc-controller",
            "--prefix",
            "--tail=-1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    (run_dir / "controller.log").write_text(done.stdout + done.stderr)
