"""Checkpoint parts, stores and manifests, and the policy that decides which chunks are kept."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import livecalc
from livecalc.cli.app import app
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.checkpoint import (
    ASSUMED_WRITE_BYTES_PER_SECOND,
    ArrowFsCheckpointStore,
    LocalCheckpointStore,
    RunCheckpoint,
    part_buffers,
    read_part,
)
from livecalc.ops.liveness import collect_garbage
from livecalc.ops.session import resume
from livecalc.runtime.records import RESULT_DETAIL_DTYPE, RESULT_DTYPE, SCENARIO_TOTAL_DTYPE

PLUGIN = "livecalc.testing:register_testing_engines"

PADDED = np.dtype({"names": ["flag", "value"], "formats": ["u1", "<f8"], "offsets": [0, 8],
                   "itemsize": 24})  # fmt: skip
"""Records with 7 + 8 bytes of padding, which a resumed run must get back as they were."""


class MemoryStore:
    """A checkpoint store of another party: the four protocol methods, nothing more."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.blobs[key] = bytes(data)

    def get(self, key: str) -> bytes:
        try:
            return self.blobs[key]
        except KeyError:
            raise FileNotFoundError(key) from None

    def list(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.blobs if k.startswith(prefix))

    def delete(self, prefix: str) -> None:
        for key in self.list(prefix):
            del self.blobs[key]


@pytest.fixture(params=["local", "arrow", "memory"])
def checkpoint_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        return LocalCheckpointStore(tmp_path / "cp")
    if request.param == "arrow":
        return ArrowFsCheckpointStore((tmp_path / "cp").as_uri())
    return MemoryStore()


def _age_files(store: Any, run_id: str, seconds: float) -> None:
    """Make a local run folder's files as old as ``seconds`` (gc ages it by its newest file)."""
    if isinstance(store, LocalCheckpointStore):
        then = time.time() - seconds
        for path in [store.root / run_id, *(store.root / run_id).rglob("*")]:
            os.utime(path, (then, then))


def _padded(n: int) -> np.ndarray:
    """``n`` PADDED records whose every byte, padding included, is set (no two alike)."""
    raw = (np.arange(n * PADDED.itemsize) * 7 + 3).astype(np.uint8)
    return raw.view(PADDED)


def _kept(store: Any, records: np.ndarray, chunk: int = 1, chunks: int = 3) -> np.ndarray:
    cp = RunCheckpoint(store, "run1", {"config_hash": "x"})
    cp.stored("proj", 7, chunks)
    cp.put_chunk("proj", chunk, chunks, records)
    cp.close()
    again = RunCheckpoint.load(store, "run1").stored("proj", 7, chunks)
    assert [chunk] == list(again)
    return again[chunk]


