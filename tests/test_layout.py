"""The package layout holds its rules: no import cycles, and no layer importing a higher one.

Every ``import`` statement counts, at module level or inside a function (a deferred import is
still a dependency); only imports under ``if TYPE_CHECKING:`` are left out, since they never
run. The layers are those of docs/architecture.md.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "livecalc"

# Lower numbers sit lower: a module may import its own layer and the layers below.
LAYERS: dict[str, int] = {
    "livecalc._version": 0,
    "livecalc.errors": 0,
    "livecalc.home": 0,
    "livecalc.masking": 0,
    "livecalc.log": 0,
    "livecalc.ports": 0,
    "livecalc.assumptions": 1,
    "livecalc.runtime": 2,
    "livecalc.kernels": 3,
    "livecalc.solver": 3,
    "livecalc.engines": 4,
    "livecalc.io": 5,
    "livecalc.pipeline": 6,
    "livecalc.ops": 7,
    "livecalc.testing": 8,
    "livecalc.integrations": 8,
    "livecalc.cli": 9,
    "livecalc": 9,  # the package's __init__: the public names
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of the longest LAYERS prefix of ``module``."""
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The livecalc modules ``path`` imports (``from pkg import mod`` resolves to pkg.mod)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "livecalc")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] == "livecalc"
        ):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
    known = set(paths)
    return {name: imported_modules(path, known) & known for name, path in paths.items()}


class TestLayout:
    def test_every_module_has_a_layer(self) -> None:
        """A new top-level module or package is placed in a layer on purpose."""
        unplaced = [m for m in import_graph() if not any(
            m == p or m.startswith(p + ".") for p in LAYERS)]  # fmt: skip

        assert [] == unplaced

    def test_no_import_cycles(self) -> None:
        """graphlib finds no cycle among the modules (package __init__ re-exports aside)."""
        import graphlib

        graph = import_graph()
        # A package's __init__ importing its own submodules is how packages expose names; the
        # cycle that matters is between modules, so the package node itself is left out.
        graph.pop("livecalc", None)
        sorter = graphlib.TopologicalSorter(
            {m: {d for d in deps if d != "livecalc"} for m, deps in graph.items()}
        )
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:  # pragma: no cover - the failure message
            pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")

    def test_cycle_detection_finds_a_three_module_cycle(self) -> None:
        """The check above can fail: a cycle of three modules is found."""
        import graphlib

        sorter = graphlib.TopologicalSorter({"a": {"b"}, "b": {"c"}, "c": {"a"}})

        with pytest.raises(graphlib.CycleError):
            sorter.prepare()

    def test_no_lower_layer_imports_a_higher_one(self) -> None:
        violations = [
            f"{mod} (layer {layer_of(mod)}) imports {dep} (layer {layer_of(dep)})"
            for mod, deps in sorted(import_graph().items())
            for dep in sorted(deps)
            if layer_of(dep) > layer_of(mod)
        ]

        assert [] == violations

    def test_layer_rule_catches_an_upward_import(self, tmp_path: Path) -> None:
        """The rule is live: a runtime module importing the pipeline is flagged."""
        bad = tmp_path / "bad.py"
        bad.write_text("def f():\n    from livecalc.pipeline.runner import PipelineRunner\n")

        deps = imported_modules(bad, {"livecalc.pipeline.runner"})

        assert {"livecalc.pipeline.runner"} == deps
        assert layer_of("livecalc.pipeline.runner") > layer_of("livecalc.runtime.buffers")

    def test_private_modules_are_not_imported_across_packages(self) -> None:
        """A ``_private`` module is used only inside its own package."""
        violations = []
        for mod, deps in import_graph().items():
            for dep in deps:
                parent, _, leaf = dep.rpartition(".")
                private = leaf.startswith("_") and not leaf.startswith("__")
                if private and not (mod == parent or mod.startswith(parent + ".")):
                    violations.append(f"{mod} imports {dep}")

        assert [] == sorted(violations)

    def test_import_livecalc_loads_no_heavy_dependency(self) -> None:
        """``import livecalc`` is light: the public names load when first used."""
        code = (
            "import sys, livecalc; heavy = ('numba', 'pyarrow', 'fastapi', 'ray', 'httpx', "
            "'scipy', 'pandas', 'uvicorn'); "
            "print(sorted(h for h in heavy if h in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert "[]" == out.stdout.strip()

    def test_help_loads_no_engine(self) -> None:
        """``livecalc --help`` imports neither numba nor pyarrow."""
        code = (
            "import sys\n"
            "from livecalc.cli.app import app\n"
            "try:\n    app(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "print(sorted(h for h in ('numba', 'pyarrow', 'fastapi', 'ray') if h in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert "[]" == out.stdout.strip().splitlines()[-1]

    def test_cli_z_default_matches_the_check(self) -> None:
        """cli.esg keeps its own copy of the default |z| so that --help loads no kernel."""
        from livecalc.cli import esg as cli_esg
        from livecalc.engines import esg_check

        assert esg_check.DEFAULT_Z_THRESHOLD == cli_esg.DEFAULT_Z_THRESHOLD
