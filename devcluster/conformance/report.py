"""Writing a run's outcome: the summary (terminal and summary.txt), each failed
test's output, and the committed report.

Invariant: the committed report (conformance/reports/) is replaced only by a
full run that completed, and only when a result changed (not just its date).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import yaml

from devcluster.conformance.base import REPO, REPORT
from devcluster.conformance.suiteoutput import SuiteResults, output_by_test
from devcluster.conformance.verdict import Expected, SuiteRun, summarize


def judge(
    results: SuiteResults,
    *,
    exit_code: int,
    claimed_features: frozenset[str],
    report_path: Path,
    run_dir: Path,
    expected: Expected,
    focused: bool,
) -> bool:
    """Print the summary (also to summary.txt), publish the report of a complete full run."""
    report = yaml.safe_load(report_path.read_text()) if report_path.exists() else None
    run = SuiteRun(
        results=results, exit_code=exit_code, report=report, claimed_features=claimed_features
    )
    summary = io.StringIO()
    ok = summarize(run, expected, focused=focused, out=summary)
    (run_dir / "summary.txt").write_text(summary.getvalue())
    print(summary.getvalue(), end="")
    complete = results.suite_outcome is not None and not results.fatal
    if report is not None and not focused and complete:
        if _same_results(report_path, REPORT):
            print(f"  Report: unchanged but for its date, {REPORT.relative_to(REPO)} kept")
        else:
            REPORT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(report_path, REPORT)
            print(f"  Report: {REPORT.relative_to(REPO)}")
    if failed := results.named("FAIL"):
        by_test = output_by_test(run_dir / "suite.log")
        for name in failed:
            directory = run_dir / "failures" / name
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "test.log").write_text("".join(by_test.get(name, [])))
        print(f"  Each failure's output and cluster state: {run_dir / 'failures'}/<test>/")
    print(f"  {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


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