class TestParts:
    def test_records_round_trip_bit_for_bit(self, checkpoint_store: Any) -> None:
        """Records of every field, NaN and -0.0 included, come back with the same bytes."""
        records = np.zeros(7, dtype=RESULT_DETAIL_DTYPE)
        for name in RESULT_DETAIL_DTYPE.names or ():
            records[name] = np.arange(7) * 1.5 if records[name].dtype.kind == "f" else 3
        records["npv"][:2] = [np.nan, -0.0]

        again = _kept(checkpoint_store, records)

        assert RESULT_DETAIL_DTYPE == again.dtype
        assert records.tobytes() == again.tobytes()

    @pytest.mark.parametrize("n", [0, 1, 1000])
    def test_padding_bytes_and_odd_counts_round_trip(self, checkpoint_store: Any, n: int) -> None:
        """Padding bytes, one record and no record at all: the same bytes back."""
        records = _padded(n)

        again = _kept(checkpoint_store, records)

        assert (n, PADDED) == (len(again), again.dtype)
        assert records.tobytes() == again.tobytes()

    def test_a_part_is_the_records_bytes_after_a_header(self) -> None:
        """No encoding: the second buffer is a view of the records themselves."""
        records = _padded(3)

        header, body = part_buffers(records, node_id="proj", chunk=4)
        back = read_part(bytes(header) + body.tobytes(), PADDED, node_id="proj", chunk=4)

        assert 32 == len(header)
        assert np.shares_memory(body, records)
        assert records.tobytes() == body.tobytes()
        assert records.tobytes() == back.tobytes()

    @pytest.mark.parametrize(
        ("cut", "message"),
        [
            (lambda b: b[:-1], "expected 3 x 24"),
            (lambda b: b[:10], "shorter than a part's header"),
            (lambda b: b + b"\0" * 24, "expected 3 x 24"),
            (lambda b: b"PAR1" + b[4:], "not a LiveCalc checkpoint part"),
        ],
    )
    def test_a_damaged_part_is_refused(self, cut: Any, message: str) -> None:
        """Cut short, cut into its header, too long, or not a part: ValueError naming it."""
        data = b"".join(bytes(b) for b in part_buffers(_padded(3), node_id="p", chunk=0))

        with pytest.raises(ValueError, match=message):
            read_part(cut(data), PADDED, node_id="p", chunk=0)

    def test_another_record_size_is_refused(self) -> None:
        data = b"".join(
            bytes(b) for b in part_buffers(np.zeros(2, RESULT_DTYPE), node_id="p", chunk=0)
        )

        with pytest.raises(ValueError, match="records of 24 bytes, expected 64"):
            read_part(data, SCENARIO_TOTAL_DTYPE, node_id="p", chunk=0)

    @pytest.mark.parametrize(
        ("tamper", "message"),
        [
            (lambda b: b[: len(b) - 40] + b"\0" * 40, "checksum mismatch"),  # zeroed tail
            (lambda b: b[:50] + bytes([b[50] ^ 1]) + b[51:], "checksum mismatch"),  # a flipped bit
            (
                lambda b: b[:32] + b[56:80] + b[32:56] + b[80:],
                "checksum mismatch",
            ),  # records swapped
            (lambda b: b[:20] + (7).to_bytes(4, "little") + b[24:], "the part of chunk 7"),
        ],
    )
    def test_a_tampered_part_is_refused(self, tamper: Any, message: str) -> None:
        """Zeros where the tail was (a power loss), one flipped bit, two records swapped, or
        the header of another chunk: the checksum or the chunk index refuses it."""
        data = b"".join(bytes(b) for b in part_buffers(_padded(3), node_id="p", chunk=2))

        with pytest.raises(ValueError, match=message):
            read_part(tamper(data), PADDED, node_id="p", chunk=2)

    def test_the_part_of_another_chunk_or_node_is_refused(self) -> None:
        """The same bytes read as another chunk's or another node's part: refused."""
        data = b"".join(bytes(b) for b in part_buffers(_padded(3), node_id="p", chunk=2))

        with pytest.raises(ValueError, match="the part of chunk 2, expected chunk 1"):
            read_part(data, PADDED, node_id="p", chunk=1)
        with pytest.raises(ValueError, match="checksum mismatch"):
            read_part(data, PADDED, node_id="q", chunk=2)

    @pytest.mark.parametrize("tamper", ["zeroed_tail", "flipped_record", "swapped_parts"])
    def test_a_tampered_part_on_disk_is_computed_again(self, tmp_path: Path, tamper: str) -> None:
        """Of three kept parts, the tampered ones are left out of the chunks reused (their
        chunks are computed again); the others are reused as written."""
        store = LocalCheckpointStore(tmp_path)
        cp = RunCheckpoint(store, "run1", {})
        cp.stored("proj", 10, 4)
        for chunk in range(3):
            cp.put_chunk("proj", chunk, 4, _padded(50 + chunk))
        cp.close()
        parts = [tmp_path / "run1" / "proj" / f"chunk-{i:06d}.rec" for i in range(3)]
        data = [p.read_bytes() for p in parts]
        if tamper == "zeroed_tail":
            parts[1].write_bytes(data[1][:-100] + b"\0" * 100)
            bad = [1]
        elif tamper == "flipped_record":
            flipped = bytearray(data[2])
            flipped[32 + 24 * 7 + 9] ^= 0x10
            parts[2].write_bytes(bytes(flipped))
            bad = [2]
        else:
            parts[0].write_bytes(data[1])
            parts[1].write_bytes(data[0])
            bad = [0, 1]

        again = RunCheckpoint.load(store, "run1").stored("proj", 10, 4)

        assert [i for i in range(3) if i not in bad] == [i for i in range(3) if i in again]
        for i in range(3):
            if i not in bad:
                assert _padded(50 + i).tobytes() == again[i].tobytes()

    def test_the_manifest_lists_parts_while_a_burst_goes_on(self, tmp_path: Path) -> None:
        """A run that computes faster than its parts are written keeps the writer's queue
        full; the manifest must still list the parts written so far (at least every
        MANIFEST_EVERY_SECONDS), or a run killed mid-burst resumes from none of them."""

        class SlowParts(LocalCheckpointStore):
            def put_buffers(self, key: str, buffers: Any) -> None:
                time.sleep(0.1)  # a slow disk: each part takes 0.1 s to keep
                super().put_buffers(key, buffers)

        store = SlowParts(tmp_path)
        cp = RunCheckpoint(store, "run1", {})
        cp.stored("proj", 10, 12)
        for chunk in range(12):  # returns once at most QUEUED_PARTS parts wait
            cp.put_chunk("proj", chunk, 12, np.zeros(5, dtype=RESULT_DTYPE))
        # The last put returned: >= 9 parts were written (>= 0.9 s), none listed before.
        listed = json.loads((tmp_path / "run1" / "manifest.json").read_bytes())
        cp.close()

        assert len(listed["nodes"]["proj"]["done"]) >= 3
        assert 12 == len(RunCheckpoint.load(store, "run1").stored("proj", 10, 12))

    def test_a_part_truncated_on_disk_is_computed_again(self, tmp_path: Path) -> None:
        """A listed part that comes back short (power lost before the disk had it) is left
        out of the chunks reused; the others are."""
        store = LocalCheckpointStore(tmp_path)
        cp = RunCheckpoint(store, "run1", {})
        cp.stored("proj", 10, 3)
        for chunk in (0, 1):
            cp.put_chunk("proj", chunk, 3, np.zeros(5, dtype=RESULT_DTYPE))
        cp.close()
        part = tmp_path / "run1" / "proj" / "chunk-000001.rec"
        part.write_bytes(part.read_bytes()[:-7])

        again = RunCheckpoint.load(store, "run1").stored("proj", 10, 3)

        assert [0, 1] == list(again)  # both listed
        assert [0] == [i for i in range(3) if i in again]
        assert 5 == len(again[0])
        with pytest.raises(KeyError):
            again[1]

    def test_parts_are_read_one_at_a_time_when_reached(self, tmp_path: Path) -> None:
        """Listing the kept chunks reads nothing; asking for one reads that part only."""
        store = LocalCheckpointStore(tmp_path)
        cp = RunCheckpoint(store, "run1", {})
        cp.stored("proj", 10, 3)
        for chunk in range(3):
            cp.put_chunk("proj", chunk, 3, _padded(chunk + 1))
        cp.close()
        kept = RunCheckpoint.load(store, "run1").stored("proj", 10, 3)
        (tmp_path / "run1" / "proj" / "chunk-000002.rec").unlink()

        first = 0 in kept
        records = kept[0]
        again = kept[0]  # asked for twice: read twice

        assert (3, True) == (len(kept), first)
        assert _padded(1).tobytes() == records.tobytes() == again.tobytes()
        assert 2 not in kept  # gone before it was reached: computed again
        assert 1 in kept


