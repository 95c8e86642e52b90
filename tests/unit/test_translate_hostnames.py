"""Hostname intersection (listener x route), as Gateway API section 3.2 defines it."""

from __future__ import annotations

import pytest

from agc_controller.translate.hostnames import intersect, is_valid_hostname, matches, specificity


@pytest.mark.parametrize(
    ("listener", "route", "expected"),
    [
        # unset on either side means "*"
        (None, None, "*"),
        (None, "foo.example.com", "foo.example.com"),
        ("foo.example.com", None, "foo.example.com"),
        ("*.example.com", None, "*.example.com"),
        # precise x precise: must be equal
        ("foo.example.com", "foo.example.com", "foo.example.com"),
        ("foo.example.com", "bar.example.com", None),
        # wildcard x precise: at least one more label, never the bare suffix
        ("*.example.com", "foo.example.com", "foo.example.com"),
        ("*.example.com", "a.b.example.com", "a.b.example.com"),
        ("*.example.com", "example.com", None),
        ("*.example.com", "fooexample.com", None),
        ("very.specific.com", "*.specific.com", "very.specific.com"),
        ("*.wildcard.io", "wildcard.io", None),
        # wildcard x wildcard: the more specific one, on a label boundary
        ("*.com", "*.example.com", "*.example.com"),
        ("*.example.com", "*.com", "*.example.com"),
        ("*.example.com", "*.example.com", "*.example.com"),
        ("*.example.com", "*.ample.com", None),
        ("*.example.com", "*.example.org", None),
    ],
)
def test_intersect(listener: str | None, route: str | None, expected: str | None) -> None:
    assert intersect(listener, route) == expected


def test_matches_means_the_host_is_inside_the_pattern() -> None:
    assert matches(None, "foo.example.com")
    assert matches("*.example.com", "foo.example.com")
    assert matches("*.example.com", "*.foo.example.com")
    assert not matches("foo.example.com", "*.example.com")
    assert not matches("*.foo.example.com", "*.example.com")


def test_specificity_orders_exact_then_longer_wildcards_then_none() -> None:
    names = [None, "*.com", "foo.example.com", "*.example.com", "a.io"]
    assert sorted(names, key=specificity) == [
        "foo.example.com",
        "a.io",
        "*.example.com",
        "*.com",
        None,
    ]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("foo.example.com", True),
        ("*.example.com", True),
        ("localhost", True),
        ("", False),
        ("192.0.2.1", False),
        ("Foo.example.com", False),
        ("foo.*.com", False),
        ("*", False),
        ("-foo.com", False),
        ("a" * 254, False),
    ],
)
def test_is_valid_hostname(value: str, valid: bool) -> None:
    assert is_valid_hostname(value) is valid


def test_precise_hostnames_have_no_wildcard() -> None:
    assert not is_valid_hostname("*.example.com", wildcard=False)
