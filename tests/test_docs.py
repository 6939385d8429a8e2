"""The public docs are self-contained, match the code, and their commands run as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from livecalc.runtime import records

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
PUBLIC_TEXT = [
    ROOT / "README.md",
    *sorted(DOCS.rglob("*.md")),
    *sorted((ROOT / "src").rglob("*.py")),
    *sorted((ROOT / "src").rglob("*.h")),
    *sorted((ROOT / "src").rglob("*.md")),
    *sorted((ROOT / "examples").rglob("*.py")),
    *sorted((ROOT / "examples").rglob("*.c")),
    *sorted((ROOT / "examples").rglob("*.json")),
    *sorted((ROOT / "benchmarks").rglob("*.py")),
]
LAYOUTS = {
    "POLICY": records.POLICY_DTYPE,
    "POLICY_EXT": records.POLICY_EXT_DTYPE,
    "SCENARIO": records.SCENARIO_DTYPE,
    "RESULT": records.RESULT_DTYPE,
    "RESULT_DETAIL": records.RESULT_DETAIL_DTYPE,
    "SCENARIO_TOTAL": records.SCENARIO_TOTAL_DTYPE,
    "RESULT_DETAIL_EXT": records.RESULT_DETAIL_EXT_DTYPE,
    "CASHFLOW": records.CASHFLOW_DTYPE,
}
_TYPE_NAMES = {"u1": "u8", "u4": "u32", "i4": "i32", "u8": "u64", "f8": "f64"}


def _section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of the same or higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n") + len(heading) + 1
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", text[start:], re.M)]
    return text[start : start + ends[0]] if ends else text[start:]


def _blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of one language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


class TestSelfContainedDocs:
    def test_nothing_points_outside_the_repository(self) -> None:
        """No doc, docstring, header or example mentions ../shared or DESIGN.md."""
        found = [
            f"{path.relative_to(ROOT)}:{n}"
            for path in PUBLIC_TEXT
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if "../shared" in line or "DESIGN.md" in line
        ]

        assert [] == found

    def test_relative_links_in_docs_exist(self) -> None:
        """Every relative markdown link in README.md and docs/ names a file of the repository."""
        broken = []
        for path in [ROOT / "README.md", *DOCS.rglob("*.md")]:
            for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
                file = target.split("#", 1)[0]
                local = file and not re.match(r"[a-z]+:", file)
                if local and not (path.parent / file).exists():
                    broken.append(f"{path.relative_to(ROOT)}: {target}")

        assert [] == broken


class TestRecordLayouts:
    def _table(self, name: str) -> tuple[int, list[tuple[int, int, str, str]]]:
        """The byte size in a layout's heading and its (offset, size, type, field) rows."""
        text = (DOCS / "data.md").read_text(encoding="utf-8")
        heading = next(h for h in re.findall(r"^### .*$", text, re.M) if h.split()[1] == name)
        size = int(re.fullmatch(r"### \S+ \((\d+) bytes\)", heading).group(1))  # type: ignore[union-attr]
        rows = re.findall(
            r"^\| (\d+) \| (\d+) \| (\w+) \| `(\w+)` \|", _section(text, heading), re.M
        )
        return size, [(int(o), int(s), t, f) for o, s, t, f in rows]

    @pytest.mark.parametrize("name", sorted(LAYOUTS))
    def test_data_md_gives_every_field_at_its_offset(self, name: str) -> None:
        """data.md's table of a record lists every dtype field with its offset, size and type,
        and the record's item size."""
        dtype: Any = LAYOUTS[name]
        expected = [
            (
                offset,
                sub.itemsize,
                _TYPE_NAMES[sub.str.lstrip("<|>")],
                field,
            )
            for field, (sub, offset) in sorted(dtype.fields.items(), key=lambda f: f[1][1])
        ]

        size, rows = self._table(name)

        assert (dtype.itemsize, expected) == (size, rows)

    @pytest.mark.parametrize("name", sorted(LAYOUTS))
    def test_rows_tile_the_record_without_gaps(self, name: str) -> None:
        """The documented fields cover the record's bytes exactly once, in order."""
        size, rows = self._table(name)

        assert [0, *[o + s for o, s, _, _ in rows][:-1]] == [o for o, _, _, _ in rows]
        assert size == rows[-1][0] + rows[-1][1]

    def test_header_and_native_md_refer_to_data_md(self) -> None:
        """The C header and native.md send readers to data.md for the layouts."""
        header = (ROOT / "src/livecalc/include/livecalc_engine.h").read_text(encoding="utf-8")
        native = (DOCS / "native.md").read_text(encoding="utf-8")

        assert "docs/data.md" in header
        assert "data.md#record-layouts-byte-by-byte" in native


