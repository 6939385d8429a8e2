"""Kill at a random point, then resume: the outputs are bit-identical to an uninterrupted run.

Each trial starts ``livecalc run`` on a chunked pipeline (ESG -> projection in 10 chunks, every
chunk checkpointed), SIGKILLs it at a point drawn from ``random.Random(f"{seed}:kill:{i}")``
(a number of chunks in the checkpoint, then a few milliseconds more, or a time from the start
that may fall before the first chunk), sometimes tampers one kept part the way a power loss
or a careless hand would (zeroed tail, one flipped bit, two parts swapped), and then finishes
the run with ``livecalc resume``. The promises: resume exits 0 (or, when the kill came before
a checkpoint existed, refuses in one line with exit 2 and leaves no output); the output's
data pages are byte for byte those of the uninterrupted run; a tampered part is computed
again, never reused; no temporary file is left.

``make test`` runs 3 trials; ``make fuzz`` runs ``LIVECALC_FUZZ_KILLS`` (default 20) with
``LIVECALC_FUZZ_SEED``; ``LIVECALC_FUZZ_KILL_ONLY=4`` replays trial 4.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import livecalc
from killable_pipeline import write_killable_pipeline

SEED = int(os.environ.get("LIVECALC_FUZZ_SEED", "20261125"))
TRIALS = int(os.environ.get("LIVECALC_FUZZ_KILLS", "3"))
ONLY = os.environ.get("LIVECALC_FUZZ_KILL_ONLY", "")
INDICES = [int(i) for i in ONLY.split(",")] if ONLY else list(range(TRIALS))
CHUNKS = 10
TIMEOUT_SECONDS = 240.0
TAMPERS = ("none", "zeroed_tail", "flipped_record", "swapped_parts")


def _data_bytes(path: Path) -> bytes:
    """A Parquet file's bytes before its footer: every data page, no key-value metadata
    (which holds the run id and the time)."""
    raw = path.read_bytes()
    (footer,) = struct.unpack("<I", raw[-8:-4])
    return raw[: len(raw) - 8 - footer]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output of the pipeline run once, uninterrupted."""
    folder = tmp_path_factory.mktemp("kill_reference")
    result = livecalc.run(write_killable_pipeline(folder, summary=True), store=False)
    assert result.success
    return folder / "out" / "results.parquet"


def _livecalc(args: list[str], home: Path, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "LIVECALC_HOME": str(home), "NO_COLOR": "1"}
    exe = Path(sys.executable).with_name("livecalc")
    return subprocess.Popen([str(exe), *args], env=env, text=True, errors="replace", **popen)


def _manifest(home: Path) -> dict[str, Any] | None:
    for path in home.glob("runs/*/manifest.json"):
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except ValueError:
            continue
    return None


def _listed(home: Path) -> list[int]:
    manifest = _manifest(home)
    node = (manifest or {}).get("nodes", {}).get("projection")
    return sorted(node["done"]) if node else []


@dataclass(frozen=True)
class Trial:
    """Where one trial kills the run and what it does to the parts then."""

    index: int
    after_chunks: int | None  # kill once this many chunks are listed (None: by time)
    after_seconds: float  # then wait this long (from the start, when by time)
    tamper: str

    def describe(self) -> str:
        where = (
            f"{self.after_seconds:.2f} s after start"
            if self.after_chunks is None
            else f"{self.after_chunks} chunks listed + {self.after_seconds * 1000:.0f} ms"
        )
        return (
            f"kill trial seed={SEED} index={self.index}: SIGKILL at {where}, tamper "
            f"{self.tamper}; replay: LIVECALC_FUZZ_SEED={SEED} LIVECALC_FUZZ_KILL_ONLY="
            f"{self.index} make fuzz"
        )


def draw_trial(seed: int, index: int) -> Trial:
    rng = random.Random(f"{seed}:kill:{index}")
    if rng.random() < 0.2:
        return Trial(index, None, rng.uniform(0.0, 4.0), rng.choice(TAMPERS))
    # At least one chunk listed: a kill before any is the time mode's (and a trial that
    # only checks that nothing was left).
    return Trial(index, rng.randrange(1, CHUNKS), rng.uniform(0.0, 0.05), rng.choice(TAMPERS))


