"""The sweep of dead runs' leftovers: only names of this machine and pid namespace whose pid is
gone are removed; a live run's, and those of another owner tag, are left alone."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from livecalc.io.generate import generate_policies, write_policies
from livecalc.runtime import leftovers
from livecalc.runtime.buffers import BufferManager
from livecalc.runtime.leftovers import SHM_FOLDER

LIVECALC = str(Path(sys.executable).with_name("livecalc"))
DEAD_PID = 2**22 + 12345
"""Above the largest pid_max Linux allows (2**22): never a live pid, in any namespace."""


def _other_tag() -> str:
    """An owner tag that is not this process's: another machine's or pid namespace's."""
    return f"{int(leftovers.owner_tag(), 16) ^ 0xFFFF:08x}"


@pytest.fixture
def shm() -> Iterator[list[Path]]:
    """Paths to create in /dev/shm (names unique to this test); removed at the end."""
    assert SHM_FOLDER.is_dir(), "no /dev/shm: LiveCalc's shared memory cannot be tested here"
    made: list[Path] = []
    yield made
    for path in made:
        path.unlink(missing_ok=True)


def _segment(shm: list[Path], tag: str | None, pid: int) -> Path:
    """A segment in /dev/shm named as LiveCalc names them (without a tag: as earlier versions
    did), with a random part no other test uses."""
    owner = f"{tag}_{pid}" if tag is not None else str(pid)
    path = SHM_FOLDER / f"livecalc_{owner}_{secrets.token_hex(6)}"
    path.write_bytes(b"x")
    shm.append(path)
    return path


class TestNames:
    """Names carry this process's owner tag and pid."""

    def test_segment_and_temp_names_carry_the_tag_and_pid(self, tmp_path: Path) -> None:
        """livecalc_<tag>_<pid>_<hex> and .<name>.livecalc-<tag>-<pid>-<hex>.tmp."""
        tag, pid = leftovers.owner_tag(), os.getpid()

        segment = leftovers.segment_name()
        temp = leftovers.temp_path(tmp_path / "x.parquet")

        assert 8 == len(tag) and int(tag, 16) >= 0
        assert f"livecalc_{tag}_{pid}_" == segment[:-12]
        assert tmp_path == temp.parent
        assert (f".x.parquet.livecalc-{tag}-{pid}-", ".tmp") == (temp.name[:-16], temp.name[-4:])


class TestSweepSegments:
    """sweep_segments removes this tag's dead segments and untagged dead ones, nothing else."""

    def test_another_tag_with_a_dead_pid_survives(self, shm: list[Path]) -> None:
        """Another machine's or namespace's segment stays, though its pid is dead here."""
        path = _segment(shm, _other_tag(), DEAD_PID)

        removed = leftovers.sweep_segments()

        assert (True, False) == (path.exists(), path.name in removed)

    def test_this_tag_with_a_dead_pid_is_removed(self, shm: list[Path]) -> None:
        """A segment of this tag whose owner is gone is unlinked and reported."""
        path = _segment(shm, leftovers.owner_tag(), DEAD_PID)

        removed = leftovers.sweep_segments()

        assert (False, True) == (path.exists(), path.name in removed)

    def test_this_tag_with_a_live_pid_survives(self, shm: list[Path]) -> None:
        """A segment of this tag whose owner (this process) lives stays."""
        path = _segment(shm, leftovers.owner_tag(), os.getpid())

        removed = leftovers.sweep_segments()

        assert (True, False) == (path.exists(), path.name in removed)

    def test_an_untagged_segment_of_a_dead_pid_is_removed(self, shm: list[Path]) -> None:
        """Earlier versions' names (livecalc_<pid>_<hex>) are still swept by their pid."""
        dead = _segment(shm, None, DEAD_PID)
        live = _segment(shm, None, os.getpid())

        leftovers.sweep_segments()

        assert (False, True) == (dead.exists(), live.exists())


