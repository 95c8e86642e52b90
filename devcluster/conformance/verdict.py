"""The verdict of a run: the failing tests must be exactly conformance/known-failures.txt.

`summarize` is pure but for its output stream: results, report and the known
failures in, the summary out; it passes a focused run (--run-test) on its one
test alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TextIO

from agc_controller import __version__
from devcluster.conformance.base import GATEWAY_API_VERSION, KNOWN_FAILURES, REPO, RunError
from devcluster.conformance.suiteoutput import SuiteResults


def read_known_failures(path: Path) -> dict[str, str]:
    """`TestName  # cause` per line; blank lines and lines starting with # are ignored."""
    known: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, cause = line.partition("#")
        name, cause = name.strip(), cause.strip()
        if not re.fullmatch(r"[A-Za-z0-9]+", name) or not cause:
            raise RunError(
                f"{path}:{number}: expected `TestName  # cause`, got {line!r}: every known "
                "failure names one test and says why it fails"
            )
        known[name] = cause
    return known


def summarize(
    results: SuiteResults,
    report: dict[str, Any] | None,
    known: dict[str, str],
    *,
    focused: bool,
    out: TextIO,
) -> bool:
    """Print the verdict; True when it passes (failures == known failures)."""

    def write(text: str) -> None:
        print(text, file=out)

    write("")
    write(f"Gateway API {GATEWAY_API_VERSION} conformance, agc-controller {__version__}")
    in_profiles: set[str] = set()
    for profile in sorted((report or {}).get("profiles") or [], key=lambda p: p["name"]):
        write(f"  {profile['name']}:")
        for level in ("core", "extended"):
            status = profile.get(level)
            if not status:
                continue
            stats = status.get("statistics") or {}
            write(
                f"    {level:8} {status.get('result', '?'):8} passed {stats.get('Passed', 0):3}"
                f"  failed {stats.get('Failed', 0):3}  skipped {stats.get('Skipped', 0):3}"
            )
            for key, label in (("failedTests", "failed: "), ("skippedTests", "skipped:")):
                for name in status.get(key) or []:
                    in_profiles.add(name)
                    write(f"      {label} {name}")
            if unclaimed := status.get("unsupportedFeatures"):
                write(f"      not claimed (their tests did not run): {', '.join(unclaimed)}")
    failed, passed = results.named("FAIL"), results.named("PASS")
    write(
        f"  all tests run: {len(passed)} passed, {len(failed)} failed, "
        f"{len(results.skipped)} skipped; {len(results.not_supported)} not run "
        "(they need a feature the GatewayClass does not claim)"
    )
    slowest = sorted(results.outcomes.items(), key=lambda item: -item[1][1])[:10]
    write("  slowest: " + ", ".join(f"{name} {s:.1f}s" for name, (_, s) in slowest))
    if not focused:
        for name in results.skipped:
            write(f"  SKIPPED {name}")

    ok = not results.fatal and results.suite_outcome is not None
    if not ok:
        write("  The suite did not complete: " + ("; ".join(results.fatal) or "no verdict line"))
    listed = KNOWN_FAILURES.relative_to(REPO)
    for name in failed:
        if name in known:
            verdict = f"known: {known[name]}"
        elif focused:
            verdict = "not in the known failures"
        else:
            ok = False
            verdict = f"NEW: not in {listed}"
        profiles = "" if name in in_profiles or report is None else " (in no profile run)"
        write(f"  FAILED {name}{profiles}  {verdict}")
        for case in results.failed_cases.get(name, [])[:4]:
            write(f"      {case.replace('_', ' ')}")
    if focused:
        # the rest of the suite was skipped on purpose; only the focused test counts
        return ok and not failed
    for name in sorted(set(known) - set(failed)):
        ok = False
        if name in passed:
            write(f"  PASSED {name}, which {listed} lists as failing: remove it from the list")
        else:
            outcome = "was not run" if name not in results.outcomes else "was skipped"
            write(
                f"  {name} (listed in {listed}) {outcome}: remove it from the list or find "
                "out why it no longer runs"
            )
    return ok
