"""The mesh identity: istiod's messages, the checks on what it signs, renewal."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agc_controller.mesh import MeshError, WorkloadCertificate, WorkloadIdentity, check_chain
from agc_controller.mesh.ca import decode_response, encode_request
from agc_controller.mesh.identity import new_key_and_csr, uri_names
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
