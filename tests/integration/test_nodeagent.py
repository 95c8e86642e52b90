"""The node agent against a real kube-apiserver + kube-controller-manager.

Pods are scheduled by the agent, run as local processes in network namespaces
of their own, and their status drives the real controllers: the Deployment's
ReplicaSet scales them, the EndpointSlice controller publishes their IPs. Their
logs reach clients the way kubectl's do: the apiserver's pods/log asks the
agent's kubelet API. The "images" are the project's echo server and /bin/sh.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import aiohttp
import attrs
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException

from devcluster.nodeagent import NodeAgent
from devcluster.spawn import python_module_argv

# network namespaces need root, as the e2e tests do (README): without it these fail
pytestmark = pytest.mark.usefixtures("controller_manager")

ECHO = "agc-test/echo"
SH = "agc-test/sh"
IMAGES = {
    # a container's environment is its pod's: the argv itself finds devcluster
    ECHO: python_module_argv("devcluster.echo"),
    SH: ["/bin/sh"],
}
# one /24 per test process, away from the agent's default 10.214.0.0/16
SUBNET = f"10.215.{os.getpid() % 250 + 1}.0/24"
GATEWAY = SUBNET.rsplit(".", 1)[0] + ".1"

T = TypeVar("T")


@attrs.define
class RunningAgent:
    task: asyncio.Task[None]
    node_name: str
    state_dir: Path

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def agent(
    kube: client.ApiClient, namespace: str, tmp_path: Path
) -> AsyncIterator[RunningAgent]:
    del namespace  # requested so that the agent stops before its namespace goes
    node_name = f"agc-test-{uuid.uuid4().hex[:8]}"
    state_dir = tmp_path / "agent"
    node_agent = NodeAgent(
        kube, images=IMAGES, state_dir=state_dir, node_name=node_name, pod_subnet=SUBNET
    )
    running = RunningAgent(asyncio.create_task(node_agent.run()), node_name, state_dir)
    core = client.CoreV1Api(kube)

    async def node_ready() -> bool:
        if running.task.done():
            running.task.result()  # surface the agent's error
        try:
            node = await core.read_node(node_name)
        except ApiException:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    await until(node_ready, within=15)
    yield running
    await running.stop()
    with contextlib.suppress(ApiException):
        await core.delete_node(node_name)


async def until(check: Callable[[], Awaitable[T | None]], *, within: float = 20.0) -> T:
    """The first truthy result of `check`, polled; fails the test with the last one."""
    last: T | None = None
    try:
        async with asyncio.timeout(within):
            while True:
                last = await check()
                if last:
                    return last
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"not within {within}s; last result: {last!r}")


async def default_service_account(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)

    async def exists() -> bool:
        try:
            await core.read_namespaced_service_account("default", namespace)
        except ApiException:
            return False
        return True

    await until(exists)


def condition(pod: client.V1Pod, type_: str) -> str | None:
    return next((c.status for c in pod.status.conditions or [] if c.type == type_), None)


def container_pid(pod: client.V1Pod) -> int:
    container_id = pod.status.container_statuses[0].container_id
    assert container_id.startswith("agc-local://"), container_id
    return int(container_id.removeprefix("agc-local://"))


def pid_alive(pid: int) -> bool:
    """Running, not a zombie (a killed orphan waits for a reaper that may never come)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def netns_of(pid: int) -> str:
    out = subprocess.run(
        ["ip", "netns", "identify", str(pid)], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
    return {line.split(" ", 1)[0] for line in out.stdout.splitlines()}


def links() -> list[dict[str, Any]]:
    out = subprocess.run(["ip", "-j", "addr", "show"], check=True, capture_output=True, text=True)
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def pod_manifest(
    name: str, *, image: str, args: list[str], restart_policy: str = "Always", **spec: Any
) -> dict[str, Any]:
    container = {"name": "main", "image": image, "args": args, **spec.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [container],
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 2,
            **spec,
        },
    }


async def ready_pods(core: client.CoreV1Api, namespace: str, count: int) -> list[client.V1Pod]:
    pods = (await core.list_namespaced_pod(namespace, label_selector="app=echo")).items
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    if len(live) == count and all(condition(p, "Ready") == "True" for p in live):
        return live
    return []


