"""Checkpoints and resume: a real run killed with SIGKILL is finished by `livecalc resume`."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import livecalc
from livecalc.cli.app import app
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.checkpoint import (
    ArrowFsCheckpointStore,
    LocalCheckpointStore,
    RunCheckpoint,
    collect_garbage,
)
from livecalc.ops.session import resume
from livecalc.ops.store import RunStore
from livecalc.runtime.records import RESULT_DETAIL_DTYPE, SCENARIO_TOTAL_DTYPE

PLUGIN = "livecalc.testing:register_testing_engines"


def _projection_config(tmp_path: Path) -> Path:
    """ESG (1,000 scenarios, 30 years) -> projection of 5,000 policies in 10 chunks."""
    write_policies(tmp_path / "policies.parquet", generate_policies(5_000, seed=11, max_term=30))
    raw = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {
                    "model": "hull_white",
                    "outer": 10,
                    "inner": 100,
                    "years": 30,
                    "seed": 3,
                },
                "outputs": ["scenarios"],
            },
            {
                "id": "projection",
                "type": "projection",
                "config": {"output": "npv"},
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
        ],
        "output": {"path": "out/results.parquet"},
        # Every chunk checkpointed, however fast this machine computes it.
        "run": {"chunk_size": 500, "checkpoint_min_chunk_seconds": 0},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _data_bytes(path: Path) -> bytes:
    """A Parquet file's bytes before its footer: every data page, no key-value metadata."""
    raw = path.read_bytes()
    (footer,) = struct.unpack("<I", raw[-8:-4])
    return raw[: len(raw) - 8 - footer]


def _done(home: Path) -> tuple[str, int]:
    for manifest in home.glob("runs/*/manifest.json"):
        try:
            data = json.loads(manifest.read_text())
        except ValueError:
            continue
        node = data["nodes"].get("projection")
        return data["run_id"], len(node["done"]) if node else 0
    return "", 0


def _recorded(run_id: str) -> bool:
    try:
        return RunStore().get(run_id) is not None
    except ConfigurationError:
        time.sleep(0.2)
        return False


