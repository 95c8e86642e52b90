"""The package's layer order, enforced by reading every import (ast, no import runs).

Bottom to top; a layer imports only layers below it (and itself), never a
sibling of its own rank, so no two packages can import each other:

    core                          the shared vocabulary: keys, resources, conditions,
                                  status types, errors, time (attrs and stdlib only)
    translate                     PURE translation: snapshot -> graph -> ALB model
    kube, queue, selfsigned       API plumbing, the work queue, certificates
    informers, status             list/watch caches; status merge and writer
    runtime                       health server, leader election, metrics, Events
    providers                     local NGINX, Azure, memory
    dataplane                     the in-cluster data plane (provider side and agent)
    controller                    cache, mapper, reconcile worker
    application                   settings, provider factory, manager, render, logs, CLI

Within a package, modules must not import each other in a cycle either.
Imports under `if TYPE_CHECKING:` count: a cycle for the type checker is a
cycle for the reader.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "agc_controller"

# unit (a subpackage, or a module directly under agc_controller) -> rank
LAYERS: dict[str, int] = {
    "__init__": 0,
    "core": 0,
    "translate": 1,
    "kube": 2,
    "queue": 2,
    "selfsigned": 2,
    "informers": 3,
    "status": 3,
    "runtime": 4,
    "mesh": 4,
    "providers": 5,
    "dataplane": 6,
    "controller": 7,
    "settings": 8,
    "logs": 8,
    "factory": 9,
    "render": 9,
    "manager": 9,
    "cli": 10,
}


@attrs.frozen
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted


def unit(module: str) -> str:
    """The layer unit of a dotted module name: its first component under the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(imports: Iterable[Import], layers: Mapping[str, int]) -> list[str]:
    """Every import that goes up, or sideways into another unit of the same rank."""
    problems = []
    for imp in imports:
        source, target = unit(imp.source), unit(imp.target)
        if source == target:
            continue
        for name in (source, target):
            if name not in layers:
                problems.append(f"{imp.source}: unit {name!r} has no layer (add it to LAYERS)")
        if source in layers and target in layers and layers[target] >= layers[source]:
            problems.append(
                f"{imp.source} imports {imp.target}: {source} (layer {layers[source]}) may not "
                f"import {target} (layer {layers[target]})"
            )
    return problems


def module_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: set[str]) -> str:
    """`pkg.x` is the module `pkg.x` when there is one, else an attribute of `pkg`."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def package_imports() -> list[Import]:
    files = sorted((ROOT / PACKAGE).rglob("*.py"))
    modules = {_module_name(f) for f in files}
    found = []
    for path in files:
        source = _module_name(path)
        package = source if path.name == "__init__.py" else source.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                targets = [f"{module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target == PACKAGE or target.startswith(f"{PACKAGE}."):
                    resolved = _resolve(target, modules)
                    if resolved != source:
                        found.append(Import(source, resolved))
    return found


def test_every_import_goes_down_the_layers() -> None:
    assert layer_violations(package_imports(), LAYERS) == []


def test_no_module_import_cycles() -> None:
    assert module_cycles(package_imports()) == []


def test_the_import_scan_sees_the_package() -> None:
    imports = package_imports()
    assert Import("agc_controller.controller.worker", "agc_controller.core.keys") in imports
    assert {unit(i.source) for i in imports} >= set(LAYERS) - {"__init__", "selfsigned", "logs"}


# The upward imports and cycles the package had before the layers were enforced
# (issue #12): the checker must refuse every one of them.
@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("agc_controller.runtime.manager", "agc_controller.controller.worker"),
        ("agc_controller.providers.factory", "agc_controller.dataplane.provider"),
        ("agc_controller.providers.local.outputs", "agc_controller.render"),
        ("agc_controller.translate", "agc_controller.providers.base"),
        ("agc_controller.translate.graph.gateway", "agc_controller.kube.resources"),
        ("agc_controller.translate.graph.routes", "agc_controller.status.model"),
        ("agc_controller.dataplane.provider", "agc_controller.settings"),
        ("agc_controller.queue.workqueue", "agc_controller.kube.client"),
    ],
)
def test_the_checker_refuses_an_upward_or_sideways_import(source: str, target: str) -> None:
    # (controller.worker -> runtime.events closed that cycle from below: it is allowed now
    # that the manager, which imports the controller, lives in the application layer)
    assert layer_violations([Import(source, target)], LAYERS) != []


def test_the_checker_finds_a_cycle_and_accepts_a_chain() -> None:
    cycle = [
        Import("agc_controller.render", "agc_controller.providers.local.outputs"),
        Import("agc_controller.providers.local.outputs", "agc_controller.render"),
    ]
    assert module_cycles(cycle) == [
        ["agc_controller.providers.local.outputs", "agc_controller.render"]
    ]
    chain = [Import("a.x", "a.y"), Import("a.y", "a.z")]
    assert module_cycles(chain) == []


def test_an_unknown_unit_is_reported() -> None:
    problems = layer_violations([Import("agc_controller.newthing", "agc_controller.core")], LAYERS)
    assert problems == ["agc_controller.newthing: unit 'newthing' has no layer (add it to LAYERS)"]


def test_the_vocabulary_depends_on_attrs_alone() -> None:
    outside = set()
    for path in sorted((ROOT / PACKAGE / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            outside |= {
                name.split(".")[0]
                for name in names
                if name.split(".")[0] not in sys.stdlib_module_names
            }
    assert outside <= {"attrs", PACKAGE}