class TestSweepTempFiles:
    """sweep_temp_files does the same for the temporary files beside an output."""

    @staticmethod
    def _temp(folder: Path, tag: str | None, pid: int) -> Path:
        owner = f"{tag}-{pid}" if tag is not None else str(pid)
        path = folder / f".x.parquet.livecalc-{owner}-0123456789ab.tmp"
        path.write_bytes(b"x")
        return path

    def test_another_tag_with_a_dead_pid_survives(self, tmp_path: Path) -> None:
        """Another host's temp file on a shared folder stays, though its pid is dead here."""
        path = self._temp(tmp_path, _other_tag(), DEAD_PID)

        removed = leftovers.sweep_temp_files(tmp_path / "x.parquet")

        assert ([], True) == (removed, path.exists())

    def test_this_tag_with_a_dead_pid_is_removed(self, tmp_path: Path) -> None:
        """A temp file of this tag whose owner is gone is removed and reported."""
        path = self._temp(tmp_path, leftovers.owner_tag(), DEAD_PID)

        removed = leftovers.sweep_temp_files(tmp_path / "x.parquet")

        assert ([path], False) == (removed, path.exists())

    def test_this_tag_with_a_live_pid_survives(self, tmp_path: Path) -> None:
        """A temp file of this tag whose owner (this process) lives stays."""
        path = self._temp(tmp_path, leftovers.owner_tag(), os.getpid())

        removed = leftovers.sweep_temp_files(tmp_path / "x.parquet")

        assert ([], True) == (removed, path.exists())

    def test_an_untagged_temp_file_of_a_dead_pid_is_removed(self, tmp_path: Path) -> None:
        """Earlier versions' names (.<name>.livecalc-<pid>-<hex>.tmp) are still swept."""
        dead = self._temp(tmp_path, None, DEAD_PID)
        live = self._temp(tmp_path, None, os.getpid())

        removed = leftovers.sweep_temp_files(tmp_path / "x.parquet")

        assert ([dead], True) == (removed, live.exists())


def _unshare() -> list[str]:
    """The command prefix that runs a command in a new pid namespace with its own /proc: as
    root plainly, else in a user namespace too."""
    pid_namespace = ["--pid", "--fork", "--kill-child", "--mount-proc"]
    for prefix in (["unshare", *pid_namespace], ["unshare", "--map-root-user", *pid_namespace]):
        probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return prefix
    pytest.fail(f"cannot make a pid namespace here: {probe.stderr.decode()[-300:]}")


class TestPidNamespace:
    """A run in another pid namespace sharing /dev/shm leaves this process's segments alone."""

    def test_a_run_in_another_pid_namespace_keeps_a_live_segment(
        self, tmp_path: Path, shm: list[Path]
    ) -> None:
        """While this process holds a shared buffer, a ``livecalc run`` in a new pid namespace
        (where this pid does not exist) sweeps /dev/shm: the buffer's segment survives, while an
        untagged one of a pid dead everywhere is swept (so the run's sweep did run)."""
        write_policies(tmp_path / "policies.parquet", generate_policies(10, seed=5))
        config = {
            "plugins": ["livecalc.testing:register_testing_engines"],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [{"id": "a", "type": "test_echo", "inputs": ["policies"]}],
            "run": {"executor": "local", "checkpoint": False},
        }
        (tmp_path / "config.json").write_text(json.dumps(config))
        prefix = _unshare()

        with BufferManager() as buffers:
            live = SHM_FOLDER / buffers.allocate("live", np.float64, 8, shared=True).ref.shm_name
            # After this process's own sweep (its first BufferManager), for the run's to find.
            untagged_dead = _segment(shm, None, DEAD_PID)
            run = subprocess.run(
                [*prefix, LIVECALC, "run", "config.json", "--no-progress", "--no-store"],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            kept = live.exists()

        assert 0 == run.returncode, run.stderr[-2000:]
        assert (True, False) == (kept, untagged_dead.exists())
