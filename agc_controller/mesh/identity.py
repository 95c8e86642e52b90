"""The gateway's mesh identity: a workload certificate from istiod, kept current.

`WorkloadIdentity.run` obtains a certificate for one SPIFFE ID the way Istio's
own agent does (a fresh key and CSR for each certificate, a service-account
token with the `istio-ca` audience, istiod's certificate service: ca.py), hands
it to `on_change`, and renews it at half its lifetime (Istio's own default
grace ratio), so a certificate is replaced long before anything could see it
expire. It re-reads the mesh's root certificates every `roots_poll_s`: new
roots (a CA rotation) renew the certificate at once, and the roots travel with
it, so whoever verifies peers follows the mesh's trust bundle.

A failure keeps the last certificate (it stays valid until it expires), is
reported in `problem`, and is tried again with a doubling delay (1 s to 60 s).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agc_controller.core.clock import Clock
from agc_controller.mesh.errors import MeshError

log = structlog.get_logger(__name__)

# the audience istiod accepts tokens for (Istio's TOKEN_AUDIENCES default)
TOKEN_AUDIENCE = "istio-ca"
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The identity Istio gives a workload running as `service_account`."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


class Secret(Protocol):
    """Something read fresh at each use: a token, the mesh's root certificates."""

    async def __call__(self) -> str: ...


class Signer(Protocol):
    """The mesh's CA (ca.IstioCA): a signed chain, the leaf first, for a CSR."""

    async def sign(
        self, csr_pem: str, *, token: str, roots_pem: str, validity_s: int
    ) -> list[str]: ...


@attrs.frozen
class WorkloadCertificate:
    spiffe_id: str
    # PEM: the leaf (whose only name is spiffe_id) first, then its issuers
    chain_pem: str
    # PEM (PKCS#8) of the leaf's private key, made here and never sent anywhere
    key_pem: str = attrs.field(repr=False)
    # PEM: the mesh's root certificates the chain was checked against
    roots_pem: str
    # the leaf's validity, seconds since the epoch
    not_before: float
    not_after: float

    @property
    def renew_at(self) -> float:
        return self.not_before + (self.not_after - self.not_before) / 2


def new_key_and_csr(identity: str) -> tuple[str, str]:
    """A P-256 key and a CSR naming only `identity` (a URI SAN, as Istio's agent asks)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem.decode(), csr.public_bytes(serialization.Encoding.PEM).decode()


def uri_names(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return san.value.get_values_for_type(x509.UniformResourceIdentifier)


def check_chain(chain_pem: list[str], identity: str, roots_pem: str) -> x509.Certificate:
    """The leaf of `chain_pem`, once it names `identity` and chains to one of the roots."""
    try:
        chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in chain_pem]
        roots = x509.load_pem_x509_certificates(roots_pem.encode())
    except ValueError as e:
        raise MeshError(f"istiod's certificate chain does not parse: {e}") from None
    leaf = chain[0]
    if uri_names(leaf) != [identity]:
        raise MeshError(f"istiod signed a certificate for {uri_names(leaf)}, not [{identity!r}]")
    for child, parent in itertools.pairwise(chain):
        if not _is_issued_by(child, parent):
            raise MeshError("istiod's certificate chain is out of order (an issuer is missing)")
    top = chain[-1]
    if not any(_is_issued_by(top, root) for root in roots):
        raise MeshError("istiod's certificate chain does not lead to the mesh's root certificates")
    return leaf


def _is_issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child == parent:
        return True
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@attrs.define
class WorkloadIdentity:
    """Keeps the workload certificate of one SPIFFE ID current (module doc)."""

    spiffe_id: str
    ca: Signer
    # a service-account token with the istio-ca audience, for that service account
    token: Secret
    # the mesh's root certificates (PEM), e.g. from the istio-ca-root-cert ConfigMap
    roots: Secret
    clock: Clock
    # called with every new certificate, before the previous one is half spent
    on_change: Callable[[WorkloadCertificate], Awaitable[None]]
    # called when `problem` changes (appears, changes or clears)
    on_problem: Callable[[], None] = lambda: None
    # the lifetime asked for; istiod may grant less (its max-workload-cert-ttl)
    validity_s: int = 24 * 3600
    roots_poll_s: float = 60.0
    # the certificate in use; None until the first one is signed
    current: WorkloadCertificate | None = None
    # why the last attempt failed (cleared by the next success)
    problem: str | None = None

    async def renew(self, roots: str) -> WorkloadCertificate:
        """A new certificate, checked against `roots` (the mesh's root certificates)."""
        key_pem, csr_pem = new_key_and_csr(self.spiffe_id)
        chain = await self.ca.sign(
            csr_pem, token=await self.token(), roots_pem=roots, validity_s=self.validity_s
        )
        leaf = check_chain(chain, self.spiffe_id, roots)
        return WorkloadCertificate(
            spiffe_id=self.spiffe_id,
            chain_pem="".join(pem if pem.endswith("\n") else pem + "\n" for pem in chain),
            key_pem=key_pem,
            roots_pem=roots,
            not_before=leaf.not_valid_before_utc.timestamp(),
            not_after=leaf.not_valid_after_utc.timestamp(),
        )

    async def run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            try:
                roots = await self.roots()
                if self._due(roots):
                    self.current = await self.renew(roots)
                    log.info(
                        "mesh_certificate_renewed",
                        spiffe_id=self.spiffe_id,
                        not_after=self.current.not_after,
                    )
                    await self.on_change(self.current)
                self._set_problem(None)
                delay = RETRY_MIN_S
                await self.clock.sleep(self._wait())
            except MeshError as e:
                self._set_problem(str(e))
                log.warning("mesh_certificate_failed", spiffe_id=self.spiffe_id, error=str(e))
                await self.clock.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _set_problem(self, problem: str | None) -> None:
        if problem != self.problem:
            self.problem = problem
            self.on_problem()

    def _due(self, roots: str) -> bool:
        return (
            self.current is None
            or self.clock.wall() >= self.current.renew_at
            or roots != self.current.roots_pem
        )

    def _wait(self) -> float:
        assert self.current is not None
        return max(0.0, min(self.current.renew_at - self.clock.wall(), self.roots_poll_s))
