"""A constraint no multiplier can meet is reported as such by a real pipeline run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"
LIVECALC = str(Path(sys.executable).parent / "livecalc")


def test_infeasible_constraint_names_the_constraint_and_closest_value(tmp_path: Path) -> None:
    """`livecalc run` says which constraint cannot be met and the closest value reached, not
    SLSQP's "Positive directional derivative for linesearch" alone."""
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    config = json.loads((EXAMPLES / "dag_config_full_pipeline.json").read_text("utf-8"))
    config.pop("$schema")
    config["engines"][2]["config"]["optimization"] = {
        "algorithm": "slsqp",
        "parameters": [{"name": "premium_multiplier", "bounds": [0.5, 2.0]}],
        "objective": {"metric": "mean", "direction": "minimize"},
        "constraints": [{"metric": "mean", "operator": ">=", "value": 1e15}],
    }
    config["output"] = {"path": "out/results.parquet", "summary_path": "out/summary.json"}
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(config), "utf-8")

    result = subprocess.run(
        [LIVECALC, "run", str(path)], capture_output=True, text=True, timeout=300
    )

    summary = json.loads((tmp_path / "out" / "summary.json").read_text("utf-8"))
    reason = json.dumps(summary)
    assert 0 == result.returncode, result.stderr
    assert "constraint mean >= 1e+15 cannot be met within the parameter bounds" in reason
    assert "the closest value reached is mean = " in reason
    assert "(at premium_multiplier = 2)" in reason
