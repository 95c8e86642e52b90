"""The verdict of a run: the failing tests must be exactly conformance/known-failures.txt,
and nothing but them may have failed.

A full run passes when all of these hold:
- the GatewayClass claimed exactly the pinned features (features.py);
- the suite completed: its output has the TestConformance result line and no
  panic (a crash, the -test.timeout alarm);
- it wrote its report;
- the failing tests (TestConformance/<Name>) are exactly the listed ones: a
  failure not listed fails the run, and so does a listed test that passed, was
  skipped or did not run;
- when no test failed: the suite exited 0 and TestConformance PASSED, so that a
  failure of the suite's own code (its setup, the report, the deletion of the
  base resources) fails the run although every test passed;
- when tests failed (all of them listed): TestConformance FAILED, the suite
  exited 1 (`go test`'s code for failed tests; 2 is a panic or the timeout, a
  negative code a signal), and TestConformance reported no failure of its own
  (suiteoutput.py: testify's report under its own name), so that its failure is
  explained by exactly the failing tests.
A known-failures entry is the only way a failing test is accepted.

A focused run (--run-test, or suite flags that change what runs; main.py)
passes when the GatewayClass claimed the pinned features, the suite completed
and wrote its report, at least one test passed, none failed (listed or not),
the suite exited 0 and TestConformance PASSED.

`summarize` is pure but for its output stream: what the run left and what the
repository expects (known failures, pinned features) in, the summary out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import attrs

from agc_controller import __version__
from devcluster.conformance.base import GATEWAY_API_VERSION, KNOWN_FAILURES, REPO, RunError
from devcluster.conformance.features import claim_differences
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


# `go test`'s exit code when tests failed (and nothing worse happened)
_TESTS_FAILED_EXIT_CODE = 1


@attrs.frozen(kw_only=True)
class SuiteRun:
    """What one run of the suite left behind."""

    # its output, parsed
    results: SuiteResults
    # the test binary's exit code (negative: killed by that signal)
    exit_code: int
    # the report it wrote (-report-output), None if it wrote none
    report: dict[str, Any] | None
    # the GatewayClass's status.supportedFeatures once it was Accepted
    claimed_features: frozenset[str]


@attrs.frozen(kw_only=True)
class Expected:
    """What the repository says a run must show."""

    # conformance/known-failures.txt: test short name -> why it fails
    known_failures: dict[str, str]
    # the GatewayClass's claim: conformance/supported-features.txt, for the run's channel
    features: frozenset[str]


def summarize(run: SuiteRun, expected: Expected, *, focused: bool, out: TextIO) -> bool:
    """Print the verdict; True when the run passes (the module docstring's rules)."""
    known = expected.known_failures

    def write(text: str) -> None:
        print(text, file=out)

    results = run.results
    in_profiles = _write_statistics(run, focused=focused, write=write)
    completed = not results.fatal and results.suite_outcome is not None
    ok = completed
    for difference in claim_differences(run.claimed_features, expected.features):
        ok = False
        write(f"  {difference}")
    if not completed:
        write("  The suite did not complete: " + ("; ".join(results.fatal) or "no verdict line"))
    if run.report is None:
        ok = False
        write("  No report was written (see suite.log)")
    failed, passed = results.named("FAIL"), results.named("PASS")
    listed = KNOWN_FAILURES.relative_to(REPO)
    for name in failed:
        if name in known:
            verdict = f"known: {known[name]}"
        elif focused:
            verdict = "not in the known failures"
        else:
            ok = False
            verdict = f"NEW: not in {listed}"
        profiles = "" if name in in_profiles or run.report is None else " (in no profile run)"
        write(f"  FAILED {name}{profiles}  {verdict}")
        for case in results.failed_cases.get(name, [])[:4]:
            write(f"      {case.replace('_', ' ')}")
    if completed and not _suite_outcome_explained(run, failed, write):
        ok = False
    if focused:
        # the rest of the suite was skipped on purpose; only the tests run count
        if not passed:
            write("  No test passed")
        return ok and not failed and bool(passed)
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


def _write_statistics(run: SuiteRun, *, focused: bool, write: Callable[[str], None]) -> set[str]:
    """The report's numbers per profile and the suite's per test; the tests the
    report names as failed or skipped in some profile."""
    results = run.results
    write("")
    write(f"Gateway API {GATEWAY_API_VERSION} conformance, agc-controller {__version__}")
    in_profiles: set[str] = set()
    for profile in sorted((run.report or {}).get("profiles") or [], key=lambda p: p["name"]):
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
    write(
        f"  all tests run: {len(results.named('PASS'))} passed, "
        f"{len(results.named('FAIL'))} failed, {len(results.skipped)} skipped; "
        f"{len(results.not_supported)} not run "
        "(they need a feature the GatewayClass does not claim)"
    )
    slowest = sorted(results.outcomes.items(), key=lambda item: -item[1][1])[:10]
    write("  slowest: " + ", ".join(f"{name} {s:.1f}s" for name, (_, s) in slowest))
    if not focused:
        for name in results.skipped:
            write(f"  SKIPPED {name}")
    return in_profiles


def _suite_outcome_explained(
    run: SuiteRun, failed: list[str], write: Callable[[str], None]
) -> bool:
    """Whether the exit code and TestConformance's result are what the failing
    tests (perhaps none) alone give; says why not."""
    results = run.results
    explained = True
    for error in results.own_errors:
        explained = False
        write(f"  TestConformance itself failed (not one of its tests): {error}")
    if not failed:
        if results.suite_outcome != "PASS":
            explained = False
            write(f"  TestConformance: {results.suite_outcome} although no test failed")
        if run.exit_code != 0:
            explained = False
            write(f"  The suite exited with code {run.exit_code} although no test failed")
        return explained
    if results.suite_outcome != "FAIL":
        explained = False
        write(f"  TestConformance: {results.suite_outcome} although tests failed")
    if run.exit_code != _TESTS_FAILED_EXIT_CODE:
        explained = False
        write(
            f"  The suite exited with code {run.exit_code}, not {_TESTS_FAILED_EXIT_CODE} "
            "(tests failed): something else than the failing tests went wrong"
        )
    return explained