class TestResumeAfterSigkill:
    def test_killed_run_resumes_to_identical_outputs(
        self, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """SIGKILL after >= 4 of 10 chunks; resume computes only the rest; same bytes."""
        config = _projection_config(tmp_path)
        out = tmp_path / "out" / "results.parquet"
        assert livecalc.run(config, store=False).success
        reference = out.rename(tmp_path / "reference.parquet")
        exe = Path(sys.executable).with_name("livecalc")

        proc = subprocess.Popen(
            [str(exe), "run", str(config), "--no-progress"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 240
        run_id, done = "", 0
        recorded = False
        while (done < 4 or not recorded) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
            run_id, done = _done(livecalc_home)
            # The store records a run once it has run for a second: wait for that record too
            # (a run killed in its first second is not in the store, so cannot be resumed).
            if done >= 4 and not recorded:
                recorded = _recorded(run_id)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        run_id, done = _done(livecalc_home)
        assert -signal.SIGKILL == proc.returncode
        assert 4 <= done < 10
        assert not out.exists()
        assert "running" == RunStore().get(run_id)["status"]

        resumed = subprocess.run(
            [str(exe), "resume", run_id, "--no-progress"], capture_output=True, text=True,
            timeout=240,
        )  # fmt: skip
        record = RunStore().get(run_id)
        projection = next(n for n in record["nodes"] if n["node_id"] == "projection")

        assert 0 == resumed.returncode, resumed.stderr
        assert "succeeded" == record["status"]
        assert 1 == record["resumed"]
        assert (10, done) == (projection["chunks"], projection["reused_chunks"])
        assert 10 - done == projection["chunks"] - projection["reused_chunks"]
        assert _data_bytes(reference) == _data_bytes(out)
        assert pq.read_table(reference).equals(pq.read_table(out))
        # The finished run's parts are gone; its manifest says it is complete.
        assert [] == list(livecalc_home.glob(f"runs/{run_id}/projection/*"))
        again = CliRunner().invoke(app, ["resume", run_id])
        assert 2 == again.exit_code
        assert "nothing to resume" in again.output


def _failing_config(tmp_path: Path) -> Path:
    """Echo in 4 chunks, then a node that fails: a run that stops with a checkpoint."""
    write_policies(tmp_path / "policies.parquet", generate_policies(100, seed=1))
    raw = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
            {
                "id": "b",
                "type": "test_fail_n",
                "config": {"n": 99},
                "inputs": ["a_out"],
                "outputs": ["b_out"],
            },
        ],
        "output": {"path": "out/{name}.parquet", "write": ["a_out", "b_out"]},
        "run": {"chunk_size": 25, "checkpoint_min_chunk_seconds": 0},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


class TestResumeRefusals:
    def test_changed_config_or_input_is_refused(self, tmp_path: Path) -> None:
        """resume exits 2 naming the changed config, then the changed input file."""
        config = _failing_config(tmp_path)
        run_id = livecalc.run(config).run_id
        original = config.read_text()

        config.write_text(original.replace('"n": 99', '"n": 98'))
        changed_config = CliRunner().invoke(app, ["resume", run_id])
        config.write_text(original)
        write_policies(tmp_path / "policies.parquet", generate_policies(100, seed=2))
        changed_input = CliRunner().invoke(app, ["resume", run_id])

        assert 2 == changed_config.exit_code
        assert "config" in changed_config.output and "changed" in changed_config.output
        assert 2 == changed_input.exit_code
        assert "policies.parquet changed" in changed_input.output

    def test_unknown_run_has_no_checkpoint(self) -> None:
        """resume of a run with no checkpoint: exit 2, one line."""
        result = CliRunner().invoke(app, ["resume", "nosuchrun"])

        assert 2 == result.exit_code
        assert "has no checkpoint" in result.output

    def test_failed_run_resumes_reusing_its_chunks(self, tmp_path: Path) -> None:
        """A run that failed downstream keeps node a's 4 chunks; resume reuses all 4."""
        config = _failing_config(tmp_path)
        run_id = livecalc.run(config).run_id

        result = resume(run_id)

        assert (4, 4) == (result.nodes["a"].chunks, result.nodes["a"].reused_chunks)
        assert "failed" == result.nodes["b"].status

    def test_resume_through_a_pyarrow_filesystem_uri(self, tmp_path: Path) -> None:
        """Checkpoints on a pyarrow.fs URI: the run writes its parts there, resume reads them."""
        uri = (tmp_path / "object-store").as_uri()
        config = _failing_config(tmp_path)
        run_id = livecalc.run(config, checkpoint=uri).run_id

        parts = ArrowFsCheckpointStore(uri).list(run_id)
        result = resume(run_id, checkpoint=uri)

        assert 5 == len(parts)  # the manifest and node a's 4 parts
        assert (4, 4) == (result.nodes["a"].chunks, result.nodes["a"].reused_chunks)

    def test_config_given_as_a_dict_resumes_from_its_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A dict config's relative paths resolve against its base_dir again on resume."""
        raw = json.loads(_failing_config(tmp_path).read_text())
        run_id = livecalc.run(raw, base_dir=tmp_path).run_id
        monkeypatch.chdir(tmp_path.parent)

        result = resume(run_id)

        assert (4, 4) == (result.nodes["a"].chunks, result.nodes["a"].reused_chunks)

    def test_api_reports_a_store_it_cannot_write(self, tmp_path: Path) -> None:
        """livecalc.run with a corrupt store returns the result with store_error set."""
        bad = tmp_path / "s" / "runs.duckdb"
        bad.parent.mkdir()
        bad.write_bytes(b"x" * 5000)

        result = livecalc.run(_failing_config(tmp_path), store=bad.parent)

        assert str(bad) in result.summary.extras["store_error"]
        assert (tmp_path / "out" / "a_out.parquet").is_file()


class TestCheckpointPolicy:
    def test_fast_chunks_are_not_checkpointed_by_default(self, livecalc_home: Path) -> None:
        """Chunks computed in less than checkpoint_min_chunk_seconds are not written."""
        tmp = livecalc_home.parent / "fast"
        tmp.mkdir()
        raw = json.loads(_failing_config(tmp).read_text())
        raw["run"].pop("checkpoint_min_chunk_seconds")

        run_id = livecalc.run(raw, base_dir=tmp).run_id
        again = CliRunner().invoke(app, ["resume", run_id])

        assert [] == list(livecalc_home.glob("runs/*/a/*.parquet"))
        assert 2 == again.exit_code
        assert "has no checkpoint" in again.output


@pytest.fixture(params=["local", "arrow"])
def checkpoint_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return LocalCheckpointStore(tmp_path / "cp")
    return ArrowFsCheckpointStore((tmp_path / "cp").as_uri())


class TestCheckpointStores:
    def test_put_get_list_delete(self, checkpoint_store: Any) -> None:
        """Both stores keep, list (sorted, no temporaries) and delete blobs."""
        checkpoint_store.put("r1/manifest.json", b"{}")
        checkpoint_store.put("r1/a/chunk-000001.parquet", b"one")
        checkpoint_store.put("r1/a/chunk-000001.parquet", b"two")
        checkpoint_store.put("r2/manifest.json", b"{}")

        listed = checkpoint_store.list("r1")
        content = checkpoint_store.get("r1/a/chunk-000001.parquet")
        checkpoint_store.delete("r1")

        assert ["r1/a/chunk-000001.parquet", "r1/manifest.json"] == listed
        assert b"two" == content
        assert ["r2/manifest.json"] == checkpoint_store.list()
        with pytest.raises(FileNotFoundError):
            checkpoint_store.get("r1/manifest.json")

    def test_chunk_records_round_trip_bit_for_bit(self, checkpoint_store: Any) -> None:
        """Records of every field, NaN and -0.0 included, come back with the same bytes."""
        records = np.zeros(7, dtype=RESULT_DETAIL_DTYPE)
        for name in RESULT_DETAIL_DTYPE.names or ():
            records[name] = np.arange(7) * 1.5 if records[name].dtype.kind == "f" else 3
        records["npv"][:2] = [np.nan, -0.0]
        cp = RunCheckpoint(checkpoint_store, "run1", {"config_hash": "x"})
        cp.stored("proj", 7, 3)
        cp.put_chunk("proj", 1, 3, records)
        cp.close()

        again = RunCheckpoint.load(checkpoint_store, "run1").stored("proj", 7, 3)

        assert [1] == list(again)
        assert records.tobytes() == again[1].tobytes()

    def test_other_chunk_size_reuses_nothing(self, checkpoint_store: Any) -> None:
        """Parts written with another chunk size are not reused."""
        cp = RunCheckpoint(checkpoint_store, "run1", {})
        cp.stored("proj", 10, 3)
        cp.put_chunk("proj", 0, 3, np.zeros(2, dtype=SCENARIO_TOTAL_DTYPE))
        cp.close()

        again = RunCheckpoint.load(checkpoint_store, "run1")

        assert {} == again.stored("proj", 20, 3)

    def test_gc_removes_only_old_checkpoints(self, checkpoint_store: Any) -> None:
        """runs gc removes checkpoints older than the age given, and keeps the others."""
        old = RunCheckpoint(checkpoint_store, "old", {})
        old.save()
        old.manifest["updated_at"] = time.time() - 8 * 86400
        checkpoint_store.put("old/manifest.json", json.dumps(old.manifest).encode())
        RunCheckpoint(checkpoint_store, "new", {}).save()

        removed = collect_garbage(checkpoint_store, 7 * 86400)

        assert ["old"] == removed
        assert ["new/manifest.json"] == checkpoint_store.list()

    def test_gc_command(self, livecalc_home: Path) -> None:
        """`livecalc runs gc --older-than 7d` on the home's checkpoints."""
        store = LocalCheckpointStore(livecalc_home / "runs")
        cp = RunCheckpoint(store, "old", {})
        cp.manifest["updated_at"] = time.time() - 30 * 86400
        store.put("old/manifest.json", json.dumps(cp.manifest).encode())

        result = CliRunner().invoke(app, ["runs", "gc", "--older-than", "7d"])

        assert 0 == result.exit_code, result.output
        assert "removed 1 checkpoints: old" in result.output
        assert [] == store.list()


def test_resume_needs_a_checkpoint_location_that_exists() -> None:
    """A pyarrow URI that cannot be opened is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        ArrowFsCheckpointStore("nosuchscheme://bucket/prefix")