async def get_json(url: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(url) as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_deployment_pods_serve_on_their_ips_and_scale_down(
    kube: client.ApiClient, namespace: str, agent: RunningAgent
) -> None:
    await default_service_account(kube, namespace)
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    labels = {"app": "echo"}
    echo = {
        "name": "echo",
        "image": f"{ECHO}:v1",
        "args": ["--address", "$(POD_IP)", "--port", "8080", "--name", "$(POD_NAME)"],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "ports": [{"containerPort": 8080}],
    }
    await apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "echo"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [echo], "terminationGracePeriodSeconds": 5},
                },
            },
        },
    )
    await core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )

    pods = await until(lambda: ready_pods(core, namespace, 2), within=30)
    ips = {p.status.pod_ip for p in pods}
    assert len(ips) == 2
    assert all(ip.rsplit(".", 1)[0] == GATEWAY.rsplit(".", 1)[0] and ip != GATEWAY for ip in ips)
    for pod in pods:
        assert pod.spec.node_name == agent.node_name
        assert pod.status.phase == "Running"
        assert pod.status.host_ip == GATEWAY
        assert condition(pod, "ContainersReady") == "True"
        assert pod.status.container_statuses[0].started is True
        # the downward API reached the process: it answers with its own pod's name
        answer = await get_json(f"http://{pod.status.pod_ip}:8080/")
        assert answer["name"] == pod.metadata.name

    async def slice_ready() -> set[str]:
        slices = await client.DiscoveryV1Api(kube).list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=echo"
        )
        ready = {
            address
            for s in slices.items
            for endpoint in s.endpoints or []
            if endpoint.conditions.ready
            for address in endpoint.addresses
        }
        return ready if ready == ips else set()

    await until(slice_ready)
    lease = await client.CoordinationV1Api(kube).read_namespaced_lease(
        agent.node_name, "kube-node-lease"
    )
    assert lease.spec.holder_identity == agent.node_name

    # nothing changed, so nothing is written
    versions = {p.metadata.name: p.metadata.resource_version for p in pods}
    await asyncio.sleep(1.5)
    again = (await core.list_namespaced_pod(namespace, label_selector="app=echo")).items
    assert {p.metadata.name: p.metadata.resource_version for p in again} == versions

    processes = {p.metadata.name: container_pid(p) for p in pods}
    namespaces = {name: netns_of(pid) for name, pid in processes.items()}
    await apps.patch_namespaced_deployment_scale("echo", namespace, {"spec": {"replicas": 1}})

    async def one_pod_left() -> list[client.V1Pod]:
        left = (await core.list_namespaced_pod(namespace, label_selector="app=echo")).items
        return left if len(left) == 1 else []

    (survivor,) = await until(one_pod_left)
    (removed,) = set(processes) - {survivor.metadata.name}
    assert not pid_alive(processes[removed])
    assert namespaces[removed] not in netns_names()
    assert namespaces[survivor.metadata.name] in netns_names()
    answer = await get_json(f"http://{survivor.status.pod_ip}:8080/")
    assert answer["name"] == survivor.metadata.name


async def test_secret_volume_env_and_exec_probe(
    kube: client.ApiClient, namespace: str, agent: RunningAgent, tmp_path: Path
) -> None:
    await default_service_account(kube, namespace)
    core = client.CoreV1Api(kube)
    await core.create_namespaced_secret(
        namespace,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"x": "aGk="}},
    )
    await core.create_namespaced_config_map(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"greeting": "hello"},
        },
    )
    # a mount point that does not exist on the host: the agent creates it, empty
    mount = tmp_path.parent / f"{tmp_path.name}-mnt" / "secret-volume"
    # a volume over a directory above the agent's state (where every volume's
    # files are), mounted before the secret: the secret must still be found; and
    # the program, a copy of sh in that directory, must still start
    shell = tmp_path / "tools" / "sh"
    shell.parent.mkdir()
    shutil.copy2(IMAGES[SH][0], shell)  # follows the link: a copy of the program
    script = (
        f'echo "secret=$(cat {mount}/renamed) greeting=$GREETING '
        f'file=$(cat {tmp_path}/greeting)"; '
        f"touch {mount}/new 2>/dev/null || echo read-only; exec sleep 600"
    )
    manifest = pod_manifest(
        "reader",
        image=f"{SH}:latest",
        args=["-c", script],
        volumes=[
            {
                "name": "v",
                "secret": {"secretName": "s", "items": [{"key": "x", "path": "renamed"}]},
            },
            {"name": "above", "configMap": {"name": "c"}},
        ],
        container={
            "command": [str(shell)],
            "volumeMounts": [
                {"name": "v", "mountPath": str(mount)},
                {"name": "above", "mountPath": str(tmp_path)},
            ],
            "env": [
                {
                    "name": "GREETING",
                    "valueFrom": {"configMapKeyRef": {"name": "c", "key": "greeting"}},
                }
            ],
            "readinessProbe": {
                "exec": {"command": ["cat", f"{mount}/renamed"]},
                "periodSeconds": 1,
            },
        },
    )
    pod = await core.create_namespaced_pod(namespace, manifest)

    async def ready() -> client.V1Pod | None:
        current = await core.read_namespaced_pod("reader", namespace)
        return current if condition(current, "Ready") == "True" else None

    await until(ready)
    text = await until(lambda: log_containing(core, namespace, pod.metadata.name, "read-only"))
    assert "secret=hi greeting=hello file=hello" in text
    # the bind mount lives in the container's private mount namespace only
    assert mount.is_dir()
    assert list(mount.iterdir()) == []


