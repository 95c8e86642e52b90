"""The local provider: each Gateway gets its own NGINX (Debian packages) on a loopback address.

apply(model): allocate the address → build the dynamic state (as parts, by
difference from the last apply: dynamic.StateParts) and the static needs →
render the static config → (re)start or reload NGINX only if the static text
changed (validated with `nginx -t` first) → push the parts that changed over
the control socket (validated by the router before it stores any). Any refusal
leaves the last good configuration serving and comes back as
`ApplyResult(programmed=False)` naming why. One Gateway's data plane never
touches another's: separate processes, addresses and files.

A listening address:port that another process holds (Debian's own
nginx.service takes 0.0.0.0:80 when the package is installed) is the one
refusal time may lift: it is `AddressNotUsable`, names the process when /proc
tells (ports.py) and what to do, and is `temporary`, so the Gateway is tried
again with backoff and becomes programmed by itself once the port is free.

The two halves are separable, because in a cluster they run in different
processes (agc_controller/dataplane): the build half is `build_state` (model →
state document + static needs, dynamic.py) with `check_static` (refuses what
`render` would refuse, before anything is delivered); the program half is
`program` (state parts + needs → a running NGINX), which this provider calls on
its child NGINX and the data-plane agent on the NGINX of its pod.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import aiohttp
import attrs
import structlog

from agc_controller.core import conditions as c
from agc_controller.core.keys import ObjectKey
from agc_controller.core.status import ApplyResult, GatewayAddress, ProviderCondition
from agc_controller.core.timefmt import rfc3339
from agc_controller.mesh import WorkloadCertificate
from agc_controller.mesh.support import MeshSupport, Presented
from agc_controller.providers.local import waf
from agc_controller.providers.local.addresses import AddressProblem, LoopbackAllocator
from agc_controller.providers.local.dynamic import StateParts, StaticNeeds
from agc_controller.providers.local.environment import instance_layout
from agc_controller.providers.local.metrics import TrafficMetrics
from agc_controller.providers.local.nginx import NginxError, NginxInstance, PortInUse
from agc_controller.providers.local.ports import PortHolder, port_holder
from agc_controller.providers.local.state import STREAM_PART
from agc_controller.providers.local.static import (
    MODSECURITY_MODULE,
    HostPaths,
    InstanceLayout,
    StaticSettings,
    render,
    static_files,
)
from agc_controller.translate.model import LoadBalancer

log = structlog.get_logger(__name__)


@attrs.define
class LocalProvider:
    # where every Gateway's NGINX keeps its files (one subdirectory each)
    state_dir: Path
    # added to every listener port when binding (e.g. 8000 to run without root)
    port_offset: int = 0
    static_settings: StaticSettings = attrs.field(factory=StaticSettings)
    allocator: LoopbackAllocator = attrs.field(factory=LoopbackAllocator)
    # called on every NGINX reload (metrics)
    on_reload: Callable[[], None] = lambda: None
    # close() stops every NGINX (a local session ending); False leaves them serving
    # for the next controller on this state directory to adopt (failover, restart)
    stop_on_close: bool = True
    name: str = "local"
    _instances: dict[ObjectKey, NginxInstance] = attrs.field(factory=dict)
    # each Gateway's router state, kept between applies and updated by difference
    _states: dict[ObjectKey, StateParts] = attrs.field(factory=dict)

    # the request counters of every NGINX here, read at each scrape (metrics.py)
    traffic: TrafficMetrics = attrs.field(factory=TrafficMetrics)
    # try a Gateway again (its mesh endpoints' verdicts changed, an address was let go)
    requeue: Callable[[ObjectKey], None] = lambda _: None
    # mesh mTLS: the gateway's Istio workload certificate (agc_controller/mesh) is
    # given to every NGINX here (mesh backends answer 503 until one arrives) and is
    # the one the endpoint checks are made with
    mesh: MeshSupport = attrs.field()

    @mesh.default
    def _mesh_default(self) -> MeshSupport:
        return MeshSupport(requeue=self.requeue)

    @property
    def reloads(self) -> int:
        return sum(i.reloads for i in self._instances.values())

    async def refresh_traffic_metrics(self) -> None:
        await self.traffic.refresh(
            {key.namespaced_name: instance for key, instance in self._instances.items()}
        )

    async def apply(self, model: LoadBalancer) -> ApplyResult:
        key = model.gateway
        try:
            address = self.allocator.address_for(key, model.addresses)
        except AddressProblem as e:
            return ApplyResult(programmed=False, reason=e.reason, message=str(e))
        finally:
            self._retry_waiting_for_addresses()
        parts = self._states.get(key)
        if parts is None:
            parts = self._states[key] = StateParts(port_offset=self.port_offset)
        encoded, needs = await self.mesh.build(lambda verifier: parts.build(model, verifier))
        self.mesh.used(key, uses_mesh=needs.mesh, endpoints=lambda: parts.mesh_endpoints(model))
        instance = self._instance(key)
        try:
            # an UnsafeValue or NginxError (permanent) leaves with the last good state serving
            await program(
                instance, address=address, parts=encoded, needs=needs, settings=self.static_settings
            )
        except PortInUse as e:
            holder = await asyncio.to_thread(port_holder, e.address, e.port)
            return ApplyResult(
                programmed=False,
                reason=c.R_ADDRESS_NOT_USABLE,
                message=_port_in_use_message(e, model, port_offset=self.port_offset, holder=holder),
                temporary=True,
            )
        return ApplyResult(
            programmed=True,
            reason=c.R_PROGRAMMED,
            message=f"Programmed on the local data plane at {address}",
            addresses=(GatewayAddress(type="IPAddress", value=address),),
            conditions=(self._mesh_identity(),) if needs.mesh else (),
        )

    def _mesh_identity(self) -> ProviderCondition:
        """Whether this Gateway's mesh backends can be reached: the gateway's workload
        certificate, and why it is missing or cannot be renewed."""
        certificate = self.mesh.certificate
        presented = (
            None
            if certificate is None
            else Presented(certificate.spiffe_id, rfc3339(certificate.not_after))
        )
        return self.mesh.condition(presented, self.mesh.problem(), who="the gateway")

    async def use_mesh_certificate(self, certificate: WorkloadCertificate) -> None:
        """Give every NGINX here the gateway's new mesh workload certificate."""
        # the endpoint checks use it, and the MeshIdentity conditions name it
        self.mesh.use_certificate(certificate)
        for key, instance in list(self._instances.items()):
            try:
                await instance.set_mesh_certificate(certificate.chain_pem, certificate.key_pem)
            except (NginxError, OSError, aiohttp.ClientError) as e:
                # it is kept: the instance sends it again when its NGINX starts afresh
                log.warning("mesh_certificate_not_delivered", gateway=str(key), error=str(e))

    async def delete(self, gateway: ObjectKey) -> None:
        self._states.pop(gateway, None)
        self.mesh.forget(gateway)
        instance = self._instances.pop(gateway, None)
        if instance is not None:
            await instance.stop()
        self.allocator.release(gateway)
        self._retry_waiting_for_addresses()

    def _retry_waiting_for_addresses(self) -> None:
        """Gateways refused an address another one held, once one was let go."""
        for waiting in self.allocator.to_retry():
            self.requeue(waiting)

    async def close(self) -> None:
        if self.stop_on_close:
            for key in list(self._instances):
                await self.delete(key)

    def _instance(self, key: ObjectKey) -> NginxInstance:
        instance = self._instances.get(key)
        if instance is None:
            prefix = self.state_dir / f"{key.namespace}_{key.name}"
            instance = NginxInstance(
                layout=instance_layout(prefix),
                name=key.namespaced_name,
                on_reload=self.on_reload,
            )
            certificate = self.mesh.certificate
            if certificate is not None:
                instance.mesh_certificate = (certificate.chain_pem, certificate.key_pem)
            instance.prepare()
            self._instances[key] = instance
        return instance


