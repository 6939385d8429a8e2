"""Files and paths (issue 19, items 17 and 19): targets that are not regular files are never
replaced, and odd paths, names and stores give one line and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import livecalc
from livecalc.cli.app import app
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.io.parquet import ParquetWriter
from livecalc.ops.store import RunStore
from livecalc.pipeline._summary import write_json_atomic
from livecalc.runtime.records import RESULT_DTYPE

PLUGIN = "livecalc.testing:register_testing_engines"


def _config(folder: Path, **changes: Any) -> Path:
    """An echo pipeline of 20 policies writing out/a.parquet and out/summary.json."""
    data = folder / "data" / "policies.parquet"
    data.parent.mkdir(parents=True, exist_ok=True)
    if not data.exists():
        write_policies(data, generate_policies(20, seed=1))
    raw: dict[str, Any] = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "data/policies.parquet"}},
        "engines": [{"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["r"]}],
        "output": {"path": "out/a.parquet", "summary_path": "out/summary.json"},
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            raw.setdefault(section, {})[name] = value
        else:
            raw[section] = value
    path = folder / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _one_line_exit_2(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert 2 == result.exit_code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.output


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "out" / "pipe"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


class TestTargetsThatAreNotFiles:
    """A device, FIFO or socket at an output's path is refused, and left as it was."""

    @pytest.mark.parametrize("key", ["output__path", "output__summary_path"])
    def test_an_output_or_summary_onto_a_fifo_is_refused_at_validation(
        self, tmp_path: Path, fifo: Path, key: str
    ) -> None:
        config = _config(tmp_path, **{key: "out/pipe"})
        before = _files(tmp_path)

        for command in ("validate", "run"):
            output = _one_line_exit_2([command, str(config)])
            assert "is a FIFO (named pipe), not a regular file" in output
        assert fifo.is_fifo()
        assert before == _files(tmp_path)

    def test_writers_refuse_a_fifo(self, fifo: Path) -> None:
        """The writers themselves refuse it too (a target that became a FIFO after
        validation, or a caller of the API)."""
        with pytest.raises(ConfigurationError, match="FIFO"):
            ParquetWriter(fifo, RESULT_DTYPE)
        with pytest.raises(ConfigurationError, match="FIFO"):
            write_json_atomic(fifo, {"a": 1})
        assert fifo.is_fifo()
        assert [fifo.name] == os.listdir(fifo.parent)  # no temporary file left

    def test_a_report_onto_a_fifo_is_refused(self, tmp_path: Path, fifo: Path) -> None:
        """`livecalc report RUN --out FIFO` and `run --report FIFO` (before the run) exit 2."""
        config = _config(tmp_path)
        done = livecalc.run(config)

        output = _one_line_exit_2(["report", done.run_id, "--out", str(fifo)])
        run_output = _one_line_exit_2(["run", str(config), "--report", str(fifo)])

        assert "FIFO" in output and "FIFO" in run_output
        assert fifo.is_fifo()

    def test_a_character_device_is_named_as_one(self) -> None:
        """/dev/null is only inspected (os.stat), never written, by this test."""
        from livecalc.runtime.leftovers import not_regular_file

        assert "is a character device" in (not_regular_file(Path("/dev/null")) or "")
        assert None is not_regular_file(Path("/nonexistent/x"))


