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

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import livecalc
from killable_pipeline import write_killable_pipeline
from livecalc.cli.app import app
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.checkpoint import ArrowFsCheckpointStore
from livecalc.ops.session import resume
from livecalc.ops.store import RunStore

PLUGIN = "livecalc.testing:register_testing_engines"


def _esg() -> dict[str, Any]:
    return {
        "id": "esg",
        "type": "esg",
        "config": {"model": "hull_white", "outer": 10, "inner": 100, "years": 30, "seed": 3},
        "outputs": ["scenarios"],
    }


def _cashflow_audit_config(tmp_path: Path) -> Path:
    """ESG -> two projections of 5,000 policies in 10 chunks: portfolio cash flows (CASHFLOW
    records, summed over chunks) and NPVs with the audited cash flows of 3 policies (in
    chunks 0, 4 and 9), which the engine's get_outputs() builds chunk by chunk."""
    write_policies(tmp_path / "policies.parquet", generate_policies(5_000, seed=11, max_term=30))
    projection = {"type": "projection", "inputs": ["policies", "scenarios"]}
    raw = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            _esg(),
            {
                **projection,
                "id": "projection",
                "config": {"output": "cashflows", "time_step": "monthly"},
                "outputs": ["cashflows"],
            },
            {
                **projection,
                "id": "audited",
                "config": {"output": "npv", "audit": {"policy_ids": [3, 2_222, 4_999]}},
                "outputs": ["results"],
            },
        ],
        "output": {
            "path": "out/{name}.parquet",
            "write": ["cashflows", "results"],
            "summary_path": "out/summary.json",
        },
        "run": {"chunk_size": 500, "checkpoint_chunks": "all"},
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
        return False


