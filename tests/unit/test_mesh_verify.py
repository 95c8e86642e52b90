"""The checks on mesh endpoints (mesh/verify.py), against real TLS servers on
loopback: who passes, who does not, and when verdicts change."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from agc_controller.mesh import WorkloadCertificate
from agc_controller.mesh.identity import new_key_and_csr
from agc_controller.mesh.verify import EndpointVerifier
from agc_controller.translate.model import Endpoint
from tests.unit.test_mesh import CA, EPOCH

TRUST = "cluster.local"
GATEWAY = f"spiffe://{TRUST}/ns/web/sa/gateway"


def issued(ca: CA, identity: str) -> tuple[str, str]:
    key_pem, csr = new_key_and_csr(identity)
    return ca.sign_csr(csr, 10 * 365 * 86400), key_pem


def gateway_certificate(ca: CA) -> WorkloadCertificate:
    chain, key = issued(ca, GATEWAY)
    return WorkloadCertificate(
        spiffe_id=GATEWAY,
        chain_pem=chain,
        key_pem=key,
        roots_pem=ca.pem,
        not_before=EPOCH,
        not_after=EPOCH + 3600,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH + self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def serve(
    tmp_path: Path, name: str, chain: str, key: str, client_ca: str
) -> tuple[asyncio.Server, int]:
    """A TLS server presenting `chain` that requires a client certificate from `client_ca`."""
    (tmp_path / f"{name}.crt").write_text(chain)
    (tmp_path / f"{name}.key").write_text(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
    context.load_verify_locations(cadata=client_ca)
    context.verify_mode = ssl.CERT_REQUIRED

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


@attrs.frozen
class Mesh:
    ca: CA
    # name -> the port of the TLS server standing for that endpoint
    ports: dict[str, int]
    servers: dict[str, asyncio.Server]


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    # valid now: the handshakes are real
    now = time.time() - 3600
    ca, stranger = CA("mesh", start=now), CA("stranger", start=now)
    servers = {
        "honest": await serve(
            tmp_path, "honest", *issued(ca, f"spiffe://{TRUST}/ns/shop/sa/cart"), ca.pem
        ),
        "impostor": await serve(
            tmp_path, "impostor", *issued(ca, f"spiffe://{TRUST}/ns/shop/sa/other"), ca.pem
        ),
        "stranger": await serve(
            tmp_path, "stranger", *issued(stranger, f"spiffe://{TRUST}/ns/shop/sa/cart"), ca.pem
        ),
    }
    try:
        yield Mesh(
            ca=ca,
            ports={name: port for name, (_, port) in servers.items()},
            servers={name: server for name, (server, _) in servers.items()},
        )
    finally:
        for server, _ in servers.values():
            server.close()
            await server.wait_closed()


def endpoint(port: int, account: str | None = "shop/cart") -> Endpoint:
    return Endpoint(address="127.0.0.1", port=port, service_account=account)


async def test_only_the_endpoint_proving_its_pods_identity_passes(mesh: Mesh) -> None:
    ports, ca = mesh.ports, mesh.ca
    verifier = EndpointVerifier(trust_domain=TRUST, clock=Clock())
    everyone = [endpoint(port) for port in ports.values()]
    # nothing passes before a check, and nothing can be checked without a certificate
    assert not any(verifier.allows(e) for e in everyone)
    assert verifier.unchecked()
    assert await verifier.settle() is False
    # the certificate arrives; the data plane builds again (the provider requeues)
    verifier.use_certificate(gateway_certificate(ca))
    assert not any(verifier.allows(e) for e in everyone)
    assert await verifier.settle() is True
    assert not verifier.unchecked()
    allowed = {name for name, port in ports.items() if verifier.allows(endpoint(port))}
    assert allowed == {"honest"}
    # an endpoint whose pod is unknown never passes
    assert not verifier.allows(endpoint(ports["honest"], account=None))


async def test_checks_need_no_writable_directory(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the controller's pod: a read-only root filesystem, no /tmp
    def nowhere(*_args: object, **_kwargs: object) -> str:
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(tempfile, "gettempdir", nowhere)
    monkeypatch.setattr(tempfile, "mkdtemp", nowhere)
    monkeypatch.setattr(tempfile, "mkstemp", nowhere)
    verifier = EndpointVerifier(trust_domain=TRUST, clock=Clock())
    verifier.use_certificate(gateway_certificate(mesh.ca))
    assert verifier.allows(endpoint(mesh.ports["honest"])) is False
    assert await verifier.settle() is True
    assert verifier.allows(endpoint(mesh.ports["honest"]))


async def test_a_verdict_that_changes_moves_the_generation_and_calls_on_change(
    mesh: Mesh,
) -> None:
    ports, ca = mesh.ports, mesh.ca
    clock = Clock()
    changes: list[int] = []
    verifier = EndpointVerifier(
        trust_domain=TRUST, clock=clock, on_change=lambda: changes.append(verifier.generation)
    )
    verifier.use_certificate(gateway_certificate(ca))
    honest = endpoint(ports["honest"])
    verifier.allows(honest)
    await verifier.settle()
    assert verifier.allows(honest)
    generation = verifier.generation
    # the pod now runs as another account: the same endpoint no longer passes
    moved = endpoint(ports["honest"], account="shop/intruder")
    verifier.allows(moved)
    await verifier.settle()
    assert not verifier.allows(moved)
    assert verifier.generation == generation  # it never had traffic: nothing changed
    # a renewal keeps the verdicts in force until the next round checks them again
    verifier.use("web/gw", [honest])
    verifier.use_certificate(gateway_certificate(ca))
    assert verifier.allows(honest)
    await run_until(verifier, clock, lambda: clock.now >= verifier.recheck_s * 2)
    assert verifier.allows(honest)
    assert changes == []  # rechecks that agree change nothing
    # the endpoint goes away: its next check fails, and that is a change
    mesh.servers["honest"].close()
    await mesh.servers["honest"].wait_closed()
    await run_until(verifier, clock, lambda: bool(changes))
    assert not verifier.allows(honest)
    assert changes == [generation + 1]


async def run_until(verifier: EndpointVerifier, clock: Clock, done: object) -> None:
    task = asyncio.create_task(verifier.run())
    try:
        async with asyncio.timeout(10):
            while not done():  # type: ignore[operator]
                await asyncio.sleep(0.01)
    finally:
        task.cancel()


async def test_the_verdicts_of_endpoints_no_data_plane_uses_are_forgotten(
    mesh: Mesh,
) -> None:
    ports, ca = mesh.ports, mesh.ca
    clock = Clock()
    verifier = EndpointVerifier(trust_domain=TRUST, clock=clock)
    verifier.use_certificate(gateway_certificate(ca))
    honest = endpoint(ports["honest"])
    verifier.allows(honest)
    await verifier.settle()
    verifier.use("web/gw", [honest])
    await run_until(verifier, clock, lambda: clock.now >= verifier.retry_s * 2)
    assert verifier.allows(honest)
    # the Gateway is gone: at the next round its endpoints' verdicts go too
    verifier.use("web/gw", [])
    start = clock.now
    await run_until(verifier, clock, lambda: clock.now >= start + verifier.retry_s * 2)
    assert not verifier.allows(honest)
    assert verifier.unchecked()
