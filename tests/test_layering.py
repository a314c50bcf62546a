"""The modules of minicluster/ and cli/ import each other without cycles.

A cycle makes what a module sees at import time depend on which module of the cycle was imported
first, and it ties the modules together so that neither can be read, tested or replaced alone.
Imports under `if TYPE_CHECKING:` are left out (they never run); imports inside functions count
(they run, only later).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("minicluster", "cli")


def _modules(root: Path, packages: Iterable[str]) -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, whether it is a package's __init__)."""
    modules: dict[str, tuple[Path, bool]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            modules[".".join(parts)] = (path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(
    name: str, path: Path, is_package: bool, modules: dict[str, tuple[Path, bool]]
) -> list[str]:
    """Every module name an import statement of the module names, outside TYPE_CHECKING blocks."""
    found: list[str] = []

    def visit(nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    # `from package import module` imports the module (the package is a
                    # parent, imported first anyway); `from module import name` the module
                    submodule = f"{module}.{alias.name}"
                    found.append(submodule if submodule in modules else module)
            else:
                visit(ast.iter_child_nodes(node))

    visit(ast.parse(path.read_text(), str(path)).body)
    return found


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (the nearest enclosing module for a name that
    is not one, so `from pkg.mod import Class` is an edge to pkg.mod)."""
    modules = _modules(root, packages)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        targets: set[str] = set()
        for imported in _imported_names(name, path, is_package, modules):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return cycles


def _describe(cycle: list[str], graph: dict[str, set[str]]) -> str:
    members = set(cycle)
    edges = ", ".join(
        f"{module} -> {target}" for module in cycle for target in sorted(graph[module] & members)
    )
    return f"{' <-> '.join(cycle)} ({edges})"


def test_no_module_of_minicluster_or_cli_imports_itself_through_others() -> None:
    graph = import_graph(ROOT, PACKAGES)
    # the graph is the real one: the service imports the endpoints it hosts
    assert "minicluster.rpc.endpoint" in graph["minicluster.rpc.service"]
    cycles = import_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(_describe(c, graph) for c in cycles)


def test_the_layering_check_finds_a_cycle_and_ignores_type_checking_imports(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text("def f():\n    from pkg import c\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nimport pkg.a\nif TYPE_CHECKING:\n    from . import d\n"
    )
    (package / "d.py").write_text("from pkg.c import x\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


# --- readers of the cluster use its public snapshot, not endpoints' private fields --------

READERS = (
    "minicluster/console",
    "minicluster/rest",
    "minicluster/scenario",
    "minicluster/simulate",
    "cli",
)
# not a cluster or rpc object: the paced clock wraps trio's MockClock, whose jump it replaces
NOT_OF_THE_CLUSTER = {"minicluster/scenario/clock.py": {"clock._autojump"}}


def _private_accesses(source: str) -> list[tuple[int, str]]:
    """`obj._name` where obj is not self or cls (dunder names are not private)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append((node.lineno, f"{ast.unparse(node.value)}.{name}"))
    return found


def test_readers_of_the_cluster_touch_no_private_attribute_of_another_object() -> None:
    """The console, scenarios, the simulator and the command line read the cluster through
    its typed snapshot and public methods: a private attribute of an endpoint (or of any
    object but their own) is not theirs to read."""
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for folder in READERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, text in _private_accesses(path.read_text(encoding="utf-8"))
        if text not in NOT_OF_THE_CLUSTER.get(str(path.relative_to(ROOT)), ())
    ]
    assert offences == []


def test_the_private_access_check_finds_another_objects_private_attribute() -> None:
    source = "def f(jm):\n    self._own = jm._pending\n    return type(jm).__name__\n"
    assert _private_accesses(source) == [(2, "jm._pending")]


# --- one naming scheme for components ----------------------------------------------------

# a scenario name job_master:<job> (a message that shows the YAML form "{job_master: JOB}" is
# not one)
_COMPONENT_SPELLING = re.compile(r"jobmaster-|taskexecutor-|job_master:(?! )")


def _component_strings(source: str) -> list[int]:
    """Lines where code (not a docstring or comment) spells a component name prefix."""
    tree = ast.parse(source)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and _COMPONENT_SPELLING.search(node.value)
    ]


def test_components_are_named_in_one_module_only() -> None:
    # endpoint ids (jobmaster-<hex>, taskexecutor-<id>) and scenario names (job_master:<job>)
    # are built and split in minicluster/cluster/components.py; nowhere else
    found = []
    for name, (path, _) in _modules(ROOT, PACKAGES).items():
        if name == "minicluster.cluster.components":
            continue
        for line in _component_strings(path.read_text(encoding="utf-8")):
            found.append(f"{path.relative_to(ROOT)}:{line}")
    assert found == []


def test_the_naming_check_finds_a_spelled_out_component_but_not_a_docstring() -> None:
    source = (
        '"""jobmaster-1 in a docstring is fine."""\nx = f"jobmaster-{1}"\ny = "job_master:" + "a"\n'
    )
    assert _component_strings(source) == [2, 3]


def test_no_module_is_over_800_lines_unless_it_says_why() -> None:
    # small modules with one job each: a longer one must say in its first lines why it is long
    long = []
    for path, _ in _modules(ROOT, PACKAGES).values():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > 800 and not any("long" in line.lower() for line in lines[:15]):
            long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert long == []