def _port_in_use_message(
    e: PortInUse, model: LoadBalancer, *, port_offset: int, holder: PortHolder | None
) -> str:
    """Which listeners cannot listen, who holds their address:port, and what to do."""
    names = [f.name for f in model.frontends if f.port + port_offset == e.port]
    listeners = ("listeners " if len(names) > 1 else "listener ") + ", ".join(names)
    return (
        f"{e.address}:{e.port} ({listeners}) is in use by "
        f"{holder.describe() if holder else 'another process'}. Stop that process, move the "
        "listener to a free port, or shift every listener port with --local-port-offset "
        "(env AGC_LOCAL_PORT_OFFSET); retrying with backoff"
    )


# where `check_static` pretends the files are: render only needs well-formed paths
# (and sockets under a root as short as a real host's)
_SCRATCH_LAYOUT = InstanceLayout(
    prefix=Path("/agc-check"),
    socket_root=Path("/run/agc-controller"),
    host=HostPaths(
        modules_dir=Path("/agc-check/modules"),
        lua_dir=Path("/agc-check/lua"),
        njs_dir=Path("/agc-check/njs"),
        multiarch="x86_64-linux-gnu",
    ),
)


def check_static(needs: StaticNeeds, settings: StaticSettings) -> None:
    """Raise UnsafeValue if `needs` cannot become static configuration on any host."""
    render("0.0.0.0", needs, _SCRATCH_LAYOUT, settings)


