"""Writing a run's outcome: the summary (terminal and summary.txt), each failed
test's output, and the committed report.

Invariant: the committed report (conformance/reports/) is replaced only by a
full run (not focused: main.py) that passed, and only when a result changed
(not just its date). A failed run's report is not a result to publish: the
failing tests it lists are either new or the run failed for another reason.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import yaml

from devcluster.conformance.base import REPO
from devcluster.conformance.suiteoutput import SuiteResults, output_by_test
from devcluster.conformance.verdict import Expected, SuiteRun, summarize


def judge(
    results: SuiteResults,
    *,
    exit_code: int,
    claimed_features: frozenset[str],
    report_path: Path,
    committed_report: Path,
    run_dir: Path,
    expected: Expected,
    focused: bool,
) -> bool:
    """Print the summary (also to summary.txt); publish the report of a passing full
    run as `committed_report`."""
    report = yaml.safe_load(report_path.read_text()) if report_path.exists() else None
    run = SuiteRun(
        results=results, exit_code=exit_code, report=report, claimed_features=claimed_features
    )
    summary = io.StringIO()
    ok = summarize(run, expected, focused=focused, out=summary)
    (run_dir / "summary.txt").write_text(summary.getvalue())
    print(summary.getvalue(), end="")
    if report is not None:
        print(f"  Report: {publish(report_path, committed_report, passed=ok, focused=focused)}")
    if failed := results.named("FAIL"):
        by_test = output_by_test(run_dir / "suite.log")
        for name in failed:
            directory = run_dir / "failures" / name
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "test.log").write_text("".join(by_test.get(name, [])))
        print(f"  Each failure's output and cluster state: {run_dir / 'failures'}/<test>/")
    print(f"  {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


def publish(report: Path, committed: Path, *, passed: bool, focused: bool) -> str:
    """Replace `committed` by `report` when the run was full, passed and changed a
    result; say what happened."""
    shown = committed.relative_to(REPO) if committed.is_relative_to(REPO) else committed
    if focused:
        return f"a focused run's, {shown} kept"
    if not passed:
        return f"the run failed, {shown} kept"
    if _same_results(report, committed):
        return f"unchanged but for its date, {shown} kept"
    committed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(report, committed)
    return f"{shown} replaced"


def _same_results(new: Path, committed: Path) -> bool:
    """Whether two reports differ in nothing but the date they were made and the
    order of their profiles (the suite lists them in map order): a run that
    changes no result leaves the committed report (and the tree) alone."""
    if not committed.exists():
        return False

    def undated(path: Path) -> Any:
        report = yaml.safe_load(path.read_text())
        if isinstance(report, dict):
            report.pop("date", None)
            report["profiles"] = sorted(report.get("profiles") or [], key=lambda p: p.get("name"))
        return report

    return bool(undated(new) == undated(committed))