async def log_containing(
    core: client.CoreV1Api, namespace: str, pod: str, needle: str, **options: Any
) -> str:
    """The pod's log (pods/log, through the agent's kubelet API) once it holds `needle`."""
    try:
        text: str | None = await core.read_namespaced_pod_log(pod, namespace, **options)
    except ApiException:
        return ""  # e.g. 400 while the container waits to start
    # None: an empty answer, e.g. before the pod is bound
    return text if text is not None and needle in text else ""


async def pod_log_since(
    kube: client.ApiClient, namespace: str, pod: str, since: datetime.datetime
) -> str:
    """pods/log with sinceTime, which CoreV1Api.read_namespaced_pod_log does not offer."""
    response = await kube.call_api(
        f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
        "GET",
        query_params=[("sinceTime", since.strftime("%Y-%m-%dT%H:%M:%SZ"))],
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    try:
        text: str = await response.text()
        assert response.status == 200, (response.status, text)
        return text
    finally:
        response.release()


_STAMPED = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (.*)")


async def test_pod_logs_through_the_apiserver(
    kube: client.ApiClient, namespace: str, agent: RunningAgent, tmp_path: Path
) -> None:
    await default_service_account(kube, namespace)
    core = client.CoreV1Api(kube)
    go_on = tmp_path / "go-on"
    script = (
        f"echo early-1; echo early-2 >&2; while [ ! -e {go_on} ]; do sleep 0.05; done; "
        "echo late-1; echo late-2; exec sleep 600"
    )
    pod = await core.create_namespaced_pod(
        namespace, pod_manifest("talker", image=SH, args=["-c", script])
    )

    # stdout and stderr are separate pipes: their relative order is not kept
    early = await until(lambda: log_containing(core, namespace, "talker", "early-2"))
    assert sorted(early.splitlines()) == ["early-1", "early-2"]
    with pytest.raises(ApiException) as no_previous:
        await core.read_namespaced_pod_log("talker", namespace, previous=True)
    assert no_previous.value.status == 400
    assert "previous terminated container" in str(no_previous.value.body)

    # the apiserver sends sinceTime in whole seconds: start the late lines in a later one
    since = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(
        seconds=1
    )
    await asyncio.sleep((since - datetime.datetime.now(datetime.UTC)).total_seconds() + 0.05)
    go_on.touch()
    full = await until(lambda: log_containing(core, namespace, "talker", "late-2"))
    assert sorted(full.splitlines()) == ["early-1", "early-2", "late-1", "late-2"]
    assert full.endswith("late-1\nlate-2\n")

    assert await pod_log_since(kube, namespace, "talker", since) == "late-1\nlate-2\n"
    tail = core.read_namespaced_pod_log
    assert await tail("talker", namespace, tail_lines=1) == "late-2\n"
    assert await tail("talker", namespace, tail_lines=2) == "late-1\nlate-2\n"
    assert await tail("talker", namespace, limit_bytes=5) == "early"
    assert await tail("talker", namespace, since_seconds=3600) == full

    stamped = await core.read_namespaced_pod_log("talker", namespace, timestamps=True)
    matches = [_STAMPED.fullmatch(line) for line in stamped.splitlines()]
    assert all(matches), stamped
    times = {
        m.group(2): datetime.datetime.fromisoformat(m.group(1)) for m in matches if m is not None
    }
    assert sorted(times) == ["early-1", "early-2", "late-1", "late-2"]
    assert max(times["early-1"], times["early-2"]) < since <= times["late-1"] <= times["late-2"]
    assert datetime.datetime.now(datetime.UTC) - times["early-1"] < datetime.timedelta(minutes=1)

    # on disk: one CRI log file per process
    record = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) F (.*)")
    path = agent.state_dir / "pods" / pod.metadata.uid / "logs" / "main" / "0.log"
    records = [record.fullmatch(line) for line in path.read_text().splitlines()]
    assert sorted((m.group(1), m.group(2)) for m in records if m is not None) == [
        ("stderr", "early-2"),
        ("stdout", "early-1"),
        ("stdout", "late-1"),
        ("stdout", "late-2"),
    ]


