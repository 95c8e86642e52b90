"""`python -m devcluster` (what `make run` starts): its command line, before any cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devcluster.run import log_level, main
from devcluster.spawn import REPO_ROOT, python_env


def test_help_names_the_local_job(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "local" in out
    assert "--testenv" in out
    assert "--local-port-offset" in out  # the controller's options, as `run` has them


def test_local_without_testenv_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGC_TESTENV", raising=False)
    assert main([]) == 2
    assert "make testenv" in capsys.readouterr().err


def test_the_module_runs_from_anywhere_with_the_spawn_environment() -> None:
    # devcluster is not installed: a child finds it through python_env() alone
    env = python_env({k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    env.pop("AGC_TESTENV", None)
    result = subprocess.run(
        [sys.executable, "-m", "devcluster"],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "make testenv" in result.stderr
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)


def test_a_terminal_gets_the_banner_and_warnings_a_machine_every_log() -> None:
    assert log_level(None, terminal=True) == "warning"
    assert log_level(None, terminal=False) == "info"
    # --log-level or AGC_LOG_LEVEL wins either way
    assert log_level("debug", terminal=True) == "debug"
    assert log_level("error", terminal=False) == "error"
