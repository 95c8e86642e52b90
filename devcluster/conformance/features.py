"""The features our GatewayClass claims, pinned in conformance/supported-features.txt.

The suite runs a test only when the GatewayClass's status.supportedFeatures has
every feature it needs, and counts the others as not run, not as failed: a claim
dropped by accident (the provider's table edited, a CRD field not served) would
take its tests out of the run and the report while the run stays green. So a
run fails unless the claim equals the pinned list, and tests/unit checks the
list against the local provider's LOCAL_FEATURES, so that a change there meets
the list in `make test` first.

The list is the claim on the experimental channel, the runner's default. On the
standard channel the controller drops the features whose fields only the
experimental CRDs serve (agc_controller.translate.settings.FIELD_FEATURES), and
the expected claim drops them too.

Format: one feature per line, sorted, each once; `#` starts a comment.
"""

from __future__ import annotations

import re
from pathlib import Path

from agc_controller.translate.settings import FIELD_FEATURES
from devcluster.conformance.base import REPO, RunError

SUPPORTED_FEATURES = REPO / "conformance" / "supported-features.txt"


def read_pinned_features(path: Path) -> frozenset[str]:
    names: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        name = line.partition("#")[0].strip()
        if not name:
            continue
        if not re.fullmatch(r"[A-Za-z0-9]+", name):
            raise RunError(f"{path}:{number}: expected one feature name, got {line!r}")
        if names and name <= names[-1]:
            raise RunError(
                f"{path}:{number}: {name} comes "
                + ("twice" if name == names[-1] else f"before {names[-1]}")
                + ": the list is sorted, each feature once"
            )
        names.append(name)
    return frozenset(names)


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
