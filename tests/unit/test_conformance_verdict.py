"""The conformance runner's verdict over recorded suite outputs (conformance_outputs/,
trimmed from real `-test.v=test2json` runs): which run passes, and that it says why
one does not."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from devcluster.conformance.suiteoutput import SuiteResults
from devcluster.conformance.verdict import Expected, SuiteRun, summarize

OUTPUTS = Path(__file__).parent / "conformance_outputs"
# what the GatewayClass of the recorded runs claims (their `Supported features` line)
CLAIMED = frozenset(
    {
        "Gateway",
        "GatewayPort8080",
        "GRPCRoute",
        "HTTPRoute",
        "HTTPRouteMethodMatching",
        "HTTPRoutePathRedirect",
        "HTTPRouteRequestMirror",
        "ReferenceGrant",
    }
)


def report_of(results: SuiteResults) -> dict[str, Any]:
    """What the suite's -report-output says of those results, as much as the verdict reads."""
    failed, passed = results.named("FAIL"), results.named("PASS")
    core: dict[str, Any] = {
        "result": "failure" if failed else "success",
        "statistics": {"Passed": len(passed), "Failed": len(failed), "Skipped": 0},
    }
    if failed:
        core["failedTests"] = failed
    return {"profiles": [{"name": "GATEWAY-HTTP", "core": core}]}


def parsed(output: str) -> SuiteResults:
    results = SuiteResults()
    for line in (OUTPUTS / output).read_text().splitlines():
        results.feed(line, 0.0)
    return results


def verdict(
    output: str,
    exit_code: int,
    known: dict[str, str] | None = None,
    *,
    written: bool = True,
    claimed: frozenset[str] = CLAIMED,
    focused: bool = False,
) -> tuple[bool, str]:
    out = io.StringIO()
    results = parsed(output)
    report = report_of(results) if written else None
    run = SuiteRun(results=results, exit_code=exit_code, report=report, claimed_features=claimed)
    expected = Expected(known_failures=known or {}, features=CLAIMED)
    ok = summarize(run, expected, focused=focused, out=out)
    return ok, out.getvalue()


def test_a_passing_output() -> None:
    results = parsed("pass.log")
    assert results.named("PASS") == [
        "HTTPRouteMethodMatching",
        "HTTPRouteSimpleSameNamespace",
        "HTTPRouteWeight",
    ]
    assert results.named("FAIL") == []
    assert results.not_supported == {
        "MeshHTTPRouteWeight": "Mesh",
        "ListenerSetAllowedNamespaceNone": "ListenerSet",
    }
    assert results.suite_outcome == "PASS"
    assert results.own_errors == []
    assert results.fatal == []


def test_a_failing_test_is_its_own_not_the_suites() -> None:
    results = parsed("test-fails.log")
    assert results.named("FAIL") == ["HTTPRouteWeight"]
    assert results.failed_cases == {
        "HTTPRouteWeight": ["Requests_should_have_a_distribution_that_matches_the_weight"]
    }
    assert results.suite_outcome == "FAIL"
    assert results.own_errors == []


def test_a_failing_cleanup_of_the_suite_is_the_suites_own_error() -> None:
    results = parsed("cleanup-fails.log")
    assert results.named("FAIL") == []
    assert results.suite_outcome == "FAIL"
    assert results.own_errors == [
        "Received unexpected error: client rate limiter Wait returned an error: "
        "context deadline exceeded (error deleting resource)"
    ]


def test_a_tests_testify_report_is_not_the_suites() -> None:
    # HTTPRouteSimpleSameNamespace fails through require too, under its own name
    results = parsed("test-and-cleanup-fail.log")
    assert results.named("FAIL") == ["HTTPRouteSimpleSameNamespace"]
    assert len(results.own_errors) == 1
    assert "error deleting resource" in results.own_errors[0]


def test_a_timeout_is_fatal() -> None:
    results = parsed("timeout.log")
    assert results.suite_outcome is None
    assert results.fatal == ["panic: test timed out after 1m0s"]


