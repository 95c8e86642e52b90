"""Validation helpers that guard what reaches a data plane."""

from __future__ import annotations

import pytest

from agc_controller.core import conditions as c
from agc_controller.translate import validate
from agc_controller.translate.graph.selectors import selector_matches


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("0s", 0),
        ("500ms", 500),
        ("1s", 1000),
        ("1m30s", 90_000),
        ("1h", 3_600_000),
        ("1h2m3s4ms", 3_723_004),
        ("99999ms", 99_999),
        ("10s500ms", 10_500),
    ],
)
def test_duration_ms(value: str, ms: int) -> None:
    assert validate.duration_ms(value) == ms


@pytest.mark.parametrize(
    "value",
    ["", "1", "1.5s", "100us", "10ns", "1 s", "-1s", "123456s", "1h1m1s1ms1h", "1d", "s", "1S"],
)
def test_duration_ms_rejects_what_gep_2257_does(value: str) -> None:
    assert validate.duration_ms(value) is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a;b}c$d\"e'f#g", True),  # inert data: the data plane must quote it
        ("a\nb", False),
        ("a\r\nInjected: yes", False),
        ("a\x00b", False),
        ("tab\tis fine", True),
        ("v" * 4097, False),
    ],
)
def test_header_value(value: str, ok: bool) -> None:
    assert (validate.header_value(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("/a;b}c", True), ("/$host\"'#", True), ("/a b", False), ("/café", False), ("x", False)],
)
def test_path(value: str, ok: bool) -> None:
    assert (validate.path(value) is None) is ok


def test_messages_keep_a_leading_field_path_as_written() -> None:
    assert c.message("spec.listeners[1].protocol is bad") == "spec.listeners[1].protocol is bad."
    assert c.message("spec.hostnames[0] 'x' is bad.") == "spec.hostnames[0] 'x' is bad."
    assert c.message("the value is bad") == "The value is bad."
    assert c.message("its type is wrong") == "Its type is wrong."
    assert len(c.message("x" * 5000)) == c.MAX_MESSAGE


def test_selector_nil_matches_nothing_and_empty_everything() -> None:
    labels = {"team": "web", "env": "prod"}
    assert not selector_matches(None, labels)
    assert selector_matches({}, labels)
    assert selector_matches({"matchLabels": {"team": "web"}}, labels)
    assert not selector_matches({"matchLabels": {"team": "ops"}}, labels)
    assert selector_matches(
        {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}, labels
    )
    assert selector_matches(
        {"matchExpressions": [{"key": "pci", "operator": "DoesNotExist"}]}, labels
    )
    assert not selector_matches({"matchExpressions": [{"key": "env", "operator": "Gt"}]}, labels)
