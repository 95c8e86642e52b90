"""Certificate material checks (pure): is a Secret a usable TLS pair, is a CA bundle PEM.

Parsing happens here, in translation, so a malformed Secret becomes a precise
condition instead of a data plane that fails to load it.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from agc_controller.translate.snapshot import Obj

TLS_SECRET_TYPE = "kubernetes.io/tls"


class InvalidMaterial(ValueError):
    """The message says what is wrong, fit for a condition."""


def decoded_data(obj: Obj, key: str, *, base64_data: bool) -> str:
    """The text under `key` of a Secret's (`base64_data`) or ConfigMap's data."""
    data = obj.get("data") or {}
    if key not in data:
        raise InvalidMaterial(f"it has no {key!r} key")
    raw = data[key]
    if not isinstance(raw, str):
        raise InvalidMaterial(f"its {key!r} key is not text")
    if base64_data:
        try:
            return base64.b64decode(raw, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise InvalidMaterial(f"its {key!r} key is not valid base64 text") from e
    return str(raw)


def tls_pair(secret: Obj) -> tuple[str, str]:
    """(certificate chain PEM, private key PEM) of a `kubernetes.io/tls` Secret."""
    if secret.get("type") != TLS_SECRET_TYPE:
        raise InvalidMaterial(f"its type is {secret.get('type')!r}, not {TLS_SECRET_TYPE!r}")
    cert_pem = decoded_data(secret, "tls.crt", base64_data=True)
    key_pem = decoded_data(secret, "tls.key", base64_data=True)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError as e:
        raise InvalidMaterial("its 'tls.crt' is not a PEM certificate chain") from e
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as e:
        raise InvalidMaterial("its 'tls.key' is not an unencrypted PEM private key") from e
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise InvalidMaterial("its private key type is not supported (use RSA, ECDSA or Ed25519)")
    leaf_public = (
        chain[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    key_public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if leaf_public != key_public:
        raise InvalidMaterial("its 'tls.key' does not match the certificate in 'tls.crt'")
    return cert_pem, key_pem


def ca_bundle(obj: Obj) -> str:
    """The `ca.crt` PEM bundle of a ConfigMap (plain data) or a Secret (base64 data)."""
    pem = decoded_data(obj, "ca.crt", base64_data=obj.get("kind") == "Secret")
    if not pem.strip():
        raise InvalidMaterial("its 'ca.crt' is empty")
    try:
        x509.load_pem_x509_certificates(pem.encode())
    except ValueError as e:
        raise InvalidMaterial("its 'ca.crt' is not a PEM certificate bundle") from e
    return pem
