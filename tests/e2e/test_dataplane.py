"""The data plane as its own workload: `agc-controller run --local-dataplane deployment`
provisions it, `agc-controller dataplane` (the agent of a data-plane pod) serves it.

There is no kubelet here, so the agent runs as a process, as its pod would run
it: with the token of the ServiceAccount the controller created for it, so
every request is checked against the Role the controller wrote. NGINX binds
0.0.0.0 at the Gateway's listener port (a free high port, so that no other
test's listeners collide) and proxies to a real backend.

The configuration travels sharded (dataplane/config.py): the tests check through
the real apiserver that a route edit rewrites one shard, not the state, and
that an agent never runs a manifest whose shards are not all there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from kubernetes_asyncio import client

from agc_controller.dataplane.config import (
    APPLIED_ANNOTATION,
    VERSION_ANNOTATION,
    Manifest,
    Report,
    Shard,
    decode_manifest,
    decode_shard,
    digest,
    encode_manifest,
    encode_shard,
    shard_document,
    shard_name,
    shard_of,
)
from agc_controller.kube import api_client_from_kubeconfig
from agc_controller.providers.local.dynamic import encode
from devcluster import ControlPlane
from devcluster.controlplane import free_port
from devcluster.netns import BackendNamespace
from tests.e2e.conftest import GW, gateway_with_backend
from tests.e2e.load import Load
from tests.e2e.test_http_routing import eventually_status, get
from tests.integration.test_deploy import get_object, service_account_kubeconfig

DATAPLANE = "agc-gw"  # the objects' name for Gateway "gw"


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not await check():
            await asyncio.sleep(0.1)


@attrs.define
class Process:
    """A child process logging JSON lines to a file."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(30)


def spawn(argv: list[str], log_path: Path) -> Process:
    env = {key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"}
    env["AGC_LOG_FORMAT"] = "json"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "agc_controller.cli", *argv], env=env, stdout=log, stderr=log
        )
    return Process(popen, log_path)


@attrs.define
class DataPlaneEnv:
    kube: client.ApiClient
    namespace: str
    port: int  # the Gateway's listener port
    controller: Process
    # the data-plane ServiceAccount's credentials, as its pod would have them
    agent_kubeconfig: Path
    tmp_path: Path
    # the agent's state directory (see conftest's dataplane_dir)
    state_dir: Path
    agents: list[Process] = attrs.field(factory=list)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.kube)

    def start_agent(self, name: str, *, secret: str = DATAPLANE) -> tuple[Process, int]:
        """The agent of pod `name`; returns it and its health port."""
        health = free_port()
        agent = spawn(
            [
                "dataplane",
                f"--kubeconfig={self.agent_kubeconfig}",
                f"--namespace={self.namespace}",
                f"--secret={secret}",
                f"--pod-name={name}",
                f"--state-dir={self.state_dir}",
                f"--health-address=127.0.0.1:{health}",
            ],
            self.tmp_path / f"{name}.log",
        )
        self.agents.append(agent)
        return agent, health

    async def route(self, *extra_rules: dict[str, Any]) -> None:
        await self.custom.patch_namespaced_custom_object(
            GW,
            "v1",
            self.namespace,
            "httproutes",
            "r",
            route(*extra_rules),
            _content_type="application/merge-patch+json",
        )

    async def programmed(self) -> dict[str, Any]:
        gateway = await self.custom.get_namespaced_custom_object(
            GW, "v1", self.namespace, "gateways", "gw"
        )
        conditions = (gateway.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Programmed"), {})

    async def main_secret(self) -> dict[str, Any]:
        secret: dict[str, Any] = await get_object(self.kube, "Secret", self.namespace, DATAPLANE)
        return secret

    async def delivered(self) -> tuple[Manifest, dict[int, Shard]]:
        """The manifest and its shards as they are now (read as the admin)."""
        manifest = decode_manifest(await self.main_secret())
        shards = {}
        for shard in manifest.shards:
            name = shard_name(DATAPLANE, shard)
            shards[shard] = decode_shard(
                await get_object(self.kube, "Secret", self.namespace, name), shard
            )
        return manifest, shards

    async def applied(self, version: str, *, accepted: bool = True) -> bool:
        """Whether an agent reported `version` (accepted or refused)."""
        secret = await self.main_secret()
        report = Report.from_annotations(secret["metadata"].get("annotations"))
        return report is not None and (report.version, report.accepted) == (version, accepted)

    async def resource_versions(self) -> dict[str, str]:
        """The data plane's Secrets (manifest and shards) by name: their resourceVersions."""
        secrets = await client.CoreV1Api(self.kube).list_namespaced_secret(
            self.namespace, label_selector=f"app.kubernetes.io/instance={DATAPLANE}"
        )
        return {s.metadata.name: s.metadata.resource_version for s in secrets.items}

    async def write_secret(self, name: str, data: dict[str, str], version: str = "") -> None:
        """Replace the data of Secret `name` (as the controller would, with no controller)."""
        secret = await get_object(self.kube, "Secret", self.namespace, name)
        body: dict[str, Any] = {"data": {**dict.fromkeys(secret["data"]), **data}}
        if version:
            body["metadata"] = {"annotations": {VERSION_ANNOTATION: version}}
        await client.CoreV1Api(self.kube).patch_namespaced_secret(name, self.namespace, body)


def route(*extra_rules: dict[str, Any]) -> dict[str, Any]:
    """HTTPRoute "r": everything to the backend, then `extra_rules`."""
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": "svc", "port": 80}],
                },
                *extra_rules,
            ],
        },
    }


