"""PEM (a `kubernetes.io/tls` Secret) → the PKCS#12 ARM wants for sslCertificates.

ARM only accepts listener certificates as base64 PFX with a password, and never
returns them: a certificate is named after a digest of its PEM (see
listeners.py), so "already uploaded" is a name comparison and the PFX (whose
encryption salt is random) is built only for certificates ARM does not have.
The password protects the key in transit only; a fresh one per upload.

The PFX is the kind AGIC uploads, which Application Gateway has always taken:
keys and certificates under PBE-SHA1-3DES, a SHA-1 MAC, and a hex password
(Application Gateway has refused AES-256 PFX files and passwords with some
punctuation before).
"""

from __future__ import annotations

import base64
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from agc_controller.translate.model import Certificate


def encode_pfx(certificate: Certificate) -> tuple[str, str]:
    """(base64 PKCS#12 data, password) for one certificate chain and its key."""
    chain = x509.load_pem_x509_certificates(certificate.cert_pem.encode())
    key = serialization.load_pem_private_key(certificate.key_pem.encode(), password=None)
    password = secrets.token_hex(16)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())
        .build(password.encode())
    )
    data = pkcs12.serialize_key_and_certificates(
        name=certificate.secret.name.encode(),
        key=key,  # type: ignore[arg-type]
        cert=chain[0],
        cas=chain[1:] or None,
        encryption_algorithm=encryption,
    )
    return base64.b64encode(data).decode(), password


def der_certificates(pem_bundle: str) -> list[str]:
    """Each certificate of a PEM bundle as base64 DER (ARM's `.cer` data)."""
    return [
        base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        for cert in x509.load_pem_x509_certificates(pem_bundle.encode())
    ]
