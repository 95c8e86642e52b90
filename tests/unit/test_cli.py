from __future__ import annotations

from pathlib import Path

import pytest

from agc_controller import __version__, cli
from agc_controller.cli import main
from agc_controller.dataplane.manifests import MESH_ROOTS_FILE, MESH_TOKEN_FILE
from agc_controller.mesh import RootsFile, TokenFile


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
    ],
)
def test_mesh_options_that_cannot_be_served_are_refused_before_anything_starts(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("agc-controller: --mesh-identity: ")
    assert says in err


def test_the_agent_refuses_mesh_mtls_without_its_pods_service_account(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POD_SERVICE_ACCOUNT", raising=False)
    assert main(["dataplane", "--secret", "agc-gw", "--mesh-ca-address", "istiod:15012"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("agc-controller: --mesh-ca-address: ")
    assert "env POD_SERVICE_ACCOUNT" in err


def test_the_agents_mesh_identity_is_its_pods_and_its_files_are_the_mounted_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_SERVICE_ACCOUNT", "agc-gw")
    for name in ("CA_ADDRESS", "TOKEN_FILE", "ROOTS_FILE", "TRUST_DOMAIN"):
        monkeypatch.delenv(f"AGC_MESH_{name}", raising=False)
    parse = cli._parser().parse_args
    assert cli._agent_mesh(parse(["dataplane", "--secret", "agc-gw"])) is None
    args = ["dataplane", "--secret", "agc-gw", "--namespace", "web", "--mesh-ca-address", "i:1"]
    mesh = cli._agent_mesh(parse(args))
    assert mesh is not None
    assert mesh.spiffe_id == "spiffe://cluster.local/ns/web/sa/agc-gw"
    assert mesh.token == TokenFile(Path(MESH_TOKEN_FILE))
    assert mesh.roots == RootsFile(Path(MESH_ROOTS_FILE))