async def probe(port: int, path: str) -> tuple[int, str]:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}{path}") as response,
        ):
            return response.status, await response.text()
    except aiohttp.ClientConnectionError:
        return 0, ""


@pytest.fixture
async def dataplane_env(  # pytest passes fixtures by name
    *,
    kube: client.ApiClient,
    namespace: str,
    control_plane: ControlPlane,
    backends: BackendNamespace,
    tmp_path: Path,
    dataplane_dir: Path,
) -> AsyncIterator[DataPlaneEnv]:
    """A Gateway with one route to a real backend, and the controller in deployment mode
    having provisioned its data plane (no agent yet)."""
    suffix = uuid.uuid4().hex[:8]
    controller_name, class_name = f"agc-controller.io/dp-{suffix}", f"dp-{suffix}"
    custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    port = free_port()
    await gateway_with_backend(
        kube,
        namespace,
        backends,
        controller_name=controller_name,
        class_name=class_name,
        backend_name=f"dp-{suffix}",
        port=port,
    )
    await custom.create_namespaced_custom_object(GW, "v1", namespace, "httproutes", route())
    controller = spawn(
        [
            "run",
            f"--kubeconfig={control_plane.kubeconfig}",
            "--provider=local",
            "--local-dataplane=deployment",
            f"--controller-name={controller_name}",
            "--no-leader-elect",
            "--health-address=",
            "--dataplane-image=agc-dataplane:test",
        ],
        tmp_path / "controller.log",
    )

    async def provisioned() -> bool:
        try:
            await core.read_namespaced_service_account(DATAPLANE, namespace)
            await core.read_namespaced_secret(DATAPLANE, namespace)
        except client.ApiException:
            return False
        return True

    env = None
    try:
        await eventually(provisioned)
        env = DataPlaneEnv(
            kube=kube,
            namespace=namespace,
            port=port,
            controller=controller,
            agent_kubeconfig=await service_account_kubeconfig(
                kube,
                control_plane,
                namespace=namespace,
                service_account=DATAPLANE,
                path=tmp_path / "agent.kubeconfig",
            ),
            tmp_path=tmp_path,
            state_dir=dataplane_dir,
        )
        yield env
    finally:
        for process in [controller, *(env.agents if env else [])]:
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait()
        # an agent killed outright leaves its NGINX running
        pid_file = dataplane_dir / "nginx" / "nginx.pid"
        if pid_file.exists():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGQUIT)
        await custom.delete_cluster_custom_object(GW, "v1", "gatewayclasses", class_name)


def nginx_processes(state_dir: Path) -> tuple[int, set[int]]:
    """(the NGINX master's pid, its workers' pids)."""
    master = int((state_dir / "nginx" / "nginx.pid").read_text())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return master, {int(pid) for pid in children}


