"""conformance/supported-features.txt, the claim a conformance run must see, against
what the local provider claims: a change to either meets the other here, in `make
test`, before a conformance run."""

from __future__ import annotations

from pathlib import Path

import pytest

from agc_controller.providers.local.capabilities import (
    DEPLOYMENT_FEATURES,
    LOCAL_FEATURES,
    local_translate_settings,
)
from devcluster.conformance.base import RunError
from devcluster.conformance.features import (
    SUPPORTED_FEATURES,
    claim_differences,
    expected_claim,
    read_pinned_features,
)


@pytest.mark.parametrize(
    ("dataplane", "features", "deployment"),
    [("process", LOCAL_FEATURES, False), ("deployment", DEPLOYMENT_FEATURES, True)],
)
def test_the_pinned_features_are_the_local_providers(
    dataplane: str, features: frozenset[str], deployment: bool
) -> None:
    pinned = read_pinned_features(SUPPORTED_FEATURES, dataplane)
    assert sorted(pinned) == sorted(features), (
        f"{SUPPORTED_FEATURES.name} differs for the {dataplane} data plane: "
        f"only pinned {sorted(pinned - features)}, "
        f"only claimed {sorted(features - pinned)}"
    )
    settings = local_translate_settings(
        "example.com/gateway-controller", deployment=deployment, static_addresses=True
    )
    assert settings.supported_features == features


def test_a_deployment_claims_infrastructure_and_static_addresses_only_with_ranges() -> None:
    process = read_pinned_features(SUPPORTED_FEATURES, "process")
    deployment = read_pinned_features(SUPPORTED_FEATURES, "deployment")
    assert deployment - process == {"GatewayInfrastructurePropagation"}
    assert process <= deployment
    without_ranges = local_translate_settings("example.com/gateway-controller", deployment=True)
    assert deployment - without_ranges.supported_features == {"GatewayStaticAddresses"}


def test_the_standard_channel_claims_no_experimental_field() -> None:
    pinned = read_pinned_features(SUPPORTED_FEATURES, "process")
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
    assert read_pinned_features(path, "process") == {"Gateway", "HTTPRoute"}


def test_a_feature_marked_with_a_data_plane_is_claimed_by_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "features.txt"
    path.write_text("Gateway\nGatewayA @deployment\nGatewayB  @process  # bound\n")
    assert read_pinned_features(path, "process") == {"Gateway", "GatewayB"}
    assert read_pinned_features(path, "deployment") == {"Gateway", "GatewayA"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("HTTPRoute\nGateway\n", ":2: Gateway comes before HTTPRoute"),
        ("Gateway\nGateway\n", ":2: Gateway comes twice"),
        ("Gateway HTTPRoute\n", ":1: expected one feature name"),
        ("Gateway @cluster\n", ":1: @cluster is not a data plane"),
        ("Gateway @deployment\nGateway @process\n", ":2: Gateway comes twice"),
    ],
)
def test_a_list_not_sorted_or_not_one_per_line_is_refused(
    tmp_path: Path, text: str, why: str
) -> None:
    path = tmp_path / "features.txt"
    path.write_text(text)
    with pytest.raises(RunError, match=why):
        read_pinned_features(path, "process")


def test_a_claim_is_compared_both_ways() -> None:
    expected = frozenset({"Gateway", "HTTPRoute", "HTTPRouteCORS"})
    assert claim_differences(expected, expected) == []
    missing, extra = claim_differences(frozenset({"Gateway", "HTTPRoute", "GRPCRoute"}), expected)
    assert missing.startswith("The GatewayClass does not claim HTTPRouteCORS, which")
    assert extra.startswith("The GatewayClass claims GRPCRoute, which")
