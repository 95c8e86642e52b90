from __future__ import annotations

import pytest

from agc_controller import __version__
from agc_controller.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"agc-controller {__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "local" in out
    assert "version" in out


def test_local_without_testenv_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGC_TESTENV", raising=False)
    assert main(["local"]) == 2
    assert "make testenv" in capsys.readouterr().err
