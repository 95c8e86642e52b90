"""The mesh identity: istiod's messages, the checks on what it signs, renewal, where
the roots come from, and the data-plane agent's own identity (its certificate to
NGINX, its state in the reports)."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agc_controller.core.timefmt import rfc3339
from agc_controller.dataplane import agent as agent_module
from agc_controller.dataplane.agent import Agent, AgentMesh
from agc_controller.dataplane.config import (
    APPLIED_ANNOTATION,
    Manifest,
    Report,
    encode_manifest,
)
from agc_controller.mesh import (
    MeshError,
    RootsFile,
    WorkloadCertificate,
    WorkloadIdentity,
    check_chain,
)
from agc_controller.mesh.ca import decode_response, encode_request
from agc_controller.mesh.identity import new_key_and_csr, uri_names
from agc_controller.providers.local.dynamic import StaticNeeds
from agc_controller.translate.graph.backends import in_mesh

ID = "spiffe://cluster.local/ns/web/sa/gateway"
EPOCH = 1_700_000_000.0


class CA:
    """A mesh CA for the tests: signs a CSR's public key and SANs, like istiod."""

    def __init__(
        self, name: str = "mesh-root", *, issuer: CA | None = None, start: float = EPOCH
    ) -> None:
        # its certificates' notBefore (seconds since the epoch)
        self.start = start
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
        signer = issuer or self
        self.cert = _certificate(
            self.name, self.key.public_key(), signer, ca=True, lifetime_s=365 * 86400
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign_csr(self, csr_pem: str, lifetime_s: float) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        leaf = _certificate(
            x509.Name([]), public_key, self, ca=False, lifetime_s=lifetime_s, san=san
        )
        return leaf.public_bytes(serialization.Encoding.PEM).decode()


def _certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signer: CA,
    *,
    ca: bool,
    lifetime_s: float,
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    start = datetime.datetime.fromtimestamp(signer.start, datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(seconds=lifetime_s))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=True)
    return builder.sign(signer.key, hashes.SHA256())


def test_the_request_encodes_csr_and_validity_with_istios_field_numbers() -> None:
    data = encode_request("CSR", 86400)
    # field 1 (string) "CSR", then field 3 (varint) 86400
    assert data == b"\x0a\x03CSR\x18\x80\xa3\x05"


def test_the_response_yields_every_chain_entry_and_skips_other_fields() -> None:
    leaf, root = b"-----leaf-----", b"-----root-----"
    data = (
        b"\x0a" + bytes([len(leaf)]) + leaf
        + b"\x10\x96\x01"  # an unknown varint field
        + b"\x12\x02xx"  # an unknown string field
        + b"\x0a" + bytes([len(root)]) + root
    )  # fmt: skip
    assert decode_response(data) == [leaf.decode(), root.decode()]


def test_a_truncated_response_is_an_error_not_a_crash() -> None:
    with pytest.raises(MeshError, match="not a valid protobuf"):
        decode_response(b"\x0a\x10short")


def test_the_csr_names_only_the_identity() -> None:
    key_pem, csr_pem = new_key_and_csr(ID)
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [ID]
    assert "PRIVATE KEY" in key_pem


def test_check_chain_accepts_the_identity_through_an_intermediate() -> None:
    root = CA("root")
    intermediate = CA("intermediate", issuer=root)
    _, csr = new_key_and_csr(ID)
    chain = [intermediate.sign_csr(csr, 3600), intermediate.pem, root.pem]
    leaf = check_chain(chain, ID, root.pem)
    assert uri_names(leaf) == [ID]


def test_check_chain_refuses_another_identity_or_another_ca() -> None:
    root, stranger = CA("root"), CA("stranger")
    _, csr = new_key_and_csr("spiffe://cluster.local/ns/web/sa/other")
    with pytest.raises(MeshError, match=r"not \[.*sa/gateway"):
        check_chain([root.sign_csr(csr, 3600)], ID, root.pem)
    _, csr = new_key_and_csr(ID)
    with pytest.raises(MeshError, match="does not lead to the mesh's root"):
        check_chain([stranger.sign_csr(csr, 3600)], ID, root.pem)


@pytest.mark.parametrize(
    ("labels", "meshed"),
    [
        ({"istio-injection": "enabled"}, True),
        ({"istio-injection": "disabled", "istio.io/rev": "canary"}, False),
        ({"istio.io/rev": "canary"}, True),
        ({"istio.io/rev": ""}, False),
        ({}, False),
    ],
)
def test_namespaces_in_the_mesh_follow_istios_injection_labels(
    labels: dict[str, str], meshed: bool
) -> None:
    assert in_mesh({"metadata": {"name": "ns", "labels": labels}}) is meshed
    assert in_mesh(None) is False


