"""Certificates for the local control plane.

One CA signs the apiserver's serving certificate and every client certificate
(admin, kube-controller-manager, and a test node's kubelet, kube-proxy and
kube-scheduler). Keys are ECDSA P-256: fast to generate and accepted by every
Kubernetes component. Files are written 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)


@attrs.frozen
class KeyPair:
    cert: Path
    key: Path


@attrs.frozen
class ClusterPki:
    """Paths of every certificate and key the control plane uses."""

    ca: KeyPair
    apiserver: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    # the service-account token signing key (private) and its public half
    service_account_key: Path
    service_account_pub: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    is_ca: bool,
    now: datetime.datetime,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(signer, hashes.SHA256())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def ensure_cluster_pki(
    directory: Path, *, service_cluster_ip: str, node_address: str | None = None
) -> ClusterPki:
    """Create the PKI under `directory` unless a complete one is already there.

    `node_address`, when pods reach the apiserver at an address of the host's
    (a real node's pod network), is one more name of the apiserver's certificate.
    """
    directory.mkdir(parents=True, exist_ok=True)

    def pair(name: str) -> KeyPair:
        return KeyPair(cert=directory / f"{name}.crt", key=directory / f"{name}.key")

    pki = ClusterPki(
        ca=pair("ca"),
        apiserver=pair("apiserver"),
        admin=pair("admin"),
        controller_manager=pair("controller-manager"),
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )
    wanted = [pki.ca, pki.apiserver, pki.admin, pki.controller_manager]
    if all(p.cert.exists() and p.key.exists() for p in wanted) and pki.service_account_key.exists():
        return pki

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("agc-controller-local-ca")
    ca_cert = _issue(
        subject=ca_name,
        public_key=ca_key.public_key(),
        issuer=ca_name,
        signer=ca_key,
        is_ca=True,
        now=now,
        usages=[],
        sans=[],
    )
    pki.ca.cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pki.ca.key, _key_pem(ca_key))

    leaves: list[tuple[KeyPair, x509.Name, list[x509.ObjectIdentifier], list[x509.GeneralName]]] = [
        (
            pki.apiserver,
            _name("kube-apiserver"),
            [ExtendedKeyUsageOID.SERVER_AUTH],
            [
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes"),
                x509.DNSName("kubernetes.default"),
                x509.DNSName("kubernetes.default.svc"),
                x509.DNSName("kubernetes.default.svc.cluster.local"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address(service_cluster_ip)),
                *([x509.IPAddress(ipaddress.ip_address(node_address))] if node_address else []),
            ],
        ),
        (pki.admin, _name("agc-admin", "system:masters"), [ExtendedKeyUsageOID.CLIENT_AUTH], []),
        (
            pki.controller_manager,
            _name("system:kube-controller-manager"),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            [],
        ),
    ]
    for target, subject, usages, sans in leaves:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(
            subject=subject,
            public_key=key.public_key(),
            issuer=ca_name,
            signer=ca_key,
            is_ca=False,
            now=now,
            usages=usages,
            sans=sans,
        )
        target.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(target.key, _key_pem(key))

    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_private(pki.service_account_key, _key_pem(sa_key))
    pki.service_account_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def client_certificate(pki: ClusterPki, name: str, *, user: str, group: str | None) -> KeyPair:
    """A client certificate for `user` (in `group`) signed by the cluster CA; made once."""
    pair = KeyPair(
        cert=pki.ca.cert.with_name(f"{name}.crt"), key=pki.ca.key.with_name(f"{name}.key")
    )
    if pair.cert.exists() and pair.key.exists():
        return pair
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki.ca.key} is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(
        subject=_name(user, group),
        public_key=key.public_key(),
        issuer=ca_cert.subject,
        signer=ca_key,
        is_ca=False,
        now=datetime.datetime.now(datetime.UTC),
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        sans=[],
    )
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pair.key, _key_pem(key))
    return pair