def _kill_midway(config: Path, home: Path, at_least: int) -> tuple[str, int]:
    """`livecalc run config` SIGKILLed once its projection has ``at_least`` chunks in the
    checkpoint and the store has the run: the run id and the chunks done."""
    exe = Path(sys.executable).with_name("livecalc")
    proc = subprocess.Popen(
        [str(exe), "run", str(config), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
            run_id, done = _done(home)
            if done < at_least:
                continue
            # Frozen at once, so that it cannot finish while the store is read.
            os.kill(proc.pid, signal.SIGSTOP)
            if _recorded(run_id):
                break
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert -signal.SIGKILL == proc.returncode
    return _done(home)


def _resume_cli(run_id: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("livecalc")
    return subprocess.run(
        [str(exe), "resume", run_id, "--no-progress"], capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip


class TestResumeAfterSigkill:
    def test_killed_run_resumes_to_identical_outputs(
        self, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """SIGKILL after >= 4 of 10 chunks; resume computes only the rest; same bytes."""
        config = write_killable_pipeline(tmp_path, policies=5_000, chunk_size=500, esg_seed=3)
        out = tmp_path / "out" / "results.parquet"
        assert livecalc.run(config, store=False).success
        reference = out.rename(tmp_path / "reference.parquet")

        run_id, done = _kill_midway(config, livecalc_home, 4)
        assert 4 <= done < 10
        assert not out.exists()
        killed = RunStore().get(run_id)
        assert ("dead", True) == (killed["status"], killed["resumable"])

        resumed = _resume_cli(run_id[:6])  # a unique prefix, as `runs show` takes
        record = RunStore().get(run_id)
        projection = next(n for n in record["nodes"] if n["node_id"] == "projection")

        assert 0 == resumed.returncode, resumed.stderr
        assert "succeeded" == record["status"]
        assert 1 == record["resumed"]
        # The record keeps the first attempt: its start, and both attempts.
        assert killed["started_at"] == record["started_at"]
        assert ["killed", "succeeded"] == [a["status"] for a in record["attempts"]]
        assert record["seconds"] == pytest.approx(sum(a["seconds"] for a in record["attempts"]))
        assert (10, done) == (projection["chunks"], projection["reused_chunks"])
        assert 10 - done == projection["chunks"] - projection["reused_chunks"]
        assert _data_bytes(reference) == _data_bytes(out)
        assert pq.read_table(reference).equals(pq.read_table(out))
        # The finished run's parts are gone; its manifest says it is complete.
        assert [] == list(livecalc_home.glob(f"runs/{run_id}/projection/*"))
        again = CliRunner().invoke(app, ["resume", run_id])
        assert 2 == again.exit_code
        assert "nothing to resume" in again.output

    def test_cash_flows_and_audit_resume_to_identical_outputs(
        self, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """SIGKILL mid-run of a cash-flow projection beside an audited one: resume reuses
        the cash-flow chunks kept, computes every chunk of the audited node (its audit cash
        flows come from running them), and gives the same files and audit as a whole run."""
        config = _cashflow_audit_config(tmp_path)
        out = tmp_path / "out"
        assert livecalc.run(config, store=False).success
        reference = out.rename(tmp_path / "reference")

        run_id, done = _kill_midway(config, livecalc_home, 3)
        assert 3 <= done < 10
        resumed = _resume_cli(run_id)
        summary = json.loads((out / "summary.json").read_text())
        expected = json.loads((reference / "summary.json").read_text())
        nodes = {n["node_id"]: n for n in summary["nodes"]}
        expected_nodes = {n["node_id"]: n for n in expected["nodes"]}

        assert 0 == resumed.returncode, resumed.stderr
        assert (10, done) == (nodes["projection"]["chunks"], nodes["projection"]["reused_chunks"])
        assert (10, 0) == (nodes["audited"]["chunks"], nodes["audited"]["reused_chunks"])
        for name in ("cashflows.parquet", "results.parquet"):
            assert _data_bytes(reference / name) == _data_bytes(out / name), name
        assert expected_nodes["audited"]["outputs"] == nodes["audited"]["outputs"]
        assert {"3", "2222", "4999"} == set(nodes["audited"]["outputs"]["cashflows"])
        assert expected_nodes["projection"]["outputs"] == nodes["projection"]["outputs"]
        # The audited node kept no parts: they could not have been used.
        assert [] == list(livecalc_home.glob(f"runs/{run_id}/audited/*"))


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
        "run": {"chunk_size": 25, "checkpoint_chunks": "all"},
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
        """A run that failed downstream keeps node a's 4 chunks; resume reuses 3 and runs the
        last one, so that the engine's get_outputs() are those of a real run."""
        config = _failing_config(tmp_path)
        run_id = livecalc.run(config).run_id

        result = resume(run_id)

        assert (4, 3) == (result.nodes["a"].chunks, result.nodes["a"].reused_chunks)
        assert "failed" == result.nodes["b"].status

    def test_replicas_on_worker_processes_resume_from_the_same_parts(self, tmp_path: Path) -> None:
        """Node a on two worker processes: its chunks (copied from the replicas' slots) are
        kept, and a resume on the same pool reuses them, with the same output bytes."""
        raw = json.loads(_failing_config(tmp_path).read_text())
        raw["run"].update({"executor": "processes", "parallelism": 2})
        config = tmp_path / "config.json"
        config.write_text(json.dumps(raw))
        first = livecalc.run(config)
        written = (tmp_path / "out" / "a_out.parquet").rename(tmp_path / "first.parquet")

        result = resume(first.run_id)

        assert (4, 3) == (result.nodes["a"].chunks, result.nodes["a"].reused_chunks)
        assert _data_bytes(written) == _data_bytes(tmp_path / "out" / "a_out.parquet")

    def test_resume_through_a_pyarrow_filesystem_uri(self, tmp_path: Path) -> None:
        """Checkpoints on a pyarrow.fs URI: the run writes its parts there, resume reads them."""
        uri = (tmp_path / "object-store").as_uri()
        config = _failing_config(tmp_path)
        run_id = livecalc.run(config, checkpoint=uri).run_id

        parts = ArrowFsCheckpointStore(uri).list(run_id)
        result = resume(run_id, checkpoint=uri)

        assert 5 == len(parts)  # the manifest and node a's 4 parts
        assert (4, 3) == (result.nodes["a"].chunks, result.nodes["a"].reused_chunks)

    def test_config_given_as_a_dict_resumes_from_its_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A dict config's relative paths resolve against its base_dir again on resume."""
        raw = json.loads(_failing_config(tmp_path).read_text())
        run_id = livecalc.run(raw, base_dir=tmp_path).run_id
        monkeypatch.chdir(tmp_path.parent)

        result = resume(run_id)

        assert (4, 3) == (result.nodes["a"].chunks, result.nodes["a"].reused_chunks)

    def test_api_reports_a_store_it_cannot_write(self, tmp_path: Path) -> None:
        """livecalc.run with a corrupt store returns the result with store_error set."""
        bad = tmp_path / "s" / "runs.duckdb"
        bad.parent.mkdir()
        bad.write_bytes(b"x" * 5000)

        result = livecalc.run(_failing_config(tmp_path), store=bad.parent)

        assert str(bad) in result.summary.extras["store_error"]
        assert (tmp_path / "out" / "a_out.parquet").is_file()
