"""The delivery format between the controller and the data-plane agents (no apiserver
needed): what the encoders write, the decoders give back exactly, or refuse."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import random
import re
from typing import Any

import pytest

from agc_controller.core.keys import ObjectKey
from agc_controller.dataplane.codec import DecodeError
from agc_controller.dataplane.config import (
    APPLIED_ANNOTATION,
    COMPRESS_ABOVE,
    MANIFEST_KEY,
    SHARD_KEY,
    SHARDS,
    ConfigTooLarge,
    Manifest,
    Report,
    decode_manifest,
    decode_shard,
    digest,
    encode_manifest,
    encode_shard,
    shard_document,
    shard_name,
    shard_of,
)
from agc_controller.dataplane.manifests import object_name
from agc_controller.providers.local.dynamic import Listen, StaticNeeds
from agc_controller.translate.model import BackendTLS, Certificate, SubjectAltName

NEEDS = StaticNeeds(
    listens=(Listen(port=80, https=False), Listen(port=443, https=True)),
    backend_tls=(
        BackendTLS(sni="a.example.com", ca_pem=None),
        BackendTLS(
            sni="b.example.com",
            ca_pem="-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
            subject_alt_names=(SubjectAltName(type="URI", value="spiffe://b"),),
            client_certificate=Certificate(
                secret=ObjectKey("Secret", "ns", "client"), cert_pem="CERT", key_pem="KEY"
            ),
        ),
    ),
)
D1, D2 = "1" * 64, "2" * 64


def secret(data: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": "agc-gw"}, "data": data}


def parts_in(shard: int, count: int, text: bytes = b'{"rules":["x"]}') -> dict[str, bytes]:
    """`count` parts whose names shard_of puts in `shard`."""
    names = (f"h:http:host-{i}.example.com" for i in itertools.count())
    return dict.fromkeys(itertools.islice((n for n in names if shard_of(n) == shard), count), text)


def test_a_manifest_round_trips_with_its_version() -> None:
    manifest = Manifest(needs=NEEDS, shards={3: D1, 11: D2})
    data = encode_manifest(manifest)
    assert list(data) == [MANIFEST_KEY]
    decoded = decode_manifest(secret(data))
    assert decoded == manifest
    assert decoded.version == manifest.version
    # the same content is the same version, in whatever order; any change is another
    assert Manifest(needs=NEEDS, shards={11: D2, 3: D1}).version == manifest.version
    assert Manifest(needs=NEEDS, shards={3: D1, 11: D1}).version != manifest.version
    assert Manifest(needs=NEEDS, shards={3: D1}).version != manifest.version
    assert Manifest(needs=StaticNeeds((), ()), shards={3: D1, 11: D2}).version != manifest.version


def test_a_shard_round_trips_as_the_parts_it_was_made_of() -> None:
    shard_number = shard_of("meta")
    # JSON as dynamic.encode writes it: floats, escapes, key order as built
    meta = b'{"frontends":{"80":[]},"x":1.5,"s":"\\u00e9\\"","a":null}'
    parts = parts_in(shard_number, 3) | {"meta": meta}
    data = encode_shard(shard_number, parts)
    assert list(data) == [SHARD_KEY]
    shard = decode_shard(secret(data), shard_number)
    assert shard.parts == parts
    assert shard.digest == digest(shard_document(parts))
    # the document is the parts by name, each as it was encoded
    document = json.loads(base64.b64decode(data[SHARD_KEY]))
    assert list(document) == sorted(parts)


def test_a_large_shard_is_compressed_deterministically() -> None:
    parts = parts_in(2, COMPRESS_ABOVE // 20)
    data = encode_shard(2, parts)
    assert list(data) == [SHARD_KEY + ".gz"]
    assert data == encode_shard(2, dict(reversed(parts.items())))
    assert decode_shard(secret(data), 2).parts == parts


def test_a_shard_over_the_secret_limit_is_refused_naming_it() -> None:
    incompressible = base64.b64encode(random.Random(0).randbytes(1_200_000)).decode()
    parts = parts_in(7, 1, json.dumps(incompressible).encode())
    with pytest.raises(
        ConfigTooLarge,
        match=r"^Shard 07 of the data-plane configuration \(1 parts\) is \d+ bytes compressed, "
        r"over the 1048576 byte limit of a Secret\.$",
    ):
        encode_shard(7, parts)


def test_shards_names_are_dns_subdomains_and_parts_spread_over_them() -> None:
    longest = object_name(ObjectKey("Gateway", "ns", "x" * 253))
    names = [shard_name(longest, s) for s in range(SHARDS)]
    assert names[0].endswith("-s00")
    assert names[-1].endswith("-s15")
    assert all(len(n) <= 67 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n) for n in names)
    counts = [0] * SHARDS
    for i in range(3000):
        counts[shard_of(f"r:ns/route-{i}#0.0")] += 1
    assert min(counts) > 3000 / SHARDS / 2


def _raw(key: str, document: object) -> dict[str, str]:
    return {key: base64.b64encode(json.dumps(document).encode()).decode()}


STATIC: dict[str, Any] = {"listens": [], "backend_tls": []}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "neither config.json nor config.json.gz"),
        ({MANIFEST_KEY: "not base64!"}, "unreadable config.json"),
        ({MANIFEST_KEY + ".gz": base64.b64encode(b"not gzip").decode()}, "unreadable"),
        ({MANIFEST_KEY: base64.b64encode(b"{").decode()}, "unreadable configuration"),
        # format 1: one document with the whole state
        (_raw(MANIFEST_KEY, {"format": 1, "state": {}, "static": STATIC}), "format 2"),
        (_raw(MANIFEST_KEY, {"format": 2, "shards": [], "static": STATIC}), "no shards"),
        (_raw(MANIFEST_KEY, {"format": 2, "shards": {"16": D1}, "static": STATIC}), "'16'"),
        (_raw(MANIFEST_KEY, {"format": 2, "shards": {"3": D1}, "static": STATIC}), "'3'"),
        (_raw(MANIFEST_KEY, {"format": 2, "shards": {"03": "abc"}, "static": STATIC}), "sha256"),
        (
            _raw(MANIFEST_KEY, {"format": 2, "shards": {}, "static": {**STATIC, "x": 1}}),
            "unknown fields x",
        ),
        (
            _raw(
                MANIFEST_KEY,
                {
                    "format": 2,
                    "shards": {},
                    "static": {"listens": [{"port": "80", "https": False}], "backend_tls": []},
                },
            ),
            r"listens\[0\].port: expected int",
        ),
        # valid JSON, but not what the controller writes: its version would be ambiguous
        (
            _raw(MANIFEST_KEY, {"static": STATIC, "format": 2, "shards": {}}),
            "canonical",
        ),
        (
            _raw(MANIFEST_KEY, {"format": 2, "shards": {}, "static": STATIC, "state": {}}),
            "canonical",
        ),
    ],
)
def test_anything_else_is_refused_as_a_manifest(data: dict[str, str], error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        decode_manifest(secret(data))


def _shard_raw(document: bytes) -> dict[str, str]:
    return {SHARD_KEY: base64.b64encode(document).decode()}


def _one_part_in(shard: int) -> str:
    return next(iter(parts_in(shard, 1)))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "neither parts.json nor parts.json.gz"),
        ({SHARD_KEY + ".gz": base64.b64encode(b"not gzip").decode()}, "unreadable parts.json"),
        (_shard_raw(b'["x"]'), "shard 04 is not a JSON object"),
        (_shard_raw(b'{"%s":{}}' % _one_part_in(9).encode()), "does not belong in shard 04"),
        # canonical is the parts sorted by name, each compact: anything else is refused
        (_shard_raw(b'{"%s": {}}' % _one_part_in(4).encode()), "shard 04 is not in canonical"),
        (
            _shard_raw(b'{"%s":{},"%s":{}}' % (_one_part_in(4).encode(), _one_part_in(4).encode())),
            "canonical",
        ),
        (
            _shard_raw(
                b"{%s}"
                % b",".join(b'"%s":{}' % name.encode() for name in sorted(parts_in(4, 2))[::-1])
            ),
            "canonical",
        ),
    ],
)
def test_anything_else_is_refused_as_a_shard(data: dict[str, str], error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        decode_shard(secret(data), 4)


def test_a_shard_is_known_by_its_digest() -> None:
    """What an agent checks a shard against: the digest the manifest lists. A shard
    holding other parts (a newer write, a hand edit) has another digest."""
    parts = parts_in(6, 4)
    listed = digest(shard_document(parts))
    newer = {**parts, next(iter(parts)): b'{"rules":["y"]}'}
    assert decode_shard(secret(encode_shard(6, parts)), 6).digest == listed
    assert decode_shard(secret(encode_shard(6, newer)), 6).digest != listed


def test_gzip_of_a_foreign_document_is_refused_too() -> None:
    raw = gzip.compress(json.dumps({"format": 2}).encode())
    with pytest.raises(DecodeError, match="no shards"):
        decode_manifest(secret({MANIFEST_KEY + ".gz": base64.b64encode(raw).decode()}))


def test_reports_round_trip_and_garbage_is_no_report() -> None:
    report = Report(version="abc", accepted=False, message="nginx -t: bad", pod="p-1")
    assert Report.from_annotations({APPLIED_ANNOTATION: report.annotation()}) == report
    assert Report.from_annotations({}) is None
    assert Report.from_annotations({APPLIED_ANNOTATION: "{"}) is None
    assert Report.from_annotations({APPLIED_ANNOTATION: '{"version": 1}'}) is None


def test_reports_carry_the_mesh_state_only_when_there_is_one() -> None:
    meshed = Report(
        version="abc",
        accepted=True,
        pod="p-1",
        mesh_identity="spiffe://cluster.local/ns/web/sa/agc-gw",
        mesh_expires="2026-01-02T03:04:05Z",
        mesh_problem="istiod at istiod:15012 refused the certificate request: UNAVAILABLE",
    )
    assert Report.from_annotations({APPLIED_ANNOTATION: meshed.annotation()}) == meshed
    # without mesh mTLS the annotation is what an agent wrote before the mesh fields
    # existed, and such an annotation reads as a report with none
    plain = Report(version="abc", accepted=True, pod="p-1")
    before = '{"accepted":true,"message":"","pod":"p-1","version":"abc"}'
    assert plain.annotation() == before
    assert Report.from_annotations({APPLIED_ANNOTATION: before}) == plain
    assert (plain.mesh_identity, plain.mesh_expires, plain.mesh_problem) == ("", "", "")


@pytest.mark.parametrize(
    ("gateway", "name"),
    [
        ("gw", "agc-gw"),
        ("my.gateway", "agc-my-gateway-"),
        ("1st", "agc-1st"),
        ("x" * 60, "agc-" + "x" * 50 + "-"),
    ],
)
def test_object_names_are_service_names(gateway: str, name: str) -> None:
    got = object_name(ObjectKey("Gateway", "ns", gateway))
    assert got.startswith(name)
    assert len(got) <= 63
    assert got[0].isalpha()
    assert all(ch.isalnum() or ch == "-" for ch in got)
    assert not got.endswith("-")
