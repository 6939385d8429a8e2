"""The fuzzer: mutated example pipelines through the real ``livecalc`` keep the CLI's promises.

``make test`` runs a few cases with a fixed seed; ``make fuzz`` runs many
(``LIVECALC_FUZZ_CASES``, ``LIVECALC_FUZZ_SEED``; ``LIVECALC_FUZZ_ONLY=3,17`` replays those
case indices; ``LIVECALC_FUZZ_REPORT=FILE`` appends each failing case's report to FILE as it
happens; ``LIVECALC_FUZZ_TIMEOUT`` seconds per command, default 90). A failing case prints its
seed, mutation and the command that replays it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fuzz_cases import (
    EXAMPLE_CONFIGS,
    EXAMPLES,
    FAMILIES,
    build,
    draw,
)
from fuzz_harness import (
    Outcome,
    check_command,
    check_results,
    leaked_segments,
    run_case,
    run_cli,
    shm_segments,
    snapshot,
)

from livecalc.runtime.leftovers import owner_tag

SEED = int(os.environ.get("LIVECALC_FUZZ_SEED", "20261125"))
CASES = int(os.environ.get("LIVECALC_FUZZ_CASES", "17"))
ONLY = os.environ.get("LIVECALC_FUZZ_ONLY", "")
INDICES = [int(i) for i in ONLY.split(",")] if ONLY else list(range(CASES))
REPORT_FILE = os.environ.get("LIVECALC_FUZZ_REPORT", "")


def _case_id(index: int) -> str:
    family, variant, _, executor, _ = draw(SEED, index)
    return f"{index}-{family.name}:{variant}" + ("-processes" if executor != "local" else "")


@pytest.fixture(scope="session")
def warm_cli(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Outcome, list[str]]]:
    """Each example run once unmutated, before any case: the numba cache is then warm for
    every kernel the examples use (compiling on a fresh clone takes a while, once)."""
    runs = {}
    for example in EXAMPLE_CONFIGS:
        case_dir = tmp_path_factory.mktemp("fuzz_warm")
        folder = case_dir / "pipeline"
        shutil.copytree(EXAMPLES / "data", folder / "data")
        shutil.copy(EXAMPLES / example, folder / "config.json")
        before = snapshot(case_dir)
        outcome = run_cli(["run", "pipeline/config.json", "--no-progress"], case_dir)
        after = snapshot(case_dir)
        problems = check_command(outcome, {0}, before, after)
        problems += check_results(case_dir, outcome.returncode, before, after)
        runs[example] = (outcome, problems)
    return runs


class TestUnmutatedExamples:
    @pytest.mark.parametrize("example", EXAMPLE_CONFIGS)
    def test_example_passes_every_check(
        self, example: str, warm_cli: dict[str, tuple[Outcome, list[str]]]
    ) -> None:
        """Each example as shipped runs with exit 0 and breaks none of the fuzzer's checks."""
        outcome, problems = warm_cli[example]

        assert [] == problems, outcome.tail()


class TestFuzzCases:
    @pytest.mark.parametrize("index", INDICES, ids=_case_id)
    def test_mutated_pipeline_keeps_the_cli_promises(
        self, index: int, tmp_path: Path, warm_cli: object
    ) -> None:
        """A mutated pipeline exits 0, 1 or 2 in time, without traceback or partial output."""
        case = build(SEED, index, tmp_path)

        report = run_case(case, tmp_path)

        if report.problems and REPORT_FILE:
            with open(REPORT_FILE, "a", encoding="utf-8") as out:
                out.write(report.text(case) + "\n\n")
        assert [] == report.problems, report.text(case)


class TestCaseBuilding:
    def test_every_variant_builds(self, tmp_path: Path) -> None:
        """Every family and variant writes a pipeline folder with a config file."""
        built = set()
        index = 0
        wanted = {(f.name, v) for f in FAMILIES for v in f.variants}
        # Walk case indices until each (family, variant) was drawn at least once.
        while wanted - built and index < 5000:
            family, variant, *_ = draw(SEED, index)
            if (family.name, variant) not in built:
                case = build(SEED, index, tmp_path / str(index))
                built.add((family.name, variant))
                assert (tmp_path / str(index) / "pipeline" / "config.json").is_file(), case
            index += 1

        assert wanted == built

    def test_same_seed_and_index_build_the_same_files(self, tmp_path: Path) -> None:
        """A case is replayable: seed and index give the same files and description."""
        for index in range(len(FAMILIES)):
            first = build(SEED, index, tmp_path / str(index))
            first_files = snapshot(tmp_path / str(index))
            shutil.rmtree(tmp_path / str(index))
            second = build(SEED, index, tmp_path / str(index))

            assert first == second
            assert first_files == snapshot(tmp_path / str(index))


class TestChecks:
    def _outcome(self, code: int | None, stderr: str = "error: x") -> Outcome:
        return Outcome("livecalc run pipeline/config.json", code, "", stderr, 1.0)

    def test_a_clean_refusal_passes(self) -> None:
        """Exit 2 with one error line and no file written breaks no promise."""
        files = {"pipeline/config.json": "h1"}

        assert [] == check_command(self._outcome(2), {0, 1, 2}, files, dict(files))

    def test_every_broken_promise_is_named(self) -> None:
        """A traceback, a timeout, a temp file, a changed input and a write on exit 2 are all
        reported."""
        before = {"pipeline/data/policies.parquet": "h1"}
        after = {"pipeline/data/policies.parquet": "h2", "pipeline/out/.r.parquet.x.tmp": "h3"}
        traceback = "Traceback (most recent call last):\n  File ..."

        problems = check_command(self._outcome(2, traceback), {0, 1, 2}, before, after)
        timed_out = check_command(self._outcome(None), {0, 1, 2}, before, before)

        assert 4 == len(problems), problems
        assert ["run: still running after"] == [
            p[: len("run: still running after")] for p in timed_out
        ]

    def test_a_segment_of_a_dead_process_is_a_leak(self) -> None:
        """A /dev/shm segment named after a process of this machine and pid namespace that no
        longer exists is reported; one of another owner tag is not (its pid means nothing
        here)."""
        # LiveCalc's shared memory lives in /dev/shm on Linux, the platform this suite runs on.
        assert Path("/dev/shm").is_dir(), "no /dev/shm: shared memory cannot be checked here"
        dead = 2**22 + 12345  # above the default pid_max of 4,194,304: never a live pid
        tag = owner_tag()
        other = f"{int(tag, 16) ^ 1:08x}"
        names = [f"livecalc_{t}_{dead}_0123456789ab" for t in (tag, other)]
        paths = [Path("/dev/shm") / name for name in names]
        for path in paths:
            path.write_bytes(b"x")
        try:
            assert names[:1] == leaked_segments(shm_segments() - set(names))
        finally:
            for path in paths:
                path.unlink(missing_ok=True)  # a LiveCalc start may sweep ours first
