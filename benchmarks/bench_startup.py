"""How fast LiveCalc starts: ``import livecalc``, ``livecalc --help``, and the first public name.

Each figure is the median wall time of fresh interpreter processes (warm file cache: one
unmeasured run first). The baseline, measured in the same run, is a bare ``python -c pass``:
the interpreter's own start-up, which no package can beat. Targets: ``import livecalc`` under
0.3 s and ``livecalc --help`` under 0.5 s on a 2-core machine.

Run: ``.venv/bin/python benchmarks/bench_startup.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CLI = Path(sys.executable).with_name("livecalc")

CASES: dict[str, list[str]] = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "import livecalc": [sys.executable, "-c", "import livecalc"],
    "livecalc --help": [str(CLI), "--help"],
    "livecalc.PipelineConfig (pydantic models)": [
        sys.executable,
        "-c",
        "import livecalc; livecalc.PipelineConfig",
    ],
    "livecalc.run (pipeline, pyarrow)": [sys.executable, "-c", "import livecalc; livecalc.run"],
}


def median_seconds(argv: list[str], repeats: int) -> float:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    subprocess.run(argv, check=True, capture_output=True, env=env)  # warm the file cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    base = None
    print(f"{'case':44} {'median s':>9} {'x baseline':>11}")
    for label, argv in CASES.items():
        seconds = median_seconds(argv, args.repeats)
        base = base or seconds
        print(f"{label:44} {seconds:9.3f} {seconds / base:11.1f}")


if __name__ == "__main__":
    main()