async def program(
    instance: NginxInstance,
    *,
    address: str,
    parts: Mapping[str, bytes],
    needs: StaticNeeds,
    settings: StaticSettings,
) -> None:
    """Make `instance` serve the router state `parts` (name -> JSON) on `address`:
    the streams' files and static config first (reloaded only if its text
    changed), then the router's parts that changed. Raises UnsafeValue,
    UnsafeStreamKey or NginxError, leaving the last good configuration serving."""
    streams: dict[str, bytes] = {}
    router: dict[str, bytes] = {}
    for name, part in parts.items():
        if name.startswith(STREAM_PART):
            streams[name.removeprefix(STREAM_PART)] = part
        else:
            router[name] = part
    if needs.waf:
        _check_firewall_installed(instance.layout)
    needs, text, static_id = _static_config(needs, instance, address, settings)
    files = static_files(needs, instance.layout)
    _write_static_files(files)
    instance.streams.write(streams)
    await instance.apply_static(text, static_id)
    instance.waf_rule_sets = needs.waf
    _prune_static_files(instance.layout, keep=files.keys())
    await instance.push(router, static_id)
    instance.streams.prune(streams)


def _static_config(
    needs: StaticNeeds, instance: NginxInstance, address: str, settings: StaticSettings
) -> tuple[StaticNeeds, str, str]:
    """The needs to run, and their static configuration (text, id): `needs`, plus the
    firewall rule sets NGINX runs that no rule needs any more when keeping them
    spares a reload — a policy detached from a Gateway costs no reload, and
    unloading would free no memory anyway (NGINX's master keeps what ModSecurity
    allocated). A reload that happens for another reason drops them."""
    unused = tuple(r for r in instance.waf_rule_sets if r not in needs.waf)
    if unused:
        kept = attrs.evolve(needs, waf=needs.waf + unused)
        text, static_id = render(address, kept, instance.layout, settings)
        if text == instance.static_text:
            return kept, text, static_id
    return (needs, *render(address, needs, instance.layout, settings))


def _check_firewall_installed(layout: InstanceLayout) -> None:
    module = layout.host.modules_dir / MODSECURITY_MODULE
    if not module.exists() or not waf.CRS_RULES.is_dir():
        raise NginxError(
            f"WebApplicationFirewallPolicy needs ModSecurity ({module}) and the OWASP Core "
            f"Rule Set ({waf.CRS_RULES}): install Debian's libnginx-mod-http-modsecurity "
            "and modsecurity-crs (hack/install-deps.sh does)"
        )


def _write_static_files(files: Mapping[Path, tuple[str, int]]) -> None:
    """Write the files a configuration needs that are not there yet. Names carry
    the content's digest, so an existing file is already right; a new one is
    written whole under a temporary name and renamed."""
    for path, (content, mode) in files.items():
        if path.exists():
            continue
        staged = path.with_suffix(".new")
        staged.unlink(missing_ok=True)
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        staged.replace(path)


def _prune_static_files(layout: InstanceLayout, *, keep: Iterable[Path]) -> None:
    """Once NGINX runs a configuration, the files only older ones read can go."""
    wanted = set(keep)
    for path in (*layout.tls_dir.glob("*.pem"), *layout.waf_dir.glob("*.conf")):
        if path not in wanted:
            path.unlink(missing_ok=True)