class Clock:
    def __init__(self) -> None:
        self.now = EPOCH
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeIstiod:
    def __init__(self, ca: CA, lifetime_s: float) -> None:
        self.ca, self.lifetime_s = ca, lifetime_s
        self.failures = 0
        self.tokens: list[str] = []
        # the identity's `problem` when each request came in
        self.problems: list[str | None] = []
        self.identity: WorkloadIdentity | None = None

    async def sign(self, csr_pem: str, *, token: str, roots_pem: str, validity_s: int) -> list[str]:
        self.tokens.append(token)
        self.problems.append(self.identity.problem if self.identity else None)
        if self.failures:
            self.failures -= 1
            raise MeshError("istiod at test refused the certificate request: UNAVAILABLE")
        return [self.ca.sign_csr(csr_pem, self.lifetime_s)]


async def test_renews_at_half_life_follows_new_roots_and_backs_off_on_failure() -> None:
    ca = CA()
    roots = [ca.pem]
    istiod = FakeIstiod(ca, lifetime_s=3600)
    clock = Clock()
    issued: list[WorkloadCertificate] = []

    async def token() -> str:
        return f"token-{len(istiod.tokens)}"

    async def read_roots() -> str:
        return roots[0]

    async def delivered(certificate: WorkloadCertificate) -> None:
        issued.append(certificate)

    identity = WorkloadIdentity(
        spiffe_id=ID,
        ca=istiod,
        token=token,
        roots=read_roots,
        clock=clock,
        on_change=delivered,
        roots_poll_s=600,
    )
    istiod.identity = identity
    problem_changes: list[str | None] = []
    identity.on_problem = lambda: problem_changes.append(identity.problem)
    task = asyncio.create_task(identity.run())

    async def until(condition: object) -> None:
        async with asyncio.timeout(5):
            while not condition():  # type: ignore[operator]
                await asyncio.sleep(0)

    await until(lambda: len(issued) == 1)
    first = issued[0]
    assert first.spiffe_id == ID
    assert first.renew_at == EPOCH + 1800
    # it polls the roots every 600 s, and renews at half life, not before
    await until(lambda: clock.now >= EPOCH + 1800 and len(issued) == 2)
    assert clock.sleeps[:3] == [600, 600, 600]
    assert issued[1].key_pem != first.key_pem  # a fresh key for every certificate

    # the mesh's CA rotates: the next poll renews under the new roots
    new_ca = CA("new-root")
    istiod.ca, roots[0] = new_ca, new_ca.pem
    await until(lambda: len(issued) == 3)
    assert issued[2].roots_pem == new_ca.pem

    # istiod down: the last certificate stays, the problem is told, the delay doubles
    istiod.failures = 3
    before = len(clock.sleeps)
    clock.now = issued[2].renew_at
    await until(lambda: len(issued) == 4)
    assert clock.sleeps[before : before + 3] == [1.0, 2.0, 4.0]
    assert istiod.problems[-1] == "istiod at test refused the certificate request: UNAVAILABLE"
    assert identity.problem is None  # cleared by the success
    # told once when it appeared (the same problem thrice) and once when it cleared
    assert problem_changes == [istiod.problems[-1], None]
    assert len(set(istiod.tokens)) == len(istiod.tokens)  # a token read for every request
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_roots_from_a_file_are_read_afresh_and_missing_or_empty_ones_say_why(
    tmp_path: Path,
) -> None:
    path = tmp_path / "root-cert.pem"
    roots = RootsFile(path)
    with pytest.raises(MeshError, match=r"root-cert.pem \(No such file or directory\): istiod"):
        await roots()
    path.write_text(" \n")
    with pytest.raises(MeshError, match=r"\(the file is empty\).*istio-ca-root-cert"):
        await roots()
    ca = CA()
    path.write_text(ca.pem)
    assert await roots() == ca.pem
    rotated = CA("new-root")
    path.write_text(rotated.pem)
    assert await roots() == rotated.pem


class ManualClock(Clock):
    """Sleeps last until the test moves `now` past their end."""

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        deadline = self.now + seconds
        while self.now < deadline:
            await asyncio.sleep(0.001)


class FakeNginx:
    """The agent's NginxInstance: takes certificates, or refuses them while `down`."""

    def __init__(self) -> None:
        self.reloads = 0
        self.down = False
        self.certificates: list[tuple[str, str]] = []

    def prepare(self) -> None:
        pass

    async def stop(self, *, drain: float) -> None:
        pass

    async def set_mesh_certificate(self, chain_pem: str, key_pem: str) -> None:
        if self.down:
            raise OSError("connection refused")
        self.certificates.append((chain_pem, key_pem))


class FakeInformer:
    """The agent's informer: hands it the configuration Secret once `deliver` is set."""

    def __init__(self, agent: Agent, secret: dict[str, Any]) -> None:
        self.agent, self.secret = agent, secret
        self.deliver = asyncio.Event()
        self.store = self

    def get(self, key: str) -> dict[str, Any]:
        return self.secret

    async def run(self) -> None:
        await self.deliver.wait()
        self.agent.on_add(self.secret)
        await asyncio.Event().wait()


class ReportApi:
    """The apiserver as far as the agent's reports go: every PATCH's report."""

    def __init__(self) -> None:
        self.reports: list[Report] = []

    async def call_api(self, path: str, method: str, **kwargs: Any) -> Any:
        assert method == "PATCH"
        annotations = kwargs["body"]["metadata"]["annotations"]
        report = Report.from_annotations(annotations)
        assert report is not None
        # the fields written, to tell "none" from "empty"
        self.reports.append(report)
        self.written = json.loads(annotations[APPLIED_ANNOTATION])
        return {}


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)