async def test_the_agent_serves_through_route_changes_and_restarts(
    dataplane_env: DataPlaneEnv,
) -> None:
    env = dataplane_env
    agent, health = env.start_agent("agent-0")
    await eventually(lambda: _status_is(health, "/readyz", 200))
    # Programmed only once the agent reported running the current version
    await eventually(lambda: _programmed_reason(env, "Programmed"))
    status, headers, _ = await get("127.0.0.1", "/", port=env.port)
    assert status == 200
    assert headers["X-Backend"].startswith("dp-")

    # a route change is served without an NGINX reload: same master, same workers
    before = nginx_processes(env.state_dir)
    await env.route(
        {
            "matches": [{"path": {"type": "Exact", "value": "/moved"}}],
            "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"hostname": "new.example.com"}}
            ],
        }
    )
    await eventually_status("127.0.0.1", "/moved", 302, port=env.port)
    assert nginx_processes(env.state_dir) == before
    metrics = (await probe(health, "/metrics"))[1]
    assert "agc_dataplane_nginx_reloads_total 0.0" in metrics
    assert 'agc_dataplane_config_applies_total{outcome="applied"} 2.0' in metrics
    await eventually(lambda: _programmed_reason(env, "Programmed"))

    # the controller dies under traffic: the data plane does not notice
    async with Load(f"http://127.0.0.1:{env.port}/", seconds=4) as load:
        await asyncio.sleep(1)
        env.controller.popen.kill()
        env.controller.popen.wait()
    assert load.result is not None
    assert load.result.failed == 0, load.result.output
    assert load.result.requests > 100, load.result.output

    # the agent stops cleanly (NGINX with it), and a new one serves the last
    # configuration from the Secret, with no controller running
    assert agent.stop() == 0
    assert (await probe(env.port, "/"))[0] == 0
    _, health = env.start_agent("agent-1")
    await eventually(lambda: _status_is(health, "/readyz", 200))
    await eventually_status("127.0.0.1", "/", 200, port=env.port)
    await eventually_status("127.0.0.1", "/moved", 302, port=env.port)
    secret = await client.CoreV1Api(env.kube).read_namespaced_secret(DATAPLANE, env.namespace)
    report = Report.from_annotations(secret.metadata.annotations)
    assert report is not None
    assert (report.accepted, report.pod) == (True, "agent-1")


async def test_the_agents_rbac_is_sufficient_and_minimal(dataplane_env: DataPlaneEnv) -> None:
    env = dataplane_env
    # sufficient: the agent watches, applies and reports with its ServiceAccount alone
    agent, health = env.start_agent("agent-0")
    await eventually(lambda: _status_is(health, "/readyz", 200))
    await eventually(lambda: _programmed_reason(env, "Programmed"))
    assert not [e for e in agent.logs() if e.get("level") in ("warning", "error")]

    # minimal: anything beyond its own Secrets is refused
    core = client.CoreV1Api(env.kube)
    await core.create_namespaced_secret(
        env.namespace, {"metadata": {"name": "other"}, "stringData": {"k": "v"}}
    )
    manifest, _ = await env.delivered()
    shard = shard_name(DATAPLANE, next(iter(manifest.shards)))
    async with await api_client_from_kubeconfig(env.agent_kubeconfig) as api:
        agents_core = client.CoreV1Api(api)
        # allowed: the manifest's Secret, by field selector, and reading a shard
        listed = await agents_core.list_namespaced_secret(
            env.namespace, field_selector=f"metadata.name={DATAPLANE}"
        )
        assert [s.metadata.name for s in listed.items] == [DATAPLANE]
        await agents_core.patch_namespaced_secret(
            DATAPLANE, env.namespace, {"metadata": {"annotations": {"probe": "x"}}}
        )
        assert (await agents_core.read_namespaced_secret(shard, env.namespace)).data
        refused: list[Callable[[], Awaitable[Any]]] = [
            lambda: agents_core.list_namespaced_secret(env.namespace),
            lambda: agents_core.read_namespaced_secret(DATAPLANE, env.namespace),
            lambda: agents_core.read_namespaced_secret("other", env.namespace),
            lambda: agents_core.list_namespaced_secret(
                env.namespace, field_selector=f"metadata.name={shard}"
            ),
            lambda: agents_core.patch_namespaced_secret(
                shard, env.namespace, {"metadata": {"annotations": {"probe": "x"}}}
            ),
            lambda: agents_core.patch_namespaced_secret(
                "other", env.namespace, {"metadata": {"annotations": {"probe": "x"}}}
            ),
            lambda: agents_core.delete_namespaced_secret(DATAPLANE, env.namespace),
            lambda: agents_core.list_namespaced_config_map(env.namespace),
            lambda: agents_core.list_namespaced_pod(env.namespace),
        ]
        for call in refused:
            with pytest.raises(client.ApiException) as raised:
                await call()
            assert raised.value.status == 403

    # an agent pointed at a Secret it may not read says so and stays not ready
    stranger, stranger_health = env.start_agent("stranger", secret="other")
    await eventually(lambda: _status_is(stranger_health, "/readyz", 503))
    await eventually(lambda: _logged(stranger, "permission_denied"))
    _, body = await probe(stranger_health, "/readyz")
    assert "permission denied: list secrets" in body
    denied = next(e for e in stranger.logs() if e.get("event") == "permission_denied")
    assert denied["level"] == "error"
    assert stranger.popen.poll() is None
    assert APPLIED_ANNOTATION not in (
        (await core.read_namespaced_secret("other", env.namespace)).metadata.annotations or {}
    )


