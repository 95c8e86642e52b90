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
    assert "run" in out
    assert "version" in out


def test_the_dev_cluster_is_not_a_command_of_the_controller(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `local` moved to `python -m devcluster` (tests/unit/test_devcluster_run.py)
    with pytest.raises(SystemExit) as exited:
        main(["local"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--mesh-identity", "gateway"], "'gateway' is not NAMESPACE/SERVICEACCOUNT"),
        (["--mesh-identity", "a/b/c"], "is not NAMESPACE/SERVICEACCOUNT"),
        (["--mesh-identity", "a/b", "--provider", "azure"], "Application Gateway v2 cannot"),
        (["--mesh-identity", "a/b", "--local-dataplane", "deployment"], "in-cluster data planes"),
    ],
)
def test_mesh_options_that_cannot_be_served_are_refused_before_anything_starts(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("agc-controller: --mesh-identity: ")
    assert says in err