class TestOneLineErrors:
    """Each case of item 19, from the CLI: exit 2, one error, no traceback, nothing written."""

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"output__path": "out/a\x00b.parquet"}, r"output.path: a path cannot hold a NUL"),
            (
                {"output__path": "~nonexistentuser/x.parquet"},
                "'~nonexistentuser' names no user of this machine",
            ),
            (
                {"data_sources": {"policies": {"path": "~nonexistentuser/p.parquet"}}},
                "data_sources.policies.path: '~nonexistentuser' names no user",
            ),
            (
                {"data_sources": {"policies": {"path": "data/policies.parquet"}, "x\udcff": {}}},
                r"data_sources.x\\udcff: the key is not valid Unicode",
            ),
            (
                {"run__chunking": {"strategy": "memory", "budget": "0"}},
                "run.chunking: the memory budget must be at least 1 byte",
            ),
            (
                {"checks": [{"name": "\ud800", "kind": "row_count", "dataset": "r", "min": 1}]},
                r"checks\[0\].name: .*\\ud800",
            ),
        ],
    )
    def test_config_values(self, tmp_path: Path, changes: dict[str, Any], message: str) -> None:
        config = _config(tmp_path, **changes)
        before = _files(tmp_path)

        for command in ("validate", "run"):
            output = _one_line_exit_2([command, str(config)])
            assert re.search(message, output), output
        assert before == _files(tmp_path)

    def test_a_config_in_a_folder_whose_name_is_not_utf8(self, tmp_path: Path) -> None:
        _config(tmp_path / "good")  # pyarrow cannot write into the other folder
        folder = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xffdir"))
        os.rename(tmp_path / "good", folder)
        config = folder / "config.json"
        exe = Path(sys.executable).with_name("livecalc")

        done = subprocess.run(
            [str(exe), "run", os.fsencode(config), "--no-progress"],
            capture_output=True,
            timeout=300,
        )

        stderr = done.stderr.decode("utf-8", "replace")
        assert 2 == done.returncode, stderr
        assert "Traceback" not in stderr
        assert "has a name that is not UTF-8" in stderr
        assert not (folder / "out").exists()
        # Recorded as failed all the same: the store escapes the name DuckDB cannot hold.
        (run_id,) = RunStore().run_ids()
        record = RunStore().get(run_id)
        assert "failed" == record["status"]
        assert "bad\\udcffdir" in record["provenance"]["config_path"]

    def test_a_store_of_another_program(self, tmp_path: Path) -> None:
        """A DuckDB file with its own `runs` table: exit 2 naming it, the file unchanged."""
        import duckdb

        other = tmp_path / "other.duckdb"
        with duckdb.connect(str(other)) as con:
            con.execute("CREATE TABLE runs (id INTEGER, name VARCHAR)")
            con.execute("INSERT INTO runs VALUES (1, 'theirs')")
        config = _config(tmp_path)

        run = CliRunner().invoke(app, ["run", str(config), "--store", str(other)])
        listed = _one_line_exit_2(["runs", "list", "--store", str(other)])

        assert 2 == run.exit_code, run.output
        assert "Traceback" not in run.output
        assert "not a LiveCalc run store" in run.output + listed
        with duckdb.connect(str(other)) as con:
            assert [("runs",)] == con.execute("SHOW TABLES").fetchall()
            assert [(1, "theirs")] == con.execute("SELECT * FROM runs").fetchall()

    def test_paths_with_an_unknown_user_outside_the_config(self, tmp_path: Path) -> None:
        """A ~user of no user in `--dataset` or the API's keep_datasets: one line naming it."""
        two = [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["r"]},
            {"id": "b", "type": "test_echo", "inputs": ["r"], "outputs": ["s"]},
        ]
        config = _config(tmp_path, engines=two)
        args = ["run", str(config), "--node", "b", "--dataset", "r=~nonexistentuser/r.parquet"]

        output = _one_line_exit_2(args)
        with pytest.raises(ConfigurationError, match="keep_datasets: '~nonexistentuser/k'"):
            livecalc.run(config, keep_datasets="~nonexistentuser/k")

        assert "'~nonexistentuser' names no user" in output


class TestKeptDatasets:
    """Item 18: a dataset file the run would overwrite is refused; kept files are copies,
    checked by sha256 when read."""

    def _two_nodes(self, tmp_path: Path) -> Path:
        two = [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["r"]},
            {"id": "b", "type": "test_echo", "inputs": ["r"], "outputs": ["s"]},
        ]
        output = {"path": "out/{name}.parquet", "write": ["r", "s"]}
        return _config(tmp_path, engines=two, output=output)

    def test_a_dataset_file_the_run_writes_is_refused(self, tmp_path: Path) -> None:
        """`--node b --dataset r=out/s.parquet`: node b writes out/s.parquet itself; the
        file is refused before the run, and left as it was."""
        config = self._two_nodes(tmp_path)
        assert livecalc.run(config, store=False).success
        target = tmp_path / "out" / "s.parquet"
        before = target.read_bytes()

        output = _one_line_exit_2(
            ["run", str(config), "--node", "b", "--dataset", f"r={target}", "--no-progress"]
        )

        assert "is also output.path (output 's' of node 'b') of this run" in output
        assert before == target.read_bytes()

    def test_a_kept_output_is_a_copy_that_a_rewrite_in_place_leaves_alone(
        self, tmp_path: Path
    ) -> None:
        """The kept r is not a hard link of out/r.parquet: writing into the output file in
        place (as `cp` or a redirect does) leaves the kept file as the run kept it."""
        config = self._two_nodes(tmp_path)
        result = livecalc.run(config, keep_datasets=tmp_path / "kept", store=False)
        kept = Path(result.summary.extras["datasets"]["r"])
        output = tmp_path / "out" / "r.parquet"
        original = kept.read_bytes()

        assert original == output.read_bytes()
        assert not os.path.samefile(kept, output)
        with open(output, "r+b") as f:  # in place: same inode, new bytes
            f.write(b"\0" * 64)
        assert original == kept.read_bytes()

    def test_a_kept_file_changed_since_is_refused_when_read(self, tmp_path: Path) -> None:
        """SHA256SUMS lists each kept file; a kept file edited since is refused by the run
        that reads it (exit 2, naming it), the untouched one is read."""
        config = self._two_nodes(tmp_path)
        result = livecalc.run(config, nodes=["a"], keep_datasets=tmp_path / "kept", store=False)
        kept = Path(result.summary.extras["datasets"]["r"])
        sums = (tmp_path / "kept" / "SHA256SUMS").read_text()
        args = ["run", str(config), "--node", "b", "--dataset", f"r={kept}", "--no-progress"]

        assert f"  {kept.name}\n" in sums
        assert 0 == CliRunner().invoke(app, args).exit_code
        data = bytearray(kept.read_bytes())
        data[len(data) // 2] ^= 1
        kept.write_bytes(bytes(data))
        output = _one_line_exit_2(args)

        assert f"datasets['r']: {kept} changed since its run kept it" in output