@attrs.define
class MeshAgent:
    """A data-plane agent with mesh mTLS, and the fakes around it."""

    agent: Agent
    ca: CA
    istiod: FakeIstiod
    clock: ManualClock
    api: ReportApi
    nginx: FakeNginx
    informer: FakeInformer
    # the mounted roots: not there until the test writes them
    roots_file: Path
    manifest: Manifest

    @property
    def certificate(self) -> WorkloadCertificate:
        assert self.agent._mesh is not None
        assert self.agent._mesh.current is not None
        return self.agent._mesh.current


def mesh_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MeshAgent:
    ca = CA()
    istiod = FakeIstiod(ca, lifetime_s=3600)
    roots_file = tmp_path / "root-cert.pem"
    clock = ManualClock()
    api = ReportApi()

    async def token() -> str:
        return "pod-token"

    async def program(*args: Any, **kwargs: Any) -> None:
        pass  # NGINX takes the configuration

    monkeypatch.setattr(agent_module, "program", program)
    agent = Agent(
        cast(Any, api),
        namespace="web",
        secret="agc-gw",
        pod="agc-gw-1",
        state_dir=tmp_path,
        drain_seconds=0,
        mesh=AgentMesh(spiffe_id=AGENT_ID, ca=istiod, token=token, roots=RootsFile(roots_file)),
        clock=clock,
    )
    manifest = Manifest(needs=StaticNeeds(listens=(), backend_tls=(), mesh=True), shards={})
    secret = {"metadata": {"name": "agc-gw", "namespace": "web"}, "data": encode_manifest(manifest)}
    nginx, informer = FakeNginx(), FakeInformer(agent, secret)
    agent._nginx = cast(Any, nginx)
    agent._informer = cast(Any, informer)
    return MeshAgent(agent, ca, istiod, clock, api, nginx, informer, roots_file, manifest)


AGENT_ID = "spiffe://cluster.local/ns/web/sa/agc-gw"


async def test_the_agent_gives_nginx_its_own_certificate_and_reports_the_mesh_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = mesh_agent(tmp_path, monkeypatch)
    clock, ca, api, nginx = rig.clock, rig.ca, rig.api, rig.nginx
    stop = asyncio.Event()
    running = asyncio.create_task(rig.agent.run(stop))

    # no roots: the identity waits to try again; with no version handled, nothing is reported
    await until(lambda: clock.sleeps == [1.0])
    await asyncio.sleep(0.01)
    assert api.reports == []

    # the verdict on the version carries the problem
    rig.informer.deliver.set()
    await until(lambda: len(api.reports) == 1)
    first = api.reports[0]
    assert (first.version, first.accepted, first.pod) == (rig.manifest.version, True, "agc-gw-1")
    assert "istio-ca-root-cert" in first.mesh_problem
    assert (first.mesh_identity, first.mesh_expires) == ("", "")

    # istiod publishes the roots: the certificate goes to NGINX, and the same version is
    # reported again with it, the problem gone
    rig.roots_file.write_text(ca.pem)
    clock.now = ca.start = EPOCH + 1  # istiod signs from now on
    await until(lambda: bool(api.reports[-1].mesh_identity) and not api.reports[-1].mesh_problem)
    certificate = rig.certificate
    assert nginx.certificates == [(certificate.chain_pem, certificate.key_pem)]
    assert uri_names(x509.load_pem_x509_certificate(certificate.chain_pem.encode())) == [AGENT_ID]
    last = api.reports[-1]
    assert (last.version, last.accepted) == (rig.manifest.version, True)
    assert (last.mesh_identity, last.mesh_expires) == (AGENT_ID, rfc3339(EPOCH + 1 + 3600))
    assert "mesh_problem" not in api.written  # empty mesh fields are not written

    # renewal fails while the certificate is still good: the problem is reported beside it
    rig.istiod.failures = 1
    reported = len(api.reports)
    clock.now = certificate.renew_at
    await until(lambda: len(api.reports) > reported)
    failing = api.reports[-1]
    assert failing.mesh_problem == "istiod at test refused the certificate request: UNAVAILABLE"
    assert (failing.mesh_identity, failing.mesh_expires) == (AGENT_ID, last.mesh_expires)

    # NGINX cannot take the renewed certificate (restarting): logged, and reported as the
    # certificate NGINX is given when it starts
    nginx.down = True
    clock.now = ca.start = clock.now + 1
    await until(lambda: api.reports[-1].mesh_expires == rfc3339(clock.now + 3600))
    assert api.reports[-1].mesh_problem == ""
    assert len(nginx.certificates) == 1

    # a renewal on schedule, no problem before or after: it reaches NGINX and the report
    nginx.down = False
    clock.now = ca.start = rig.certificate.renew_at
    await until(lambda: api.reports[-1].mesh_expires == rfc3339(clock.now + 3600))
    assert nginx.certificates[1:] == [(rig.certificate.chain_pem, rig.certificate.key_pem)]

    stop.set()
    await running
