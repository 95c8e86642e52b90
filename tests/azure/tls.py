"""A throwaway CA-less TLS certificate for the ARM test server on 127.0.0.1.

The SDK's bearer-token policy refuses plain HTTP, as it should; the supported
way to talk to a private endpoint is to trust its certificate
(`connection_verify=<CA bundle>`), which is what the tests do with this
self-signed certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_pem(common_name: str, *, sans: list[x509.GeneralName]) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a self-signed ECDSA certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def server_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server SSL context for 127.0.0.1 and the path of the PEM clients must trust."""
    cert_pem, key_pem = make_pem(
        "arm-test-server", sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert_path, key_path = directory / "arm.crt", directory / "arm.key"
    cert_path.write_text(cert_pem)
    key_path.write_text(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
