"""Every file-valued key of every built-in engine resolves against the config's folder.

Engines declare their file keys (``ICalcEngine.config_file_keys``); the pipeline resolves
exactly those, whatever the working directory, instead of guessing by key name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.api import check_engines
from livecalc.pipeline.loading import load_config
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.native import HEADER_PATH

DATA = Path(__file__).parents[1] / "src" / "livecalc" / "data"
NATIVE_SOURCE = Path(__file__).parent / "native" / "scale_engine.c"

# (engine type, the key's JSON path as a list, the file name, its text), one per file key.
FILE_KEYS: list[tuple[str, list[str | int], str, str]] = [
    ("esg", ["curve", "file"], "curve.csv", "maturity,rate\n1,0.02\n30,0.03\n"),
    ("projection", ["mortality_table"], "mortality.csv", ""),
    ("projection", ["lapse_table"], "lapse.csv", ""),
    ("projection", ["commissions"], "commissions.csv", "policy_year,rate\n1,0.5\n2,0.05\n"),
    ("projection", ["surrender_values"], "surrender.csv", "policy_year,rate\n1,0.0\n2,0.1\n"),
    (
        "projection",
        ["yield_curve"],
        "yields.csv",
        "year,rate\n" + "".join(f"{y},0.02\n" for y in range(1, 121)),
    ),
    (
        "projection",
        ["discounting", "file"],
        "factors.csv",
        "step,discount_factor\n" + "".join(f"{s},{0.97**s:.10f}\n" for s in range(1, 121)),
    ),
    ("projection", ["premium", "table"], "premium_rates.csv", "gender,rate\n0,0.001\n1,0.0012\n"),
    ("solver", ["optimization", "objective", "target"], "target.csv", "name,value\nmean,0\n"),
    (
        "solver",
        ["optimization", "constraints", 0, "value"],
        "floor.csv",
        "name,value\ncte_95,-1e9\n",
    ),
    ("native", ["library"], "libscale.so", ""),
]

_BASE: dict[str, dict[str, Any]] = {
    "esg": {"outer": 1, "inner": 2, "years": 5},
    "projection": {},
    "solver": {
        "optimization": {
            "parameters": [{"name": "premium_multiplier", "bounds": [0.5, 2.0]}],
            "objective": {"metric": "mean", "direction": "target", "target": 0.0},
            "constraints": [{"metric": "cte_95", "operator": ">=", "value": 0.0}],
        }
    },
    "native": {"factor": 2.0},
}


# Keys that are read only with other keys set: the rest of their block.
_EXTRA: dict[str, dict[str, Any]] = {
    "discounting.file": {"discounting": {"convention": "curve_per_step"}},
    "premium.table": {"premium": {"method": "rate_table", "keys": ["gender"]}},
}


def _write_file(folder: Path, name: str, text: str) -> None:
    target = folder / "tables" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if name == "mortality.csv":
        shutil.copy(DATA / "mortality_gompertz_makeham.csv", target)
    elif name == "lapse.csv":
        shutil.copy(DATA / "lapse_standard.csv", target)
    elif name == "libscale.so":
        compiler = shutil.which("gcc") or shutil.which("cc")
        assert compiler is not None, "a C compiler is needed: apt-get install gcc"
        command = [compiler, "-shared", "-fPIC", f"-I{HEADER_PATH.parent}", str(NATIVE_SOURCE)]
        subprocess.run([*command, "-o", str(target)], check=True)
    else:
        target.write_text(text, encoding="utf-8")


def _set(config: dict[str, Any], path: list[str | int], value: str) -> None:
    node: Any = config
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[path[-1]] = value


def _node(engine_type: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": engine_type,
        "type": engine_type,
        "config": json.loads(json.dumps(_BASE[engine_type])),
        "outputs": ["out"],
    }
    if engine_type in ("native", "projection"):
        node["inputs"] = ["policies"]
    return node


def _pipeline(folder: Path, nodes: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_policies(folder / "policies.parquet", generate_policies(20, seed=1))
    # Validation wants a solver fed by projection results: give a lone solver a projection.
    for node in list(nodes):
        if node["type"] == "solver" and not node.get("inputs"):
            upstream = _node("projection")
            upstream.update(id="upstream_projection", outputs=["upstream_results"])
            nodes.insert(nodes.index(node), upstream)
            node["inputs"] = ["upstream_results"]
    config = {"data_sources": {"policies": {"path": "policies.parquet"}}, "engines": nodes}
    path = folder / "pipeline.json"
    path.write_text(json.dumps(config), "utf-8")
    return path


class TestDeclaredFileKeys:
    def test_builtin_engines_declare_every_file_key(self) -> None:
        """Each built-in engine type declares exactly the file keys this test covers."""
        factory = EngineFactory(discover=False)
        declared = {t: factory.config_file_keys(t) for t in ("esg", "projection", "solver")}
        declared["native"] = factory.config_file_keys("native")

        expected: dict[str, list[str]] = {}
        for engine_type, path, _, _ in FILE_KEYS:
            dotted = ".".join("*" if isinstance(p, int) else p for p in path)
            expected.setdefault(engine_type, []).append(dotted)
        assert {t: tuple(keys) for t, keys in expected.items()} == declared

    @pytest.mark.parametrize(
        ("engine_type", "path", "name", "text"),
        FILE_KEYS,
        ids=[f"{t}:{'.'.join(map(str, p))}" for t, p, _, _ in FILE_KEYS],
    )
    def test_relative_file_resolves_from_another_folder(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        engine_type: str,
        path: list[str | int],
        name: str,
        text: str,
    ) -> None:
        """A relative path under a declared key is found beside the config from any cwd."""
        project = tmp_path / "project"
        _write_file(project, name, text)
        node = _node(engine_type)
        node["config"].update(json.loads(json.dumps(_EXTRA.get(".".join(map(str, path)), {}))))
        _set(node["config"], path, f"tables/{name}")
        config_path = _pipeline(project, [node])
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")

        checked = check_engines(config_path)

        resolved: Any = checked.engine_config(engine_type)
        for part in path:
            resolved = resolved[part]
        assert str(project / "tables" / name) == resolved

    def test_undeclared_keys_are_left_alone(self, tmp_path: Path) -> None:
        """A value under a key the engine does not declare stays as written, even when its key
        looks like a path and a file of that name lies beside the config."""
        (tmp_path / "cte_95").write_text("x", encoding="utf-8")
        node = _node("solver")
        node["config"]["custom_metrics"] = {"reserve_path": "cte_95"}
        config = load_config(_pipeline(tmp_path, [node]))

        resolved = config.engine_config("solver")

        assert {"reserve_path": "cte_95"} == resolved["custom_metrics"]

    def test_cli_validate_from_another_folder_uses_every_file_key(self, tmp_path: Path) -> None:
        """`livecalc validate` started elsewhere finds every relative file of a whole pipeline."""
        project = tmp_path / "project"
        for engine_type, _, name, text in FILE_KEYS:
            if engine_type != "native":
                _write_file(project, name, text)
        nodes = [_node("esg"), _node("projection"), _node("solver")]
        nodes[1]["inputs"], nodes[2]["inputs"] = ["policies", "out_esg"], ["out_proj"]
        nodes[0]["outputs"], nodes[1]["outputs"] = ["out_esg"], ["out_proj"]
        nodes[2]["outputs"] = []
        nodes[0]["config"]["years"] = 120  # the policies run up to 120 years
        by_type = {n["type"]: n for n in nodes}
        for engine_type, path, name, _ in FILE_KEYS:
            # Keys that need their own block (curve_per_step, rate_table premiums) exclude
            # others set here (yield_curve, scenarios); their own tests above cover them.
            if engine_type != "native" and ".".join(map(str, path)) not in _EXTRA:
                _set(by_type[engine_type]["config"], path, f"tables/{name}")
        config_path = _pipeline(project, nodes)
        (tmp_path / "elsewhere").mkdir()
        cli = [str(Path(sys.executable).parent / "livecalc"), "validate", str(config_path)]

        result = subprocess.run(
            cli, cwd=tmp_path / "elsewhere", capture_output=True, text=True, timeout=120
        )

        assert 0 == result.returncode, result.stderr
