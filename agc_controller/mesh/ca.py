"""Istio's certificate service: a CSR and a service-account token in, a signed chain out.

This is the call Istio's own agent makes for every sidecar
(`istio.v1.auth.IstioCertificateService/CreateCertificate` on istiod's secure
gRPC port, 15012): istiod checks the bearer token with a TokenReview, checks
that every identity the CSR asks for is the token's own
(`spiffe://<trust domain>/ns/<namespace>/sa/<service account>`), and signs the
CSR's public key. The private key never leaves the process that made the CSR,
and nothing here ever sees the mesh CA's key.

The channel is TLS to istiod, verified against the mesh's root certificates
(the `istio-ca-root-cert` ConfigMap Istio publishes into every namespace) with
istiod's service name as the expected server name.

The two messages are small enough to encode by hand (field numbers from
Istio's security/v1alpha1/ca.proto): the request is `csr` (1, string) and
`validity_duration` (3, int64 seconds); the response is `cert_chain`
(1, repeated string, the leaf first).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import grpc.aio

from agc_controller.mesh.errors import MeshError

CREATE_CERTIFICATE = "/istio.v1.auth.IstioCertificateService/CreateCertificate"
# how long one signing call may take, connection included
CALL_TIMEOUT_S = 10.0
# gRPC status codes time may fix: istiod restarting, overloaded or not yet up
_TEMPORARY = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}


class IstioCA:
    """A client of one istiod's certificate service."""

    def __init__(self, address: str, *, server_name: str) -> None:
        # host:port of istiod's secure gRPC port
        self.address = address
        # the name istiod's serving certificate carries (istiod.<namespace>.svc)
        self.server_name = server_name

    async def sign(self, csr_pem: str, *, token: str, roots_pem: str, validity_s: int) -> list[str]:
        """The signed chain (PEM certificates, the leaf first) for `csr_pem`."""
        credentials = grpc.ssl_channel_credentials(root_certificates=roots_pem.encode())
        options = [("grpc.ssl_target_name_override", self.server_name)]
        async with grpc.aio.secure_channel(self.address, credentials, options=options) as channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                CREATE_CERTIFICATE
            )
            try:
                answer = await call(
                    encode_request(csr_pem, validity_s),
                    metadata=(("authorization", f"Bearer {token}"),),
                    timeout=CALL_TIMEOUT_S,
                )
            except grpc.aio.AioRpcError as e:
                code = e.code()
                raise MeshError(
                    f"istiod at {self.address} refused the certificate request: "
                    f"{code.name}: {e.details() or 'no details'}",
                    temporary=code in _TEMPORARY,
                ) from None
        chain = decode_response(answer)
        if not chain:
            raise MeshError(f"istiod at {self.address} answered with no certificate")
        return chain


def encode_request(csr_pem: str, validity_s: int) -> bytes:
    csr = csr_pem.encode()
    return b"\x0a" + _varint(len(csr)) + csr + b"\x18" + _varint(validity_s)


def decode_response(data: bytes) -> list[str]:
    """The `cert_chain` strings of an IstioCertificateResponse; other fields are skipped."""
    return [value.decode() for number, value in _length_delimited(data) if number == 1]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise MeshError("istiod's answer is not a valid protobuf message")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def _length_delimited(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, bytes) of each length-delimited field; others are skipped."""
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, at = _read_varint(data, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            size, at = _read_varint(data, at)
            if at + size > len(data):
                raise MeshError("istiod's answer is not a valid protobuf message")
            yield number, data[at : at + size]
            at += size
        else:
            raise MeshError("istiod's answer is not a valid protobuf message")