class TestAssumptionTables:
    def test_packaged_tables_have_the_documented_layouts(self) -> None:
        """The packaged mortality and lapse tables have the columns data.md documents."""
        text = _section((DOCS / "data.md").read_text(encoding="utf-8"), "## Assumption tables")
        data = ROOT / "src/livecalc/data"
        mortality = (data / "mortality_gompertz_makeham.csv").read_text().splitlines()[0]
        lapse = (data / "lapse_standard.csv").read_text().splitlines()[0]

        assert "age,q_male,q_female" == mortality.replace('"', "")
        assert "policy_year,rate" == lapse
        assert "age,q_male,q_female" in text
        assert "policy_year,rate" in text
        assert "The last\nrate carries on" in text

    def test_last_lapse_rate_carries_on(self, tmp_path: Path) -> None:
        """A lapse table of two years gives its second rate to every later year, as documented."""
        from livecalc.assumptions.tables import load_rate_table

        path = tmp_path / "lapse.csv"
        path.write_text("policy_year,rate\n1,0.2\n2,0.05\n")

        table = load_rate_table(path)

        assert [0.2, 0.05, 0.05, 0.05] == [table.rate(y) for y in (1, 2, 3, 40)]


class TestNativeWalkthrough:
    def test_config_in_the_doc_is_the_example_file(self) -> None:
        """The JSON shown in native.md is examples/native/pipeline.json (less its $schema)."""
        doc = (DOCS / "native.md").read_text(encoding="utf-8")
        shown = json.loads(_blocks(_section(doc, "## A complete native pipeline"), "json")[0])
        example = json.loads((ROOT / "examples/native/pipeline.json").read_text())
        example.pop("$schema")

        assert example == shown

    def test_documented_commands_build_and_run_the_pipeline(self, tmp_path: Path) -> None:
        """The bash commands of native.md, run as written from a copy of the repository's
        layout, compile the engine with the system C compiler and run the pipeline."""
        # The documented commands use the system C compiler; CI's Debian image has it.
        assert shutil.which("cc") is not None, "a C compiler is needed: apt-get install gcc"
        doc = (DOCS / "native.md").read_text(encoding="utf-8")
        script = "set -e\n" + "".join(
            _blocks(_section(doc, "## A complete native pipeline"), "bash")
        )
        for rel in ("examples/native", "examples/data", "src/livecalc/include"):
            shutil.copytree(ROOT / rel, tmp_path / rel)
        env = dict(
            os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        )

        done = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
        )

        assert 0 == done.returncode, done.stderr[-3000:]
        assert "wrote totals:" in done.stdout
        totals = pq.read_table(tmp_path / "examples/output/native/totals.parquet")
        assert 100 == totals.num_rows
        assert np.isfinite(totals.column("npv").to_numpy()).all()

    def test_the_stress_changes_the_result(self, tmp_path: Path) -> None:
        """The factor reaches the C engine: a factor of 1 and of 1.1 give different totals."""
        # The documented commands use the system C compiler; CI's Debian image has it.
        assert shutil.which("cc") is not None, "a C compiler is needed: apt-get install gcc"
        for rel in ("examples/native", "examples/data"):
            shutil.copytree(ROOT / rel, tmp_path / rel)
        lib = tmp_path / "examples/native/build/libscale.so"
        lib.parent.mkdir()
        subprocess.run(
            [
                "cc",
                "-shared",
                "-fPIC",
                "-O2",
                f"-I{ROOT / 'src/livecalc/include'}",
                str(tmp_path / "examples/native/scale_rates.c"),
                "-o",
                str(lib),
            ],
            check=True,
        )
        livecalc = Path(sys.executable).with_name("livecalc")
        config = tmp_path / "examples/native/pipeline.json"
        npv = {}
        for factor in ("1.0", "1.1"):
            subprocess.run(
                [
                    str(livecalc),
                    "run",
                    str(config),
                    "--no-progress",
                    "--set",
                    f"stress.factor={factor}",
                ],
                check=True,
                capture_output=True,
            )
            out = tmp_path / "examples/output/native/totals.parquet"
            npv[factor] = pq.read_table(out).column("npv").to_numpy()

        assert not np.allclose(npv["1.0"], npv["1.1"])


class TestCliExamples:
    def test_example_runs_in_cli_md_run_as_written(self, tmp_path: Path) -> None:
        """Each `$ livecalc run examples/...` line of cli.md runs, as written, from a copy of
        the examples: exit 0, and no `warning:` (a key with no effect, say)."""
        doc = (DOCS / "cli.md").read_text(encoding="utf-8")
        lines = [
            line.removeprefix("$ ")
            for block in re.findall(r"^```\n(.*?)^```", doc, re.M | re.S)
            for line in block.splitlines()
            if line.startswith("$ livecalc run examples/")
        ]
        shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=_no_outputs)
        env = dict(
            os.environ,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            LIVECALC_HOME=str(tmp_path / "home"),
        )

        assert lines, "cli.md shows no run of an example"
        for line in lines:
            done = subprocess.run(
                ["bash", "-c", f"set -e; {line} --no-progress"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
            )

            assert 0 == done.returncode, (line, done.stderr[-3000:])
            assert "warning" not in (done.stdout + done.stderr).lower(), line


def _no_outputs(folder: str, names: list[str]) -> list[str]:
    """shutil.copytree's ignore: the examples' outputs and build folders."""
    return [n for n in names if n in ("output", "build", "__pycache__")]