# routes beside "r" in the sharding test: every shard holds some of their parts
MANY = 300


def many_route(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": f"many-{i:03d}"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [f"many-{i}.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": f"/m{i}"}}],
                    "backendRefs": [{"name": "svc", "port": 80}],
                }
            ],
        },
    }


def _metric(text: str, name: str) -> float:
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name))


async def test_a_route_edit_rewrites_one_shard_and_the_manifest(
    dataplane_env: DataPlaneEnv,
) -> None:
    """At hundreds of routes, an edit that changes one part of the router state (a
    response header filter changes the route's rule, not the hosts listing it)
    rewrites the shard holding that part and the manifest, and no other Secret:
    the controller sends one shard, the agent reads one shard, and the data plane
    serves the edit."""
    env = dataplane_env
    limit = asyncio.Semaphore(16)

    async def create(i: int) -> None:
        async with limit:
            await env.custom.create_namespaced_custom_object(
                GW, "v1", env.namespace, "httproutes", many_route(i)
            )

    await asyncio.gather(*(create(i) for i in range(MANY)))
    agent, health = env.start_agent("agent-0")

    async def all_served() -> bool:
        manifest, shards = await env.delivered()
        rules = sum(name.startswith("r:") for s in shards.values() for name in s.parts)
        return rules == MANY + 1 and await env.applied(manifest.version)

    await eventually(all_served, within=90)
    await eventually_status("127.0.0.1", "/m7", 200, host="many-7.example.com", port=env.port)
    manifest, shards = await env.delivered()
    assert sorted(manifest.shards) == list(range(16))
    before = await env.resource_versions()
    assert set(before) == {DATAPLANE} | {shard_name(DATAPLANE, s) for s in range(16)}
    fetched = _metric((await probe(health, "/metrics"))[1], "agc_dataplane_shard_fetches_total")

    part = next(n for s in shards.values() for n in s.parts if "/many-123#" in n)
    assert part.startswith("r:")
    edited = many_route(123)
    edited["spec"]["rules"][0]["filters"] = [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "X-Edited", "value": "yes"}]},
        }
    ]
    await env.custom.patch_namespaced_custom_object(
        GW,
        "v1",
        env.namespace,
        "httproutes",
        "many-123",
        edited,
        _content_type="application/merge-patch+json",
    )

    async def edit_applied() -> bool:
        now = decode_manifest(await env.main_secret())
        return now.version != manifest.version and await env.applied(now.version)

    await eventually(edit_applied)
    after = await env.resource_versions()
    assert set(after) == set(before)
    assert {name for name in after if after[name] != before[name]} == {
        DATAPLANE,
        shard_name(DATAPLANE, shard_of(part)),
    }
    written = [
        e for e in env.controller.logs() if e.get("event") == "dataplane_configuration_written"
    ]
    assert written[-1]["shards_written"] == [shard_name(DATAPLANE, shard_of(part))]
    assert written[-1]["shards_deleted"] == []
    metrics = (await probe(health, "/metrics"))[1]
    assert _metric(metrics, "agc_dataplane_shard_fetches_total") == fetched + 1
    assert "agc_dataplane_nginx_reloads_total 0.0" in metrics

    status, headers, _ = await get("127.0.0.1", "/m123", host="many-123.example.com", port=env.port)
    assert (status, headers.get("X-Edited")) == (200, "yes")
    status, headers, _ = await get("127.0.0.1", "/m124", host="many-124.example.com", port=env.port)
    assert (status, headers.get("X-Edited")) == (200, None)
    assert agent.popen.poll() is None


