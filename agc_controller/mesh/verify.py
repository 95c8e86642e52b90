"""Which mesh endpoints are who their pods run as: a TLS handshake with each.

A mesh endpoint must prove the identity of the sidecar pod behind it
(`spiffe://<trust domain>/ns/<namespace>/sa/<service account>`, from the pod's
`serviceAccountName`), with a certificate chaining to the mesh's roots. NGINX
1.22 checks an upstream certificate only against a DNS name or an IP address,
and Istio's workload certificates carry a SPIFFE URI alone, so NGINX cannot
make this check on its own connections. The verifier makes it beside them: it
opens a TLS connection to each endpoint as the gateway (the same workload
certificate NGINX presents, no ALPN, as NGINX sends none), checks the chain
and the URI name, and remembers the verdict. The data plane sends traffic only
to endpoints with a good verdict (`allows`); a backend with none answers 503.
What this does not give: a check on each of NGINX's own connections. An
endpoint that changes hands between two checks is found at the next one.

- A verdict is checked again every `recheck_s` (a failed one every `retry_s`),
  and at once when the gateway's certificate (with the roots) is renewed; it
  stands until then, so a renewal never takes an endpoint out of service.
- Every change of a verdict moves `generation` and calls `on_change`, so the
  data planes send the changed backends again.
- The data planes say which mesh endpoints they use (`use`, per Gateway): those
  are checked again; the verdicts of others are forgotten.
- Refusals are logged with the identity the endpoint presented.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import ssl
from collections.abc import Callable, Iterable, Iterator

import attrs
import structlog

from agc_controller.core.clock import Clock
from agc_controller.mesh.identity import WorkloadCertificate, spiffe_id
from agc_controller.translate.model import Endpoint

log = structlog.get_logger(__name__)

HANDSHAKE_TIMEOUT_S = 2.0
# handshakes at once: a Service scaled up to hundreds of pods is checked in waves
CONCURRENCY = 16

# (address, port, service account "ns/name")
Key = tuple[str, int, str]


@attrs.frozen
class Verdict:
    ok: bool
    # what the endpoint presented, or why the handshake failed
    detail: str
    # when it was checked (Clock.monotonic)
    at: float


@attrs.define
class EndpointVerifier:
    """Verdicts on mesh endpoints, checked by TLS handshakes (module doc)."""

    trust_domain: str
    clock: Clock
    # called (no arguments) after verdicts changed
    on_change: Callable[[], None] = lambda: None
    recheck_s: float = 60.0
    retry_s: float = 5.0
    # moves whenever a verdict changes
    generation: int = 0
    # TLS as the gateway's workload certificate; None: nothing can be checked yet
    _context: ssl.SSLContext | None = None
    _verdicts: dict[Key, Verdict] = attrs.field(factory=dict)
    # asked about by `allows` and never checked: `settle` checks them
    _pending: set[Key] = attrs.field(factory=set)
    # the mesh endpoints each Gateway's data plane uses (`use`)
    _used: dict[str, frozenset[Key]] = attrs.field(factory=dict)

    def use_certificate(self, certificate: WorkloadCertificate) -> None:
        """Check from now on as `certificate`, against its roots: every verdict is
        due again at the next round, and stands until then."""
        self._context = _client_context(certificate)
        self._verdicts = {k: attrs.evolve(v, at=-math.inf) for k, v in self._verdicts.items()}

    def allows(self, endpoint: Endpoint) -> bool:
        """Whether `endpoint` proved its identity. An endpoint with no known sidecar
        pod never does; one not checked yet is noted for `settle`."""
        if endpoint.service_account is None:
            return False
        key = (endpoint.address, endpoint.port, endpoint.service_account)
        verdict = self._verdicts.get(key)
        if verdict is None:
            self._pending.add(key)
        return verdict is not None and verdict.ok

    def use(self, gateway: str, endpoints: Iterable[Endpoint]) -> None:
        """The mesh endpoints `gateway`'s data plane now uses (none: it is gone)."""
        keys = frozenset(
            (e.address, e.port, e.service_account)
            for e in endpoints
            if e.service_account is not None
        )
        if keys:
            self._used[gateway] = keys
        else:
            self._used.pop(gateway, None)

    def unchecked(self) -> bool:
        return any(key not in self._verdicts for key in self._pending)

    async def settle(self) -> bool:
        """Check every endpoint asked about and never checked; True if a verdict changed."""
        pending, self._pending = self._pending, set()
        return await self._check([k for k in pending if k not in self._verdicts])

    async def run(self) -> None:
        """Check the verdicts of the endpoints in use again as they come due; forget
        the others."""
        while True:
            await self.clock.sleep(min(self.retry_s, self.recheck_s))
            used = frozenset().union(*self._used.values())
            for key in [k for k in self._verdicts if k not in used]:
                del self._verdicts[key]
            now = self.clock.monotonic()
            if await self._check([k for k in used if self._due(k, now)]):
                self.on_change()

    def _due(self, key: Key, now: float) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            return True
        return now - verdict.at >= (self.recheck_s if verdict.ok else self.retry_s)

    async def _check(self, keys: Iterable[Key]) -> bool:
        context = self._context
        if context is None:
            return False
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(key: Key) -> bool:
            async with limit:
                verdict = await self._handshake(context, key)
            before = self._verdicts.get(key)
            self._verdicts[key] = verdict
            was_ok = before is not None and before.ok
            if not verdict.ok and (before is None or was_ok):
                log.warning(
                    "mesh_endpoint_refused",
                    endpoint=f"{key[0]}:{key[1]}",
                    service_account=key[2],
                    detail=verdict.detail,
                )
            # an endpoint never checked had no traffic: only becoming good changes that
            return was_ok != verdict.ok

        changed = any(await asyncio.gather(*(one(k) for k in keys)))
        if changed:
            self.generation += 1
        return changed

    async def _handshake(self, context: ssl.SSLContext, key: Key) -> Verdict:
        address, port, account = key
        namespace, _, name = account.partition("/")
        wanted = spiffe_id(self.trust_domain, namespace, name)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                _, writer = await asyncio.open_connection(
                    address, port, ssl=context, server_hostname=""
                )
        except (OSError, TimeoutError, ssl.SSLError) as e:
            return Verdict(False, f"TLS handshake failed: {e}", self.clock.monotonic())
        try:
            peer = writer.get_extra_info("ssl_object").getpeercert()
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                    await writer.wait_closed()
        presented = [v for k, v in (peer or {}).get("subjectAltName", ()) if k == "URI"]
        if wanted not in presented:
            detail = f"presented {presented or 'no URI name'}, not {wanted}"
            return Verdict(False, detail, self.clock.monotonic())
        return Verdict(True, f"presented {wanted}", self.clock.monotonic())


def _client_context(certificate: WorkloadCertificate) -> ssl.SSLContext:
    """TLS as the gateway: its certificate, the mesh's roots, no host name check
    (the identity is a URI name, checked after the handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=certificate.roots_pem)
    # the ssl module loads a key from a file only: an anonymous one in memory, which
    # no other process can open and which needs no writable directory (the
    # controller's pod has a read-only root filesystem and no /tmp)
    with _memory_file(certificate.chain_pem) as chain, _memory_file(certificate.key_pem) as key:
        context.load_cert_chain(chain, key)
    return context


@contextlib.contextmanager
def _memory_file(text: str) -> Iterator[str]:
    """A path to a file holding `text` that lives in this process's memory alone."""
    descriptor = os.memfd_create("agc-mesh", os.MFD_CLOEXEC)
    try:
        os.write(descriptor, text.encode())
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)
