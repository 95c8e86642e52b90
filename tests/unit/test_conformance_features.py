"""conformance/supported-features.txt, the claim a conformance run must see, against
what the local provider claims: a change to either meets the other here, in `make
test`, before a conformance run."""

from __future__ import annotations

from pathlib import Path

import pytest

from agc_controller.providers.local.capabilities import LOCAL_FEATURES
from devcluster.conformance.base import RunError
from devcluster.conformance.features import (
    SUPPORTED_FEATURES,
    claim_differences,
    expected_claim,
    read_pinned_features,
)


def test_the_pinned_features_are_the_local_providers() -> None:
    pinned = read_pinned_features(SUPPORTED_FEATURES)
    assert sorted(pinned) == sorted(LOCAL_FEATURES), (
        f"{SUPPORTED_FEATURES.name} differs from LOCAL_FEATURES: "
        f"only pinned {sorted(pinned - LOCAL_FEATURES)}, "
        f"only in LOCAL_FEATURES {sorted(LOCAL_FEATURES - pinned)}"
    )


def test_the_standard_channel_claims_no_experimental_field() -> None:
    pinned = read_pinned_features(SUPPORTED_FEATURES)
    assert expected_claim(pinned, "experimental") == pinned
    standard = expected_claim(pinned, "standard")
    assert pinned - standard == {
        "HTTPRouteRetry",
        "HTTPRouteRetryBackendTimeout",
        "HTTPRouteRetryConnectionError",
    }


def test_comments_and_blank_lines_are_not_features(tmp_path: Path) -> None:
    path = tmp_path / "features.txt"
    path.write_text("# claimed\n\nGateway  # core\nHTTPRoute\n")
    assert read_pinned_features(path) == {"Gateway", "HTTPRoute"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("HTTPRoute\nGateway\n", ":2: Gateway comes before HTTPRoute"),
        ("Gateway\nGateway\n", ":2: Gateway comes twice"),
        ("Gateway HTTPRoute\n", ":1: expected one feature name"),
    ],
)
def test_a_list_not_sorted_or_not_one_per_line_is_refused(
    tmp_path: Path, text: str, why: str
) -> None:
    path = tmp_path / "features.txt"
    path.write_text(text)
    with pytest.raises(RunError, match=why):
        read_pinned_features(path)


def test_a_claim_is_compared_both_ways() -> None:
    expected = frozenset({"Gateway", "HTTPRoute", "HTTPRouteCORS"})
    assert claim_differences(expected, expected) == []
    missing, extra = claim_differences(frozenset({"Gateway", "HTTPRoute", "GRPCRoute"}), expected)
    assert missing.startswith("The GatewayClass does not claim HTTPRouteCORS, which")
    assert extra.startswith("The GatewayClass claims GRPCRoute, which")