async def test_a_manifest_ahead_of_its_shards_is_waited_for(dataplane_env: DataPlaneEnv) -> None:
    """A manifest listing a shard that does not hold the listed digest yet (what an
    agent sees when the controller writes a newer configuration while it reads one)
    is neither run nor refused: the agent keeps serving the last one, and runs the
    new one whole once the shard holds it. A shard that cannot be read is a refusal."""
    env = dataplane_env
    await env.route(
        {
            "matches": [{"path": {"type": "Exact", "value": "/moved"}}],
            "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"hostname": "old.example.com"}}
            ],
        }
    )
    agent, health = env.start_agent("agent-0")
    await eventually(lambda: _status_is(health, "/readyz", 200))
    _, headers, _ = await eventually_status("127.0.0.1", "/moved", 302, port=env.port)
    assert headers["Location"].startswith("http://old.example.com")
    manifest, shards = await env.delivered()
    await eventually(lambda: env.applied(manifest.version))
    # from here on only this test writes the Secrets
    env.controller.popen.kill()
    env.controller.popen.wait()

    shard, part = next(
        (number, name)
        for number, read in shards.items()
        for name, text in read.parts.items()
        if b'"redirect"' in text
    )
    rule = json.loads(shards[shard].parts[part])
    rule["redirect"]["hostname"] = "new.example.com"
    parts = {**shards[shard].parts, part: encode(rule)}
    newer = Manifest(
        needs=manifest.needs,
        shards={**manifest.shards, shard: digest(shard_document(parts))},
    )
    await env.write_secret(DATAPLANE, encode_manifest(newer), newer.version)

    def waiting(version: str) -> bool:
        return any(
            e.get("event") == "configuration_incomplete" and e.get("version") == version
            for e in agent.logs()
        )

    await eventually(lambda: _is(waiting(newer.version)))
    assert await env.applied(manifest.version)
    _, headers, _ = await get("127.0.0.1", "/moved", port=env.port)
    assert headers["Location"].startswith("http://old.example.com")

    # the shard arrives: the agent's retry finds it (it does not watch shards)
    await env.write_secret(shard_name(DATAPLANE, shard), encode_shard(shard, parts))
    await eventually(lambda: env.applied(newer.version))
    _, headers, _ = await get("127.0.0.1", "/moved", port=env.port)
    assert headers["Location"].startswith("http://new.example.com")

    # a shard that cannot be read is no write in progress: the version is refused
    garbled = Manifest(needs=manifest.needs, shards={**newer.shards, shard: "0" * 64})
    await env.write_secret(
        shard_name(DATAPLANE, shard), {"parts.json.gz": base64.b64encode(b"not gzip").decode()}
    )
    await env.write_secret(DATAPLANE, encode_manifest(garbled), garbled.version)
    await eventually(lambda: env.applied(garbled.version, accepted=False))
    report = Report.from_annotations((await env.main_secret())["metadata"]["annotations"])
    assert report is not None
    assert f"cannot be read: shard {shard:02d}: unreadable parts.json" in report.message
    _, headers, _ = await get("127.0.0.1", "/moved", port=env.port)
    assert headers["Location"].startswith("http://new.example.com")


async def _is(value: bool) -> bool:
    return value


async def _status_is(port: int, path: str, want: int) -> bool:
    return (await probe(port, path))[0] == want


async def _programmed_reason(env: DataPlaneEnv, reason: str) -> bool:
    return bool((await env.programmed()).get("reason") == reason)


async def _logged(process: Process, event: str) -> bool:
    return any(entry.get("event") == event for entry in process.logs())
