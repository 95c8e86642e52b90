"""The features our GatewayClass claims, pinned in conformance/supported-features.txt.

The suite runs a test only when the GatewayClass's status.supportedFeatures has
every feature it needs, and counts the others as not run, not as failed: a claim
dropped by accident (the provider's table edited, a CRD field not served) would
take its tests out of the run and the report while the run stays green. So a
run fails unless the claim equals the pinned list, and tests/unit checks the
list against the local provider's LOCAL_FEATURES and DEPLOYMENT_FEATURES, so
that a change there meets the list in `make test` first.

The two data planes claim nearly the same: a feature only one of them claims
carries its name, `@process` (NGINX processes of the controller's: the
embedded run) or `@deployment` (a data-plane Deployment per Gateway: the
in-cluster run, the Helm chart's).

The list is the claim on the experimental channel, the runner's default. On the
standard channel the controller drops the features whose fields only the
experimental CRDs serve (agc_controller.translate.settings.FIELD_FEATURES), and
the expected claim drops them too.

Format: one feature per line, sorted, each once, optionally followed by
`@process` or `@deployment`; `#` starts a comment.
"""

from __future__ import annotations

import re
from pathlib import Path

from agc_controller.translate.settings import FIELD_FEATURES
from devcluster.conformance.base import REPO, RunError

SUPPORTED_FEATURES = REPO / "conformance" / "supported-features.txt"
DATAPLANES = ("process", "deployment")


def read_pinned_features(path: Path, dataplane: str) -> frozenset[str]:
    """The features pinned for `dataplane` (one of DATAPLANES)."""
    names: list[str] = []
    claimed: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.partition("#")[0].strip()
        if not text:
            continue
        match = re.fullmatch(r"([A-Za-z0-9]+)(?:\s+@(\S+))?", text)
        if match is None:
            raise RunError(f"{path}:{number}: expected one feature name, got {line!r}")
        name, only = match.groups()
        if only is not None and only not in DATAPLANES:
            raise RunError(
                f"{path}:{number}: @{only} is not a data plane (one of "
                f"{', '.join('@' + d for d in DATAPLANES)})"
            )
        if names and name <= names[-1]:
            raise RunError(
                f"{path}:{number}: {name} comes "
                + ("twice" if name == names[-1] else f"before {names[-1]}")
                + ": the list is sorted, each feature once"
            )
        names.append(name)
        if only in (None, dataplane):
            claimed.append(name)
    return frozenset(claimed)


def expected_claim(pinned: frozenset[str], channel: str) -> frozenset[str]:
    """What the GatewayClass must claim with the CRDs of `channel`."""
    if channel == "experimental":
        return pinned
    experimental_only = frozenset().union(*FIELD_FEATURES.values())
    return pinned - experimental_only


def claim_differences(claimed: frozenset[str], expected: frozenset[str]) -> list[str]:
    """What is wrong with the claim, one line per kind of difference; none if it is right."""
    listed = SUPPORTED_FEATURES.relative_to(REPO)
    differences = []
    if missing := sorted(expected - claimed):
        differences.append(
            f"The GatewayClass does not claim {', '.join(missing)}, which {listed} pins: "
            "their tests did not run"
        )
    if extra := sorted(claimed - expected):
        differences.append(
            f"The GatewayClass claims {', '.join(extra)}, which {listed} does not pin: "
            "add them to the list"
        )
    return differences
