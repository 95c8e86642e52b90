"""An AuthPolicy's JWT providers: JWKS documents turned into the public keys the
data plane verifies tokens with.

    jwt:
      providers:
      - issuer: https://issuer.example.com   # the token's iss must be this
        audiences: [api]                     # its aud must hold one (none: aud unchecked)
        jwks:                                # a JWKS document (RFC 7517) under key jwks.json
          secretRef: {name: issuer-keys}     # or configMapRef: {name: ...}
        claimsToHeaders:                     # claims copied onto the request
        - {claim: sub, header: X-User}

Each JWK becomes a PEM public key here, with the `cryptography` library, so
that the data plane only loads PEM and verifies (OpenSSL through FFI): RSA
(RS256/384/512), EC P-256 / P-384 (ES256 / ES384) and OKP Ed25519 (EdDSA).
A key's `alg`, when given, must be one of those and fit its type; without it,
the type decides (RSA: RS256). Keys for encryption (`use: enc`) are skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from typing import Any, TypeGuard

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from agc_controller.translate.model import JwtKey, JwtProvider
from agc_controller.translate.pem import InvalidMaterial, decoded_data
from agc_controller.translate.snapshot import Obj
from agc_controller.translate.validate import is_token

JWKS_KEY = "jwks.json"
PROVIDERS_MAX = 8
KEYS_MAX = 32
AUDIENCES_MAX = 16
CLAIMS_MAX = 16
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512"})
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384"}
_EC_CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}


def parse_provider(
    config: Any, field: str, jwks: str | None
) -> tuple[JwtProvider | None, str | None]:
    """One provider of spec.jwt.providers, with `jwks` the text of its JWKS
    document (None: the reference could not be read; the caller said why)."""
    if not isinstance(config, dict):
        return None, f"{field} must be an object"
    issuer = config.get("issuer")
    if not isinstance(issuer, str) or not 1 <= len(issuer) <= 512 or not issuer.isprintable():
        return None, f"{field}.issuer must be 1-512 printable characters"
    audiences = config.get("audiences") or []
    if (
        not isinstance(audiences, list)
        or len(audiences) > AUDIENCES_MAX
        or not all(isinstance(a, str) and 0 < len(a) <= 512 for a in audiences)
    ):
        return None, f"{field}.audiences must list at most {AUDIENCES_MAX} strings"
    claims = config.get("claimsToHeaders") or []
    if not isinstance(claims, list) or len(claims) > CLAIMS_MAX:
        return None, f"{field}.claimsToHeaders must list at most {CLAIMS_MAX} entries"
    pairs = []
    for i, entry in enumerate(claims):
        claim = entry.get("claim") if isinstance(entry, dict) else None
        header = entry.get("header") if isinstance(entry, dict) else None
        if not (isinstance(claim, str) and 0 < len(claim) <= 256 and is_token(header)):
            return None, f"{field}.claimsToHeaders[{i}] needs a claim and a header name"
        pairs.append((claim, header))
    if jwks is None:
        return None, f"{field}.jwks has no readable {JWKS_KEY}"
    keys, problem = _keys(jwks, f"{field}.jwks")
    if problem:
        return None, problem
    return JwtProvider(
        issuer=issuer,
        audiences=tuple(audiences),
        keys=keys,
        claims_to_headers=tuple(pairs),
    ), None


def _keys(text: str, field: str) -> tuple[tuple[JwtKey, ...], str | None]:
    try:
        document = json.loads(text)
    except ValueError:
        return (), f"{field}: {JWKS_KEY} is not JSON"
    jwks = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(jwks, list) or not jwks:
        return (), f"{field}: {JWKS_KEY} has no keys"
    keys = []
    for i, jwk in enumerate(jwks):
        if isinstance(jwk, dict) and jwk.get("use") == "enc":
            continue
        key, problem = _key(jwk, f"{field} key {i}")
        if problem:
            return (), problem
        if key is not None:
            keys.append(key)
    if not keys or len(keys) > KEYS_MAX:
        return (), f"{field}: {JWKS_KEY} must hold 1 to {KEYS_MAX} signing keys"
    return tuple(keys), None


def _b64url(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _key(jwk: Any, field: str) -> tuple[JwtKey | None, str | None]:
    if not isinstance(jwk, dict):
        return None, f"{field} is not an object"
    kty, alg, kid = jwk.get("kty"), jwk.get("alg"), jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        return None, f"{field}: kid must be a string"
    try:
        if kty == "RSA":
            alg = alg or "RS256"
            if alg not in _RSA_ALGS:
                return None, f"{field}: alg {str(alg)[:16]!r} does not fit an RSA key"
            public: Any = rsa.RSAPublicNumbers(
                int.from_bytes(_b64url(jwk.get("e")), "big"),
                int.from_bytes(_b64url(jwk.get("n")), "big"),
            ).public_key()
        elif kty == "EC" and jwk.get("crv") in _EC_CURVES:
            expected = _EC_ALGS[jwk["crv"]]
            if (alg or expected) != expected:
                return None, f"{field}: alg {str(alg)[:16]!r} does not fit curve {jwk['crv']}"
            alg = expected
            public = ec.EllipticCurvePublicNumbers(
                int.from_bytes(_b64url(jwk.get("x")), "big"),
                int.from_bytes(_b64url(jwk.get("y")), "big"),
                _EC_CURVES[jwk["crv"]],
            ).public_key()
        elif kty == "OKP" and jwk.get("crv") == "Ed25519":
            if (alg or "EdDSA") != "EdDSA":
                return None, f"{field}: alg {str(alg)[:16]!r} does not fit an Ed25519 key"
            alg = "EdDSA"
            public = ed25519.Ed25519PublicKey.from_public_bytes(_b64url(jwk.get("x")))
        else:
            return None, (
                f"{field}: kty {str(kty)[:16]!r} is not supported (RSA, EC P-256/P-384, "
                "OKP Ed25519)"
            )
    except (ValueError, TypeError, binascii.Error):
        return None, f"{field}: its key material is malformed"
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return JwtKey(kid=kid, alg=alg, pem=pem), None


def is_jwks_url(value: object) -> TypeGuard[str]:
    """An https URL with a host, of visible ASCII (a JWKS the controller fetches)."""
    if not isinstance(value, str) or len(value) > 2048 or not value.isascii():
        return False
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in value):
        return False
    parts = urllib.parse.urlsplit(value)
    return parts.scheme == "https" and bool(parts.hostname) and not parts.fragment


def jwks_urls(policy: Obj) -> list[str]:
    """The JWKS URLs an AuthPolicy's JWT providers name (well formed or not)."""
    config = (policy.get("spec") or {}).get("jwt")
    providers = config.get("providers") if isinstance(config, dict) else None
    if not isinstance(providers, list):
        return []
    return [
        url
        for provider in providers
        if isinstance(provider, dict)
        and isinstance(jwks := provider.get("jwks"), dict)
        and isinstance(url := jwks.get("url"), str)
    ]


def jwks_text(source: Obj | None, *, base64_data: bool) -> str | None:
    """The JWKS document of a Secret (`base64_data`) or ConfigMap, if it has one."""
    if source is None:
        return None
    try:
        return decoded_data(source, JWKS_KEY, base64_data=base64_data)
    except InvalidMaterial:
        return None
