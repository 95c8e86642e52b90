"""Rule precedence within one host (build.precedence and build.hostname_rank)."""

from __future__ import annotations

from agc_controller.core.keys import ObjectKey
from agc_controller.translate.build import hostname_rank, precedence
from agc_controller.translate.model import Match, PathMatch, Rule, ValueMatch


def _rule(
    path: str = "/",
    path_type: str = "PathPrefix",
    *,
    name: str = "r",
    namespace: str = "default",
    index: int = 0,
    method: str | None = None,
    headers: int = 0,
    queries: int = 0,
    grpc: bool = False,
) -> Rule:
    return Rule(
        route=ObjectKey("HTTPRoute", namespace, name),
        rule_index=index,
        match_index=0,
        rule_name=None,
        match=Match(
            path=PathMatch(type=path_type, value=path),  # type: ignore[arg-type]
            method=method,
            headers=tuple(ValueMatch("Exact", f"h{i}", "v") for i in range(headers)),
            query_params=tuple(ValueMatch("Exact", f"q{i}", "v") for i in range(queries)),
        ),
        grpc=grpc,
    )


def _order(*rules: tuple[str, Rule]) -> list[str]:
    keyed = sorted(rules, key=lambda item: precedence(item[1], "2026-01-01T00:00:00Z"))
    return [label for label, _ in keyed]


def test_match_criteria_in_gateway_api_order() -> None:
    assert _order(
        ("root", _rule("/")),
        ("method", _rule("/", method="PATCH")),
        ("headers2", _rule("/", headers=2)),
        ("headers1", _rule("/", headers=1)),
        ("query", _rule("/", queries=1)),
        ("longer-prefix", _rule("/path5")),
        ("exact", _rule("/a", "Exact")),
        ("regex", _rule("/[a-z]+", "RegularExpression")),
    ) == ["exact", "regex", "longer-prefix", "method", "headers2", "headers1", "query", "root"]


def test_path_length_outranks_method() -> None:
    assert _order(("method", _rule("/", method="PATCH")), ("path5", _rule("/path5"))) == [
        "path5",
        "method",
    ]


def test_ties_go_to_the_oldest_then_namespace_name_then_rule_order() -> None:
    rules = [
        ("newer", _rule(name="a"), "2026-02-01T00:00:00Z"),
        ("older-b", _rule(name="b"), "2026-01-01T00:00:00Z"),
        ("older-a-rule1", _rule(name="a", namespace="x", index=1), "2026-01-01T00:00:00Z"),
        ("older-a-rule0", _rule(name="a", namespace="x", index=0), "2026-01-01T00:00:00Z"),
    ]
    keyed = sorted(rules, key=lambda item: precedence(item[1], item[2]))
    assert [label for label, _, _ in keyed] == [
        "older-b",
        "older-a-rule0",
        "older-a-rule1",
        "newer",
    ]


def test_grpc_ranks_service_characters_before_method_characters() -> None:
    created = "2026-01-01T00:00:00Z"
    service_only = precedence(_rule("/a.Svc", grpc=True), created, (2, 5, 0))
    method_only = precedence(
        _rule("/[^/]+/Call", "RegularExpression", grpc=True), created, (2, 0, 4)
    )
    both = precedence(_rule("/a.Svc/Call", "Exact", grpc=True), created, (0, 5, 4))
    catch_all = precedence(_rule("/", grpc=True), created, (2, 0, 0))
    with_header = precedence(_rule("/", headers=1, grpc=True), created, (2, 0, 0))
    assert sorted([catch_all, method_only, with_header, service_only, both]) == [
        both,
        service_only,
        method_only,
        with_header,
        catch_all,
    ]


def test_hostname_rank_prefers_longer_exact_then_longer_wildcard_then_none() -> None:
    names = ["*", "*.example.com", "foo.example.com", "*.foo.example.com", "a.foo.example.com"]
    assert sorted(names, key=hostname_rank) == [
        "a.foo.example.com",
        "foo.example.com",
        "*.foo.example.com",
        "*.example.com",
        "*",
    ]
