"""The data-plane agent: runs in the data-plane pod as NGINX's parent and feeds it
the configuration the controller put in the Gateway's Secrets.

It watches the Gateway's main Secret, the manifest (a `metadata.name` field
selector: its Role allows no other list or watch). For each new version
(config.py) it GETs the shard Secrets whose digest differs from the one it
holds, keeps every shard's parts by digest, and runs the parts of the shards
the manifest lists with the same code and guarantees as the process mode
(`program`: `nginx -t` on a staged copy, the last good configuration kept on
any refusal, a reload only when the static text changed, only the parts that
changed pushed to NGINX, without a reload). Then it reports the version as
applied or refused in the main Secret's annotation, retrying with backoff
until the report is written (a newer report replaces an unsent one).

Why Secrets and not a connection to the controller: the configuration lives
in the apiserver, so the data plane keeps serving, and a restarted agent gets
its configuration back, while no controller runs (restarts, failovers); and
the agent needs no port, certificate or credential beyond its ServiceAccount.

Invariants:
- Each version is handled once: the agent's own report changes the Secret and
  comes back as an event, which must not re-apply (or re-report) anything. A
  refused version is tried again only by a restarted agent. What is not a
  verdict is retried with backoff, and sooner by the next manifest: a push
  that failed on the control socket (NGINX restarting), and a configuration
  not all there yet (a listed shard missing, its GET failing, or holding
  another digest than listed: the controller is writing a newer one). A
  configuration is only ever run whole: every part from a shard whose digest
  its manifest lists, never a mix of two versions.
- A shard that cannot be decoded is a refusal of the version, like a manifest
  that cannot.
- A deleted Secret stops nothing: the last configuration keeps serving.
- Readiness (/readyz) is "a configuration is serving": NGINX runs the first
  version this agent applied. Until then the reasons say what is missing.
- Mesh mTLS (`mesh`, docs/mesh.md): the pod obtains its own workload
  certificate from istiod, as an Istio sidecar does: its own projected
  service-account token, the mesh's roots from the mounted istio-ca-root-cert
  ConfigMap, and a key made here that never leaves the pod (it goes to NGINX
  over its control socket only). Each certificate goes to NGINX as it comes,
  renewed before it is half spent; a delivery that fails is logged, and
  NginxInstance sends its certificate again to an NGINX that starts afresh.
  Every report carries
  the mesh state (the SPIFFE ID and expiry of the certificate NGINX presents,
  and why there is none or renewal fails); when that state changes after a
  version was handled, the verdict on that version is reported again with the
  new state, through the same path (a newer report replaces an unsent one). So
  a report is written once per version handled, and once per mesh change.
- SIGTERM: stop watching; drain (`drain_seconds`: every response closes its
  keep-alive connection, so clients reconnect to the pods that stay, while this
  pod's endpoint removal reaches kube-proxy and load balancers); stop NGINX
  gracefully (in-flight requests finish); exit.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.rest import ApiException
from prometheus_client import CollectorRegistry, Counter, Info

from agc_controller.core.clock import Clock, SystemClock
from agc_controller.core.keys import namespaced_name
from agc_controller.core.resources import SECRET
from agc_controller.core.timefmt import rfc3339
from agc_controller.dataplane.codec import DecodeError
from agc_controller.dataplane.config import (
    APPLIED_ANNOTATION,
    VERSION_ANNOTATION,
    Manifest,
    Report,
    Shard,
    decode_manifest,
    decode_shard,
    shard_name,
)
from agc_controller.dataplane.manifests import GATEWAY_ANNOTATION
from agc_controller.informers import (
    ApiListWatcher,
    ApiStatusError,
    Backoff,
    Informer,
    KubeObject,
    drop_managed_fields,
)
from agc_controller.kube.client import get_json
from agc_controller.mesh import WorkloadCertificate, WorkloadIdentity
from agc_controller.mesh.identity import Secret as MeshSecret
from agc_controller.mesh.identity import Signer
from agc_controller.providers.local import program
from agc_controller.providers.local.environment import instance_layout
from agc_controller.providers.local.metrics import TrafficMetrics
from agc_controller.providers.local.nginx import NginxError, NginxInstance, PortInUse
from agc_controller.providers.local.static import StaticSettings, UnsafeValue
from agc_controller.runtime.health import serving_health
from agc_controller.runtime.permissions import (
    PermissionProblems,
    PermissionReportingListWatcher,
)

log = structlog.get_logger(__name__)

FIELD_MANAGER = "agc-dataplane"
# seconds before the first retry of a version not handled for no fault of its
# own (NGINX's control socket failed, a shard not there yet); then with backoff
RETRY_AFTER = 1.0
# seconds the retries of such a version back off to
RETRY_AFTER_MAX = 30.0


class _Incomplete(Exception):
    """A shard the manifest lists is not there as listed (yet): not a verdict."""


@attrs.frozen(kw_only=True)
class AgentMesh:
    """Where the pod's own mesh identity comes from (cli.py: istiod, the mounted
    token and roots). The private key is made in the pod and never leaves it."""

    # spiffe://<trust domain>/ns/<the pod's namespace>/sa/<the pod's service account>
    spiffe_id: str
    # istiod's certificate service (mesh.IstioCA)
    ca: Signer
    # the pod's service-account token with the istio-ca audience (mesh.TokenFile)
    token: MeshSecret
    # the mesh's root certificates (mesh.RootsFile)
    roots: MeshSecret


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.applies = Counter(
            "agc_dataplane_config_applies",
            "Configuration versions handled, by outcome (applied or refused).",
            ["outcome"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "agc_dataplane_nginx_reloads",
            "NGINX reloads (static configuration changes).",
            registry=self.registry,
        )
        self.shard_fetches = Counter(
            "agc_dataplane_shard_fetches",
            "Shard Secrets read (a shard is read when a manifest lists a digest of it the "
            "agent does not hold).",
            registry=self.registry,
        )
        self.config = Info(
            "agc_dataplane_config",
            "The configuration version NGINX serves (the manifest's version).",
            registry=self.registry,
        )
        # NGINX's request counters (metrics.py), read at each scrape
        self.traffic = TrafficMetrics()
        self.registry.register(self.traffic)


class Agent:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        secret: str,
        pod: str,
        state_dir: Path,
        listen_address: str = "0.0.0.0",
        drain_seconds: float = 5.0,
        static_settings: StaticSettings | None = None,
        mesh: AgentMesh | None = None,
        clock: Clock | None = None,
    ) -> None:
        clock = clock or SystemClock()
        self._api = api
        self._drain_seconds = drain_seconds
        self._namespace = namespace
        self._secret = secret
        self._pod = pod
        self._listen_address = listen_address
        self._static_settings = static_settings or StaticSettings()
        self.metrics = AgentMetrics()
        self._nginx = NginxInstance(
            layout=instance_layout(state_dir / "nginx"),
            name=namespaced_name(namespace, secret),
            on_reload=self.metrics.reloads.inc,
        )
        self.permissions = PermissionProblems()
        self._informer = Informer(
            SECRET,
            PermissionReportingListWatcher(
                # `metadata.name=`: the only list its resourceNames rule allows
                ApiListWatcher(api, SECRET, namespace, field_selector=f"metadata.name={secret}"),
                SECRET,
                self.permissions,
            ),
            clock=clock,
            transform=drop_managed_fields,
            name="configuration",
        )
        self._informer.add_handler(self)
        self._log = log.bind(secret=f"{namespace}/{secret}", pod=pod)
        # the Gateway's namespace/name (the Secret's annotation), the label of its traffic
        self._gateway = namespaced_name(namespace, secret)
        # set by every Secret event; the apply loop reads the store when it wakes
        self._changed = asyncio.Event()
        # the last version handled (applied or refused), and the one NGINX serves
        self._handled: str | None = None
        # shard -> what it held when last read, each checked against a manifest's digest
        self._shards: dict[int, Shard] = {}
        # the delays of retrying a version not handled yet (reset when one is handled)
        self._backoff = Backoff(initial=RETRY_AFTER, maximum=RETRY_AFTER_MAX)
        # the pending wake-up of the apply loop for such a retry; at most one
        self._retry: asyncio.TimerHandle | None = None
        self.serving_version: str | None = None
        # why the last version was refused (for /readyz before anything serves)
        self._refusal: str | None = None
        # the newest report made (the verdict on the version handled last, with the
        # mesh state of when it was made); None until a version is handled
        self._verdict: Report | None = None
        # the newest report not written yet, and its signal
        self._unsent: Report | None = None
        self._report_ready = asyncio.Event()
        # the pod's workload certificate, kept current; None: mesh mTLS is off.
        # Its `current` is the certificate NGINX presents (or is given as it starts)
        self._mesh: WorkloadIdentity | None = None
        if mesh is not None:
            self._mesh = WorkloadIdentity(
                spiffe_id=mesh.spiffe_id,
                ca=mesh.ca,
                token=mesh.token,
                roots=mesh.roots,
                clock=clock,
                on_change=self._use_mesh_certificate,
                on_problem=self._report_mesh_state,
            )

    # informer handler: no I/O, only wake the apply loop
    def on_add(self, obj: KubeObject) -> None:
        self._changed.set()

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self._changed.set()

    def on_delete(self, obj: KubeObject) -> None:
        self._log.warning("configuration_secret_deleted", serving=self.serving_version)

    def not_ready_reasons(self) -> list[str]:
        if self.serving_version is not None:
            return []
        reasons = [f"no configuration serving yet (Secret {self._namespace}/{self._secret})"]
        if self.permissions.denied:
            reasons.append(f"permission denied: {', '.join(sorted(self.permissions.denied))}")
        if self._refusal is not None:
            reasons.append(f"configuration refused: {self._refusal}")
        return reasons

    async def refresh_traffic_metrics(self) -> None:
        """Read NGINX's request counters for the scrape under way."""
        if self.serving_version is not None:
            await self.metrics.traffic.refresh({self._gateway: self._nginx})

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then drain and stop NGINX gracefully."""
        self._nginx.prepare()
        drain = 0.0
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self._informer.run(), name="informer-configuration"),
                    tg.create_task(self._apply_loop(), name="apply"),
                    tg.create_task(self._report_loop(), name="report"),
                ]
                if self._mesh is not None:
                    tasks.append(tg.create_task(self._mesh.run(), name="mesh-identity"))
                await stop.wait()
                self._log.info("agent_stopping", drain_seconds=self._drain_seconds)
                drain = self._drain_seconds
                for task in tasks:
                    task.cancel()
        finally:
            await self._nginx.stop(drain=drain)
        self._log.info("agent_stopped")

    async def _apply_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            secret = self._informer.store.get(namespaced_name(self._namespace, self._secret))
            if secret is not None:
                await self._handle(secret)

    async def _handle(self, secret: KubeObject) -> None:
        annotations = secret["metadata"].get("annotations") or {}
        try:
            manifest = decode_manifest(secret)
        except DecodeError as e:
            version = annotations.get(VERSION_ANNOTATION, "unknown")
            if version != self._handled:
                self._refused(version, f"The configuration cannot be read: {e}")
            return
        version = manifest.version
        if version == self._handled:
            return
        try:
            parts = await self._parts(manifest)
        except DecodeError as e:
            self._refused(version, f"The configuration cannot be read: {e}")
            return
        except _Incomplete as e:
            # the controller is writing a newer configuration (or must rewrite a shard)
            self._log.info(
                "configuration_incomplete", version=version, error=str(e), retry_in=self._later()
            )
            return
        try:
            await program(
                self._nginx,
                address=self._listen_address,
                parts=parts,
                needs=manifest.needs,
                settings=self._static_settings,
            )
        except (UnsafeValue, NginxError, PortInUse, OSError) as e:
            # a port in use is refused too: the pod's network is its own, so no
            # other process is expected there to free it
            self._refused(version, str(e))
            return
        except aiohttp.ClientError as e:
            # the control socket failed mid-push (NGINX restarting): not a verdict
            self._log.warning(
                "configuration_push_failed", version=version, error=str(e), retry_in=self._later()
            )
            return
        self._handled = self.serving_version = version
        self._refusal = None
        self._backoff.reset()
        self._gateway = annotations.get(GATEWAY_ANNOTATION) or self._gateway
        self.metrics.config.info({"version": version})
        self.metrics.applies.labels(outcome="applied").inc()
        self._log.info("configuration_applied", version=version, reloads=self._nginx.reloads)
        self._send(Report(version=version, accepted=True, pod=self._pod))

    async def _parts(self, manifest: Manifest) -> dict[str, bytes]:
        """Every part of the configuration `manifest` lists: from the shards held
        with the listed digest, after reading the others. _Incomplete if a shard
        is not there as listed, DecodeError if one cannot be read."""
        for shard, digest in manifest.shards.items():
            held = self._shards.get(shard)
            if held is not None and held.digest == digest:
                continue
            read = decode_shard(await self._get_shard(shard), shard)
            if read.digest != digest:
                raise _Incomplete(
                    f"shard {shard:02d} holds {read.digest[:16]}, not {digest[:16]} as listed"
                )
            self._shards[shard] = read
        for shard in self._shards.keys() - manifest.shards.keys():
            del self._shards[shard]
        parts: dict[str, bytes] = {}
        for shard in manifest.shards:
            parts.update(self._shards[shard].parts)
        return parts

    async def _get_shard(self, shard: int) -> KubeObject:
        name = shard_name(self._secret, shard)
        try:
            async with asyncio.timeout(30):
                secret: KubeObject = await get_json(
                    self._api, SECRET.object_path(name, self._namespace)
                )
        except ApiException as e:
            if e.status == 403:
                self.permissions.refused(
                    "get", SECRET, ApiStatusError(e.status, str(e.reason), str(e.body))
                )
            raise _Incomplete(f"shard {name}: {_describe(e)}") from e
        except (aiohttp.ClientError, TimeoutError) as e:
            raise _Incomplete(f"shard {name}: {_describe(e)}") from e
        self.permissions.allowed("get", SECRET)
        self.metrics.shard_fetches.inc()
        return secret

    def _later(self) -> float:
        """Wake the apply loop again after the next backoff delay, unless a wake-up
        is pending already; the seconds until the wake-up."""
        loop = asyncio.get_running_loop()
        if self._retry is None:

            def wake() -> None:
                self._retry = None
                self._changed.set()

            self._retry = loop.call_later(self._backoff.next_delay(), wake)
        return self._retry.when() - loop.time()

    def _refused(self, version: str, message: str) -> None:
        self._handled = version
        self._refusal = message
        self._backoff.reset()
        self.metrics.applies.labels(outcome="refused").inc()
        self._log.warning(
            "configuration_refused", version=version, error=message, serving=self.serving_version
        )
        self._send(Report(version=version, accepted=False, message=message, pod=self._pod))

    def _send(self, report: Report) -> None:
        """Report `report` with the mesh state of now."""
        self._verdict = self._unsent = self._with_mesh_state(report)
        self._report_ready.set()

    def _with_mesh_state(self, report: Report) -> Report:
        if self._mesh is None:
            return report
        certificate = self._mesh.current
        return attrs.evolve(
            report,
            mesh_identity=certificate.spiffe_id if certificate else "",
            mesh_expires=rfc3339(certificate.not_after) if certificate else "",
            mesh_problem=self._mesh.problem or "",
        )

    async def _use_mesh_certificate(self, certificate: WorkloadCertificate) -> None:
        try:
            await self._nginx.set_mesh_certificate(certificate.chain_pem, certificate.key_pem)
        except (NginxError, aiohttp.ClientError, OSError) as e:
            # the instance keeps it, and sends it to an NGINX that starts afresh
            self._log.warning(
                "mesh_certificate_not_delivered", spiffe_id=certificate.spiffe_id, error=str(e)
            )
        self._report_mesh_state()

    def _report_mesh_state(self) -> None:
        """Report the verdict on the version handled last again if the mesh state changed."""
        if self._verdict is not None and self._with_mesh_state(self._verdict) != self._verdict:
            self._send(self._verdict)

    async def _report_loop(self) -> None:
        backoff = Backoff()
        while True:
            await self._report_ready.wait()
            self._report_ready.clear()
            report = self._unsent
            if report is None:
                continue
            try:
                await self._patch_report(report)
            except (ApiException, aiohttp.ClientError, TimeoutError) as e:
                delay = backoff.next_delay()
                self._log.warning(
                    "report_failed", version=report.version, error=_describe(e), retry_in=delay
                )
                await asyncio.sleep(delay)
                self._report_ready.set()
                continue
            backoff.reset()
            if self._unsent is report:
                self._unsent = None

    async def _patch_report(self, report: Report) -> None:
        body: dict[str, Any] = {
            "metadata": {"annotations": {APPLIED_ANNOTATION: report.annotation()}}
        }
        async with asyncio.timeout(30):
            await self._api.call_api(
                SECRET.object_path(self._secret, self._namespace),
                "PATCH",
                query_params=[("fieldManager", FIELD_MANAGER)],
                header_params={
                    "Content-Type": "application/merge-patch+json",
                    "Accept": "application/json",
                },
                body=body,
                response_types_map={200: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
            )


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return str(error) or type(error).__name__


async def run_agent(agent: Agent, *, health: tuple[str, int] | None, stop: asyncio.Event) -> None:
    """Run `agent` with its probe/metrics endpoint until `stop` is set."""
    async with serving_health(
        health,
        not_ready_reasons=agent.not_ready_reasons,
        registry=agent.metrics.registry,
        before_scrape=agent.refresh_traffic_metrics,
    ):
        await agent.run(stop)
