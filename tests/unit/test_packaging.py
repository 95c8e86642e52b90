"""The dev cluster stays out of the product: not in the wheel, never imported by it."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import setuptools

REPO = Path(__file__).resolve().parents[2]


def _wheel_packages() -> list[str]:
    """The packages `pip install .` puts in the wheel: pyproject's find rule."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    return sorted(setuptools.find_packages(where=str(REPO), include=find["include"]))


def test_the_wheel_holds_the_controller_and_not_the_dev_cluster() -> None:
    packages = _wheel_packages()
    assert "agc_controller" in packages
    assert "agc_controller.providers.local" in packages
    assert [p for p in packages if not p.startswith("agc_controller")] == []
    assert not any("devcluster" in p or "localcluster" in p for p in packages)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_controller_never_imports_the_dev_cluster() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "devcluster"
        )
        for path in sorted((REPO / "agc_controller").rglob("*.py"))
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_the_import_walk_sees_the_dev_cluster_where_it_is_imported() -> None:
    # the walk above would pass on any tree if it missed imports: here it must find one
    assert "devcluster.controlplane" in _imported_modules(REPO / "devcluster" / "__init__.py")


def test_the_images_copy_the_controller_and_not_the_dev_cluster() -> None:
    # the build context is the repository root: an image gets what its COPY lines name
    # (and then installs the wheel, which test_the_wheel_... checks)
    for dockerfile in sorted((REPO / "deploy").glob("Dockerfile*")):
        if dockerfile.suffix == ".dockerignore":
            continue
        sources = {
            source
            for line in dockerfile.read_text().splitlines()
            if line.startswith(("COPY ", "ADD ")) and "--from=" not in line
            for source in line.split()[1:-1]
        }
        assert sources == {"pyproject.toml", "README.md", "agc_controller"}, dockerfile.name