def _kill(config: Path, home: Path, trial: Trial) -> None:
    proc = _livecalc(
        ["run", str(config), "--no-progress"],
        home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    start = time.monotonic()
    try:
        if trial.after_chunks is None:
            time.sleep(trial.after_seconds)
        else:
            while proc.poll() is None and time.monotonic() - start < TIMEOUT_SECONDS:
                if len(_listed(home)) >= trial.after_chunks:
                    time.sleep(trial.after_seconds)
                    break
                time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # the run this trial started
        proc.wait(timeout=30)


def _tamper(home: Path, trial: Trial) -> list[int]:
    """Damage kept parts as the trial says; the chunks whose parts were damaged."""
    rng = random.Random(f"{SEED}:tamper:{trial.index}")
    manifest = _manifest(home)
    if manifest is None or manifest.get("complete") or trial.tamper == "none":
        return []
    folder = home / "runs" / manifest["run_id"] / "projection"
    listed = [i for i in _listed(home) if (folder / f"chunk-{i:06d}.rec").is_file()]
    parts = {i: folder / f"chunk-{i:06d}.rec" for i in listed}
    if trial.tamper == "swapped_parts" and len(listed) >= 2:
        a, b = rng.sample(listed, 2)
        data_a, data_b = parts[a].read_bytes(), parts[b].read_bytes()
        parts[a].write_bytes(data_b)
        parts[b].write_bytes(data_a)
        return [a, b]
    if trial.tamper in ("zeroed_tail", "flipped_record") and listed:
        chunk = rng.choice(listed)
        data = bytearray(parts[chunk].read_bytes())
        if trial.tamper == "zeroed_tail":
            tail = rng.randrange(1, len(data) - 32)
            # Zeros where the tail was; a tail already zero stays a part that reads back.
            data[-tail:] = bytes(tail)
        else:
            data[rng.randrange(32, len(data))] ^= 1 << rng.randrange(8)
        before = parts[chunk].read_bytes()
        parts[chunk].write_bytes(bytes(data))
        return [chunk] if bytes(data) != before else []
    return []


class TestFuzzCasesKillAndResume:
    @pytest.mark.parametrize("index", INDICES, ids=lambda i: f"kill-{i}")
    def test_killed_run_resumes_bit_identical(
        self, index: int, tmp_path: Path, reference: Path
    ) -> None:
        """SIGKILL at a random point, maybe a tampered part, resume: the same bytes."""
        trial = draw_trial(SEED, index)
        config = write_killable_pipeline(tmp_path / "pipeline", summary=True)
        out = tmp_path / "pipeline" / "out" / "results.parquet"
        home = tmp_path / "home"
        home.mkdir()

        _kill(config, home, trial)
        manifest = _manifest(home)
        tampered = _tamper(home, trial)
        listed = _listed(home)
        if manifest is None:
            # Killed before the run kept anything: there is nothing to resume.
            assert not out.exists(), trial.describe()
            return
        resumed = _livecalc(
            ["resume", manifest["run_id"], "--no-progress"],
            home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = resumed.communicate(timeout=TIMEOUT_SECONDS)
        tail = f"{trial.describe()}\n{stderr[-3000:]}"

        assert "Traceback" not in stderr + stdout, tail
        if manifest.get("complete"):
            # Killed after the run finished: nothing to resume, the output is whole.
            assert 2 == resumed.returncode, tail
            assert "nothing to resume" in stderr, tail
        else:
            assert 0 == resumed.returncode, tail
            summary = json.loads((out.parent / "summary.json").read_text())
            node = next(n for n in summary["nodes"] if n["node_id"] == "projection")
            every = len(listed) == CHUNKS
            intact = [i for i in listed if i not in tampered and not (every and i == CHUNKS - 1)]
            # Every listed, intact part is reused (the last chunk always runs when all are
            # kept); a tampered one never is.
            assert len(intact) == node["reused_chunks"], tail
        assert _data_bytes(reference) == _data_bytes(out), tail
        assert pq.read_table(reference).equals(pq.read_table(out)), tail
        assert [] == [p.name for p in tmp_path.rglob("*.tmp")], tail
        assert [] == [p.name for p in home.rglob("*.tmp")], tail
