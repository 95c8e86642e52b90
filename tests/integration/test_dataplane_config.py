"""The delivery format between the controller and the data-plane agents (no apiserver
needed): what `encode` writes, `decode` gives back exactly, or refuses."""

from __future__ import annotations

import base64
import gzip
import json
import random

import pytest

from agc_controller.core.keys import ObjectKey
from agc_controller.dataplane.codec import DecodeError
from agc_controller.dataplane.config import (
    APPLIED_ANNOTATION,
    COMPRESS_ABOVE,
    DATA_KEY,
    GZIP_DATA_KEY,
    ConfigTooLarge,
    DataPlaneConfig,
    Report,
    decode,
    encode,
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
STATE = {"frontends": {"80": [{"name": "http", "port": 80}]}, "mirror": {"percent": 12.5}}


def secret(data: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": "agc-gw"}, "data": data}


def test_a_configuration_round_trips_with_its_version() -> None:
    config = DataPlaneConfig(state=STATE, needs=NEEDS)
    data = encode(config)
    assert list(data) == [DATA_KEY]
    decoded = decode(secret(data))
    assert decoded.needs == NEEDS
    assert decoded.state == STATE
    assert decoded.version == config.version
    # the same content is the same version; any change is another
    assert DataPlaneConfig(state=dict(STATE), needs=NEEDS).version == config.version
    changed = DataPlaneConfig(state={**STATE, "x": 1}, needs=NEEDS)
    assert changed.version != config.version


def test_a_large_configuration_is_compressed_deterministically() -> None:
    config = DataPlaneConfig(state={"routes": ["r" * 100] * (COMPRESS_ABOVE // 50)}, needs=NEEDS)
    data = encode(config)
    assert list(data) == [GZIP_DATA_KEY]
    assert data == encode(config)
    assert decode(secret(data)).version == config.version


def test_a_configuration_over_the_secret_limit_is_refused() -> None:
    incompressible = base64.b64encode(random.Random(0).randbytes(1_200_000)).decode()
    with pytest.raises(ConfigTooLarge, match="limit of a Secret"):
        encode(DataPlaneConfig(state={"blob": incompressible}, needs=NEEDS))


def _raw(document: object) -> dict[str, str]:
    return {DATA_KEY: base64.b64encode(json.dumps(document).encode()).decode()}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "neither"),
        ({DATA_KEY: "not base64!"}, "unreadable"),
        ({GZIP_DATA_KEY: base64.b64encode(b"not gzip").decode()}, "unreadable"),
        (_raw({"format": 99, "state": {}, "static": {}}), "format 1"),
        (_raw({"format": 1, "state": [], "static": {}}), "no state"),
        (
            _raw({"format": 1, "state": {}, "static": {"listens": [], "backend_tls": "x"}}),
            "expected a list",
        ),
        (
            _raw(
                {
                    "format": 1,
                    "state": {},
                    "static": {"listens": [{"port": "80", "https": False}], "backend_tls": []},
                }
            ),
            r"listens\[0\].port: expected int",
        ),
        (
            _raw({"format": 1, "state": {}, "static": {"listens": [], "backend_tls": [], "x": 1}}),
            "unknown fields x",
        ),
        # valid JSON, but not what encode writes: its version would be ambiguous
        (
            {
                DATA_KEY: base64.b64encode(
                    b'{"static": {"backend_tls": [], "listens": []}, "format": 1, "state": {}}'
                ).decode()
            },
            "canonical",
        ),
    ],
)
def test_anything_else_is_refused(data: dict[str, str], error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        decode(secret(data))


def test_gzip_of_a_foreign_document_is_refused_too() -> None:
    raw = gzip.compress(json.dumps({"format": 1}).encode())
    with pytest.raises(DecodeError, match="no state"):
        decode(secret({GZIP_DATA_KEY: base64.b64encode(raw).decode()}))


def test_reports_round_trip_and_garbage_is_no_report() -> None:
    report = Report(version="abc", accepted=False, message="nginx -t: bad", pod="p-1")
    assert Report.from_annotations({APPLIED_ANNOTATION: report.annotation()}) == report
    assert Report.from_annotations({}) is None
    assert Report.from_annotations({APPLIED_ANNOTATION: "{"}) is None
    assert Report.from_annotations({APPLIED_ANNOTATION: '{"version": 1}'}) is None


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
