"""Which conformance runs replace the committed report: a full run that passed and
changed a result, no other (a focused run, a failed one, one that changed only
the date)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from devcluster.conformance.main import _parser, focus
from devcluster.conformance.report import judge, publish
from devcluster.conformance.suiteoutput import SuiteResults
from devcluster.conformance.verdict import Expected

OUTPUTS = Path(__file__).parent / "conformance_outputs"
COMMITTED = {"date": "2026-11-23T22:57:08Z", "profiles": [{"name": "GATEWAY-HTTP", "n": 3}]}
CHANGED = {"date": "2026-12-05T00:07:52Z", "profiles": [{"name": "GATEWAY-HTTP", "n": 4}]}
REDATED = {"date": "2026-12-05T00:07:52Z", "profiles": [{"name": "GATEWAY-HTTP", "n": 3}]}


def write(path: Path, report: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(report))
    return path


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    return write(tmp_path / "committed.yaml", COMMITTED)


def test_a_passing_full_run_that_changed_a_result_replaces_the_report(
    tmp_path: Path, committed: Path
) -> None:
    new = write(tmp_path / "new.yaml", CHANGED)
    assert publish(new, committed, passed=True, focused=False).endswith("replaced")
    assert yaml.safe_load(committed.read_text()) == CHANGED


def test_the_first_report_is_published(tmp_path: Path) -> None:
    new = write(tmp_path / "new.yaml", CHANGED)
    committed = tmp_path / "reports" / "v1.6.1" / "report.yaml"
    publish(new, committed, passed=True, focused=False)
    assert yaml.safe_load(committed.read_text()) == CHANGED


@pytest.mark.parametrize(
    ("new_report", "passed", "focused", "said"),
    [
        (CHANGED, False, False, "the run failed"),
        (CHANGED, True, True, "a focused run's"),
        (CHANGED, False, True, "a focused run's"),
        (REDATED, True, False, "unchanged but for its date"),
    ],
)
def test_no_other_run_touches_the_report(
    committed: Path, new_report: dict[str, object], passed: bool, focused: bool, said: str
) -> None:
    before = committed.read_bytes()
    new = write(committed.parent / "new.yaml", new_report)
    assert publish(new, committed, passed=passed, focused=focused).startswith(said)
    assert committed.read_bytes() == before


@pytest.mark.parametrize(
    ("suite", "published"),
    [(("pass.log", 0), True), (("test-fails.log", 1), False), (("cleanup-fails.log", 1), False)],
)
def test_judge_publishes_only_what_passes(
    committed: Path, suite: tuple[str, int], published: bool
) -> None:
    output, exit_code = suite
    run_dir = committed.parent / "run"
    run_dir.mkdir()
    shutil.copyfile(OUTPUTS / output, run_dir / "suite.log")
    results = SuiteResults()
    for line in (run_dir / "suite.log").read_text().splitlines():
        results.feed(line, 0.0)
    claimed = frozenset({"Gateway", "HTTPRoute"})
    ok = judge(
        results,
        exit_code=exit_code,
        claimed_features=claimed,
        report_path=write(run_dir / "report.yaml", CHANGED),
        committed_report=committed,
        run_dir=run_dir,
        expected=Expected(known_failures={}, features=claimed),
        focused=False,
    )
    assert ok is published
    assert (yaml.safe_load(committed.read_text()) == CHANGED) is published
    assert (run_dir / "summary.txt").read_text().startswith("\nGateway API")


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        ([], None),
        (["--", "-debug"], None),
        (["--", "--debug=true"], None),
        (["--run-test", "HTTPRouteCORS"], "--run-test HTTPRouteCORS"),
        (["--keep"], "--keep"),
        (["--channel", "standard"], "--channel standard"),
        (["--", "-skip-tests", "HTTPRouteWeight"], "suite flags -skip-tests HTTPRouteWeight"),
        (["--", "-run-test=HTTPRouteWeight"], "suite flags -run-test=HTTPRouteWeight"),
        (["--", "-supported-features=Gateway"], "suite flags -supported-features=Gateway"),
        (["--", "-all-features"], "suite flags -all-features"),
        (["--", "-debug", "-test.run", "X"], "suite flags -test.run X"),
    ],
)
def test_a_run_is_full_only_in_the_default_configuration(
    argv: list[str], reason: str | None
) -> None:
    reasons = focus(_parser().parse_args(argv))
    if reason is None:
        assert reasons == []
    else:
        assert reasons, argv
        assert reasons[0].startswith(reason), reasons