async def test_previous_log_of_a_restarted_container(
    kube: client.ApiClient, namespace: str, agent: RunningAgent, tmp_path: Path
) -> None:
    await default_service_account(kube, namespace)
    core = client.CoreV1Api(kube)
    runs = tmp_path / "runs"  # containers see the host's filesystem
    script = (
        f"n=$(( $(cat {runs} 2>/dev/null || echo 0) + 1 )); echo $n > {runs}; "
        'echo "run $n"; echo "oops $n" >&2; [ $n -ge 2 ] && exec sleep 600; exit 1'
    )
    await core.create_namespaced_pod(
        namespace, pod_manifest("restarter", image=SH, args=["-c", script])
    )

    async def running_again() -> client.V1ContainerStatus | None:
        pod = await core.read_namespaced_pod("restarter", namespace)
        statuses = pod.status.container_statuses or []
        if statuses and statuses[0].restart_count >= 1 and statuses[0].state.running:
            return statuses[0]
        return None

    status = await until(running_again)
    assert status.restart_count == 1
    current = await until(lambda: log_containing(core, namespace, "restarter", "oops 2"))
    assert sorted(current.splitlines()) == ["oops 2", "run 2"]
    previous = await core.read_namespaced_pod_log("restarter", namespace, previous=True)
    assert sorted(previous.splitlines()) == ["oops 1", "run 1"]