class TestStores:
    def test_put_get_list_delete(self, checkpoint_store: Any) -> None:
        """Every store keeps, lists (sorted, no temporaries) and deletes blobs."""
        checkpoint_store.put("r1/manifest.json", b"{}")
        checkpoint_store.put("r1/a/chunk-000001.rec", b"one")
        checkpoint_store.put("r1/a/chunk-000001.rec", b"two")
        checkpoint_store.put("r2/manifest.json", b"{}")

        listed = checkpoint_store.list("r1")
        content = checkpoint_store.get("r1/a/chunk-000001.rec")
        checkpoint_store.delete("r1")

        assert ["r1/a/chunk-000001.rec", "r1/manifest.json"] == listed
        assert b"two" == content
        assert ["r2/manifest.json"] == checkpoint_store.list()
        with pytest.raises(FileNotFoundError):
            checkpoint_store.get("r1/manifest.json")

    @pytest.mark.parametrize("kind", ["local", "arrow"])
    def test_a_write_that_fails_midway_leaves_nothing_at_its_key(
        self, tmp_path: Path, kind: str
    ) -> None:
        """A part whose writing fails after its first buffer is not there and not listed,
        and the blob it would have replaced is intact."""
        store: Any = (
            LocalCheckpointStore(tmp_path)
            if kind == "local"
            else ArrowFsCheckpointStore(tmp_path.as_uri())
        )
        store.put("r/a/chunk-000000.rec", b"before")

        with pytest.raises(TypeError):
            store.put_buffers("r/a/chunk-000000.rec", [b"header", object()])

        assert b"before" == store.get("r/a/chunk-000000.rec")
        assert ["r/a/chunk-000000.rec"] == store.list()

    def test_the_location_must_open(self) -> None:
        """A pyarrow URI that cannot be opened is a ConfigurationError."""
        with pytest.raises(ConfigurationError):
            ArrowFsCheckpointStore("nosuchscheme://bucket/prefix")