def test_everything_passing_passes() -> None:
    ok, out = verdict("pass.log", 0)
    assert ok, out
    assert "all tests run: 3 passed, 0 failed, 0 skipped; 2 not run" in out
    assert "FAILED" not in out


@pytest.mark.parametrize(
    ("output", "exit_code", "known", "why"),
    [
        # the suite's code failed after every test passed: a cleanup of the base resources
        (
            "cleanup-fails.log",
            1,
            {},
            "TestConformance itself failed (not one of its tests): Received unexpected error",
        ),
        ("cleanup-fails.log", 1, {}, "TestConformance: FAIL although no test failed"),
        # the binary exited nonzero though its output says everything passed
        ("pass.log", 1, {}, "The suite exited with code 1 although no test failed"),
        ("pass.log", -9, {}, "The suite exited with code -9 although no test failed"),
        # a failure nobody listed
        ("test-fails.log", 1, {}, "FAILED HTTPRouteWeight  NEW: not in"),
        # a listed failure, but the suite failed for more than it: its own cleanup, ...
        (
            "test-and-cleanup-fail.log",
            1,
            {"HTTPRouteSimpleSameNamespace": "cause"},
            "TestConformance itself failed (not one of its tests)",
        ),
        # ... or an exit code that failed tests do not give
        (
            "test-fails.log",
            2,
            {"HTTPRouteWeight": "cause"},
            "The suite exited with code 2, not 1",
        ),
        ("test-fails.log", 0, {"HTTPRouteWeight": "cause"}, "exited with code 0, not 1"),
        # a listed failure that passes, or no longer runs
        (
            "pass.log",
            0,
            {"HTTPRouteWeight": "cause"},
            "PASSED HTTPRouteWeight, which conformance/known-failures.txt lists as failing",
        ),
        ("pass.log", 0, {"HTTPRouteCORS": "cause"}, "HTTPRouteCORS (listed in"),
        # the binary died
        ("timeout.log", 2, {}, "The suite did not complete: panic: test timed out after 1m0s"),
    ],
)
def test_a_run_fails_and_says_why(
    output: str, exit_code: int, known: dict[str, str], why: str
) -> None:
    ok, out = verdict(output, exit_code, known)
    assert not ok, out
    assert why in out


def test_no_report_fails() -> None:
    ok, out = verdict("pass.log", 0, written=False)
    assert not ok
    assert "No report was written" in out


def test_exactly_the_known_failures_pass() -> None:
    ok, out = verdict("test-fails.log", 1, {"HTTPRouteWeight": "NGINX weights are not exact"})
    assert ok, out
    assert "FAILED HTTPRouteWeight  known: NGINX weights are not exact" in out


def test_a_focused_run_passes_only_without_failures() -> None:
    assert verdict("pass.log", 0, focused=True)[0]
    # a listed test that passes is no concern of a focused run
    assert verdict("pass.log", 0, {"HTTPRouteWeight": "cause"}, focused=True)[0]
    # a listed failure is still a failure of the test it ran
    ok, out = verdict("test-fails.log", 1, {"HTTPRouteWeight": "cause"}, focused=True)
    assert not ok
    assert "FAILED HTTPRouteWeight  known: cause" in out
    ok, out = verdict("cleanup-fails.log", 1, focused=True)
    assert not ok
    assert "TestConformance itself failed" in out


@pytest.mark.parametrize("focused", [False, True])
def test_a_claim_other_than_the_pinned_one_fails(focused: bool) -> None:
    claimed = (CLAIMED - {"HTTPRouteMethodMatching"}) | {"HTTPRouteCORS"}
    ok, out = verdict("pass.log", 0, claimed=claimed, focused=focused)
    assert not ok
    assert "The GatewayClass does not claim HTTPRouteMethodMatching, which" in out
    assert "The GatewayClass claims HTTPRouteCORS, which" in out