async def test_kubelet_api_follows_logs_and_answers_the_host_only(
    kube: client.ApiClient, namespace: str, agent: RunningAgent, tmp_path: Path
) -> None:
    await default_service_account(kube, namespace)
    core = client.CoreV1Api(kube)
    node = await core.read_node(agent.node_name)
    # the apiserver reaches a kubelet at its first address of a preferred type:
    # a Hostname (the default first choice) would be the unresolvable node name
    assert [(a.type, a.address) for a in node.status.addresses] == [("InternalIP", GATEWAY)]
    port = node.status.daemon_endpoints.kubelet_endpoint.port
    assert port > 0
    kubelet = f"https://{GATEWAY}:{port}"

    go_on = tmp_path / "go-on"
    script = f"echo first; while [ ! -e {go_on} ]; do sleep 0.05; done; echo second; sleep 0.3"
    await core.create_namespaced_pod(
        namespace,
        pod_manifest("follower", image=SH, args=["-c", script], restart_policy="Never"),
    )
    await until(lambda: log_containing(core, namespace, "follower", "first"))

    # _preload_content=False: the streaming aiohttp response, not the text
    response = cast(
        aiohttp.ClientResponse,
        await core.read_namespaced_pod_log(
            "follower", namespace, follow=True, _preload_content=False
        ),
    )
    try:
        async with asyncio.timeout(10):
            assert await response.content.readline() == b"first\n"
            go_on.touch()
            assert await response.content.readline() == b"second\n"
            # the container exits: the stream ends
            assert await response.content.read() == b""
    finally:
        response.release()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(f"{kubelet}/healthz", ssl=False) as answer:
            assert answer.status == 200
        for path in (f"{namespace}/nobody/main", f"{namespace}/follower/nothing"):
            async with session.get(f"{kubelet}/containerLogs/{path}", ssl=False) as answer:
                assert answer.status == 404, path
        async with session.get(
            f"{kubelet}/containerLogs/{namespace}/follower/main?tailLines=x", ssl=False
        ) as answer:
            assert answer.status == 400

    # a pod reaches the node's address too, from its own: it is turned away
    await core.create_namespaced_pod(
        namespace, pod_manifest("prober", image=SH, args=["-c", "exec sleep 600"])
    )

    async def prober_running() -> client.V1Pod | None:
        pod = await core.read_namespaced_pod("prober", namespace)
        return pod if pod.status.phase == "Running" else None

    netns = netns_of(container_pid(await until(prober_running)))
    fetch = (
        "import ssl, sys, urllib.error, urllib.request\n"
        "try:\n"
        "    urllib.request.urlopen(sys.argv[1], context=ssl._create_unverified_context())\n"
        "    print(200)\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code)\n"
    )
    out = await asyncio.to_thread(
        subprocess.run,
        ["ip", "netns", "exec", netns, sys.executable, "-c", fetch, f"{kubelet}/healthz"],
        check=True,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.stdout.strip() == "403"


async def test_exited_containers_restart_or_complete(
    kube: client.ApiClient, namespace: str, agent: RunningAgent
) -> None:
    await default_service_account(kube, namespace)
    core = client.CoreV1Api(kube)
    await core.create_namespaced_pod(
        namespace, pod_manifest("crasher", image=SH, args=["-c", "echo run; sleep 0.3; exit 3"])
    )
    await core.create_namespaced_pod(
        namespace,
        pod_manifest("once", image=SH, args=["-c", "echo done"], restart_policy="Never"),
    )

    async def restarted() -> client.V1ContainerStatus | None:
        pod = await core.read_namespaced_pod("crasher", namespace)
        statuses = pod.status.container_statuses or []
        return statuses[0] if statuses and statuses[0].restart_count >= 1 else None

    status = await until(restarted)
    assert status.last_state.terminated.exit_code == 3
    assert status.last_state.terminated.reason == "Error"

    async def succeeded() -> client.V1Pod | None:
        pod = await core.read_namespaced_pod("once", namespace)
        return pod if pod.status.phase == "Succeeded" else None

    once = await until(succeeded)
    terminated = once.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert terminated.reason == "Completed"
    assert condition(once, "Ready") == "False"
    assert once.status.pod_ip  # kept after the sandbox is gone, as a kubelet does


async def test_unmapped_image_waits_without_affecting_other_pods(
    kube: client.ApiClient, namespace: str, agent: RunningAgent
) -> None:
    await default_service_account(kube, namespace)
    core = client.CoreV1Api(kube)
    await core.create_namespaced_pod(
        namespace, pod_manifest("lost", image="example.invalid/nothing:1.0", args=[])
    )
    await core.create_namespaced_pod(
        namespace, pod_manifest("fine", image=SH, args=["-c", "exec sleep 600"])
    )

    async def waiting() -> client.V1ContainerStateWaiting | None:
        pod = await core.read_namespaced_pod("lost", namespace)
        statuses = pod.status.container_statuses or []
        state = statuses[0].state.waiting if statuses else None
        return state if state is not None and state.reason == "ImageNotMapped" else None

    state = await until(waiting)
    assert ECHO in state.message
    assert "example.invalid/nothing" in state.message
    lost = await core.read_namespaced_pod("lost", namespace)
    assert lost.status.phase == "Pending"
    assert condition(lost, "Ready") == "False"

    async def fine_ready() -> client.V1Pod | None:
        pod = await core.read_namespaced_pod("fine", namespace)
        return pod if pod.status.phase == "Running" and condition(pod, "Ready") == "True" else None

    fine = await until(fine_ready)

    # deleted outright (no graceful phase): the agent sees only the DELETED event
    pid = container_pid(fine)
    netns = netns_of(pid)
    await core.delete_namespaced_pod("fine", namespace, grace_period_seconds=0)

    async def torn_down() -> bool:
        return not pid_alive(pid) and netns not in netns_names()

    assert await until(torn_down, within=10)


async def test_cancellation_removes_processes_namespaces_and_links(
    kube: client.ApiClient, namespace: str, agent: RunningAgent
) -> None:
    await default_service_account(kube, namespace)
    core = client.CoreV1Api(kube)
    # no declared port: ready once something listens in the pod's namespace
    args = ["--address", "0.0.0.0", "--port", "8080", "--name", "only"]
    await core.create_namespaced_pod(namespace, pod_manifest("echo", image=ECHO, args=args))

    async def ready() -> client.V1Pod | None:
        pod = await core.read_namespaced_pod("echo", namespace)
        return pod if condition(pod, "Ready") == "True" else None

    pod = await until(ready)
    assert (await get_json(f"http://{pod.status.pod_ip}:8080/"))["name"] == "only"
    pid = container_pid(pod)
    netns = netns_of(pid)
    (bridge,) = [
        link["ifname"]
        for link in links()
        if any(a.get("local") == GATEWAY for a in link.get("addr_info") or [])
    ]
    ports = [link["ifname"] for link in links() if link.get("master") == bridge]
    assert len(ports) == 1

    await agent.stop()

    assert not pid_alive(pid)
    assert netns not in netns_names()
    names = {link["ifname"] for link in links()}
    assert bridge not in names
    assert not set(ports) & names