class TestManifest:
    def test_every_manifest_read_while_parts_are_written_tells_the_truth(
        self, tmp_path: Path
    ) -> None:
        """Read in a loop while 40 parts are written: the manifest is always whole JSON, and
        every part it lists is there and complete."""
        store = LocalCheckpointStore(tmp_path)
        cp = RunCheckpoint(store, "run1", {})
        cp.stored("proj", 10, 40)
        cp.save()
        records = _padded(20_000)
        seen: list[int] = []
        problems: list[str] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                manifest = json.loads((tmp_path / "run1" / "manifest.json").read_text())
                done = manifest["nodes"].get("proj", {}).get("done", [])
                seen.append(len(done))
                for i in done:
                    part = (tmp_path / f"run1/proj/chunk-{i:06d}.rec").read_bytes()
                    back = read_part(part, PADDED, node_id="proj", chunk=i)
                    if back.tobytes() != records.tobytes():
                        problems.append(f"chunk {i}")

        reader = threading.Thread(target=read)
        reader.start()
        for chunk in range(40):
            cp.put_chunk("proj", chunk, 40, records, stable=True)
        cp.close()
        stop.set()
        reader.join()

        assert [] == problems
        assert seen == sorted(seen)
        assert list(range(40)) == sorted(RunCheckpoint.load(store, "run1").stored("proj", 10, 40))

    def test_a_part_that_cannot_be_written_is_not_listed(self, tmp_path: Path) -> None:
        """One node's parts cannot be written (its folder is a file): the run goes on, the
        manifest lists only the other node's part."""
        store = LocalCheckpointStore(tmp_path)
        (tmp_path / "run1").mkdir()
        (tmp_path / "run1" / "bad").write_bytes(b"a file where the folder should be")
        cp = RunCheckpoint(store, "run1", {})
        cp.put_chunk("bad", 0, 2, np.zeros(3, dtype=RESULT_DTYPE))
        cp.put_chunk("good", 0, 2, np.zeros(3, dtype=RESULT_DTYPE))
        cp.close()

        manifest = RunCheckpoint.load(store, "run1").manifest

        assert ["good"] == list(manifest["nodes"])
        assert (1, 3 * 24) == (cp.written, cp.written_bytes)

    def test_a_checkpoint_of_another_format_is_refused(self, livecalc_home: Path) -> None:
        """A manifest of format 1 (Parquet parts) cannot be resumed: exit 2, saying why."""
        store = LocalCheckpointStore(livecalc_home / "runs")
        old = RunCheckpoint(store, "old1", {})
        del old.manifest["format"]
        old.save()

        with pytest.raises(ConfigurationError, match="format 1"):
            RunCheckpoint.load(store, "old1")
        result = CliRunner().invoke(app, ["resume", "old1"])

        assert 2 == result.exit_code
        assert "start a new run" in result.output

    @pytest.mark.parametrize(
        ("edit", "problem"),
        [
            (lambda n: n["proj"].update(done=[0, "x"]), r"nodes.proj.done\[1\] is 'x'"),
            (lambda n: n["proj"].update(done=[0.5]), r"nodes.proj.done\[0\] is 0.5"),
            (lambda n: n["proj"].update(done=None), "nodes.proj.done is not a list"),
            (lambda n: n["proj"].update(chunks="3"), "nodes.proj.chunks is '3'"),
            (lambda n: n["proj"].update(dtype={"names": 1}), "nodes.proj.dtype"),
            (lambda n: n.update(proj=[]), "nodes.proj is not an object"),
        ],
    )
    def test_a_damaged_manifest_is_refused_in_one_line(
        self, livecalc_home: Path, edit: Any, problem: str
    ) -> None:
        """A manifest whose node entries are not what LiveCalc writes (a non-integer in
        ``done``): exit 2, one line naming the entry, no traceback."""
        store = LocalCheckpointStore(livecalc_home / "runs")
        cp = RunCheckpoint(store, "bad1", {})
        cp.stored("proj", 10, 3)
        cp.put_chunk("proj", 0, 3, np.zeros(2, dtype=RESULT_DTYPE))
        cp.close()
        manifest = json.loads(store.get("bad1/manifest.json"))
        edit(manifest["nodes"])
        store.put("bad1/manifest.json", json.dumps(manifest).encode())

        with pytest.raises(ConfigurationError, match=problem):
            RunCheckpoint.load(store, "bad1")
        result = CliRunner().invoke(app, ["resume", "bad1"])

        assert 2 == result.exit_code, result.output
        assert "damaged" in result.output
        assert "Traceback" not in result.output

    def test_parts_and_manifest_reach_the_disk_before_the_manifest_names_them(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every part is fsynced, then renamed (and its folder fsynced), before the manifest
        that lists it is renamed into place; the manifest is fsynced too."""
        import os

        events: list[tuple[str, str]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def replace(src: Any, dst: Any) -> None:
            events.append(("replace", str(dst)))
            real_replace(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        store = LocalCheckpointStore(tmp_path)
        cp = RunCheckpoint(store, "run1", {})
        cp.stored("proj", 10, 3)
        for chunk in range(2):
            cp.put_chunk("proj", chunk, 3, _padded(5))
        cp.close()

        part = str(tmp_path / "run1" / "proj" / "chunk-000001.rec")
        manifest = str(tmp_path / "run1" / "manifest.json")
        renamed = events.index(("replace", part))
        synced = [
            i
            for i, (what, name) in enumerate(events)
            if what == "fsync" and ".chunk-000001" in name
        ]
        listed = max(i for i, e in enumerate(events) if e == ("replace", manifest))
        assert synced and synced[0] < renamed < listed
        assert ("fsync", str(tmp_path / "run1" / "proj")) in events[renamed:listed]
        assert any(what == "fsync" and ".manifest.json" in n for what, n in events[:listed])

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
        _age_files(checkpoint_store, "old", 8 * 86400)
        RunCheckpoint(checkpoint_store, "new", {}).save()

        removed = collect_garbage(checkpoint_store, 7 * 86400).removed

        assert ["old"] == removed
        assert ["new/manifest.json"] == checkpoint_store.list()

    def test_gc_command(self, livecalc_home: Path) -> None:
        """`livecalc runs gc --older-than 7d` on the home's checkpoints."""
        store = LocalCheckpointStore(livecalc_home / "runs")
        cp = RunCheckpoint(store, "old", {})
        cp.manifest["updated_at"] = time.time() - 30 * 86400
        store.put("old/manifest.json", json.dumps(cp.manifest).encode())
        _age_files(store, "old", 30 * 86400)

        result = CliRunner().invoke(app, ["runs", "gc", "--older-than", "7d"])

        assert 0 == result.exit_code, result.output
        assert "removed 1 checkpoints: old" in result.output
        assert [] == store.list()


class TestPolicy:
    def test_write_cost_against_compute_time(self, tmp_path: Path) -> None:
        """Before any write the assumed speed decides; after a megabyte, the measured one."""
        cp = RunCheckpoint(LocalCheckpointStore(tmp_path), "run1", {})
        before = cp.write_bytes_per_second

        # 48 MB computed in 50 ms (a W1 chunk) is not worth 5%; 1 MB in a second is.
        w1_chunk = cp.worth_writing(48_000_000, 0.05, 0.05)
        slow_chunk = cp.worth_writing(1_000_000, 1.0, 0.05)
        cp.put_chunk("proj", 0, 2, _padded(100_000))
        cp.close()

        assert ASSUMED_WRITE_BYTES_PER_SECOND == before
        assert (False, True) == (w1_chunk, slow_chunk)
        assert cp.written_bytes / cp.write_seconds == pytest.approx(cp.write_bytes_per_second)
        assert ASSUMED_WRITE_BYTES_PER_SECOND != cp.write_bytes_per_second

    def test_auto_keeps_slow_chunks_and_skips_fast_heavy_ones(
        self, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """A run with a node of slow, small chunks and one of fast chunks of 6 MB each,
        stopped by a failing node: only the slow node's chunks are in the checkpoint."""
        # An overhead of 0.02% leaves no machine load a way to flip a decision. What is
        # written (the slow node's 4 x 8 kB) never reaches a megabyte, so the write speed stays
        # the assumed 1 GB/s. A slow chunk (250 policies of 32 bytes) costs 8 us to write,
        # less than 0.02% of the 0.1 s it sleeps at least (20 us): always kept. A fast chunk
        # (250 policies x 1,000 scenarios of 24 bytes) costs 6 ms, 0.02% of 30 s: kept only
        # if it took 30 s instead of its few milliseconds. (At the default 5%, a fast chunk
        # stretched to 0.12 s by a busy machine was kept.)
        write_policies(tmp_path / "policies.parquet", generate_policies(1_000, seed=5, max_term=30))
        raw = {
            "plugins": [PLUGIN],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {
                    "id": "esg",
                    "type": "esg",
                    "config": {"model": "hull_white", "outer": 10, "inner": 100, "years": 30},
                    "outputs": ["scenarios"],
                },
                {
                    "id": "fast",
                    "type": "projection",
                    "config": {"output": "npv"},
                    "inputs": ["policies", "scenarios"],
                    "outputs": ["results"],
                },
                {
                    "id": "slow",
                    "type": "test_sleep",
                    "config": {"seconds": 0.1},
                    "inputs": ["policies"],
                    "outputs": ["slept"],
                },
                {
                    "id": "stop",
                    "type": "test_fail_n",
                    "config": {"n": 99},
                    "inputs": ["slept", "results"],
                    "outputs": ["never"],
                },
            ],
            "run": {"chunk_size": 250, "checkpoint_max_overhead": 0.0002},
        }

        result = livecalc.run(raw, base_dir=tmp_path)
        manifest = json.loads(
            (livecalc_home / "runs" / result.run_id / "manifest.json").read_text()
        )
        resumed = resume(result.run_id)

        assert "failed" == result.nodes["stop"].status
        assert {"slow": [0, 1, 2, 3]} == {
            k: sorted(v["done"]) for k, v in manifest["nodes"].items()
        }
        assert (4, 3) == (resumed.nodes["slow"].chunks, resumed.nodes["slow"].reused_chunks)
        assert (4, 0) == (resumed.nodes["fast"].chunks, resumed.nodes["fast"].reused_chunks)

    def test_unknown_policy_is_a_config_error(self, tmp_path: Path) -> None:
        """run.checkpoint_chunks takes auto or all; anything else names the key."""
        write_policies(tmp_path / "policies.parquet", generate_policies(10, seed=5))
        raw = {
            "plugins": [PLUGIN],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [{"id": "a", "type": "test_echo", "inputs": ["policies"]}],
            "run": {"checkpoint_chunks": "some"},
        }

        with pytest.raises(ConfigurationError, match="checkpoint_chunks"):
            livecalc.run(raw, base_dir=tmp_path)

    @pytest.mark.parametrize(("seconds", "kept"), [(0, [0, 1, 2, 3]), (60, None)])
    def test_fixed_rule_of_min_chunk_seconds(
        self, tmp_path: Path, livecalc_home: Path, seconds: float, kept: list[int] | None
    ) -> None:
        """checkpoint_min_chunk_seconds replaces the write cost: 0 keeps every chunk, a
        minute keeps none of these millisecond chunks."""
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
            "run": {"chunk_size": 25, "checkpoint_min_chunk_seconds": seconds},
        }

        run_id = livecalc.run(raw, base_dir=tmp_path).run_id
        path = livecalc_home / "runs" / run_id / "manifest.json"

        # No chunk kept: no manifest either (resume says the run has no checkpoint).
        assert kept == (sorted(json.loads(path.read_text())["nodes"]["a"]["done"])
                        if path.is_file() else None)  # fmt: skip
