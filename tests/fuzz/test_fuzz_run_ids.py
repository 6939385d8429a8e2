"""The run-id family: valid and hostile run ids through ``livecalc.run(run_id=...)``,
``livecalc resume``, ``runs show`` and ``runs delete``.

A run id names the run's folder under ``$LIVECALC_HOME/runs``, so the promises are: a valid
id runs and is found again; a hostile one (an absolute path, ``..``, ``a/b``, ``.hidden``,
empty, NUL, a lone surrogate, too long, spaces, backslashes, non-ASCII) is refused with one
line and exit 2; and nothing is ever written outside ``$LIVECALC_HOME/runs`` (the store file
beside it, and a valid run's own outputs, aside). Each case is one (seed, index), like the
config families of ``test_fuzz.py``; ``make fuzz`` runs ``LIVECALC_FUZZ_CASES`` of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import livecalc
from livecalc.cli.app import app
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies

SEED = int(os.environ.get("LIVECALC_FUZZ_SEED", "20261125"))
ALLOWED = string.ascii_letters + string.digits + "_.-"


def _valid(rng: random.Random, sandbox: Path) -> str:
    length = rng.choice([1, 2, 3, 4, 12, rng.randint(1, 128), 128])
    return rng.choice(ALLOWED.replace(".", "")) + "".join(
        rng.choice(ALLOWED) for _ in range(length - 1)
    )


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 8)))


KINDS: dict[str, Callable[[random.Random, Path], str]] = {
    "valid": _valid,
    "absolute": lambda rng, box: str(box / "abs" / _name(rng)),
    "parent": lambda rng, box: "../" * rng.randint(1, 4) + _name(rng),
    "nested": lambda rng, box: f"{_name(rng)}/{_name(rng)}",
    "hidden": lambda rng, box: "." + _name(rng),
    "dots": lambda rng, box: rng.choice([".", "..", "...", "./x", "x/.."]),
    "empty": lambda rng, box: "",
    "nul": lambda rng, box: _name(rng) + "\x00" + _name(rng),
    "surrogate": lambda rng, box: _name(rng) + chr(rng.randint(0xD800, 0xDFFF)),
    "long": lambda rng, box: "r" * rng.choice([129, 1_000, 100_000]),
    "space": lambda rng, box: _name(rng) + rng.choice([" ", "\t", "\n", "\r"]) + _name(rng),
    "backslash": lambda rng, box: f"{_name(rng)}\\{_name(rng)}",
    "tilde": lambda rng, box: "~" + rng.choice(["", "root", "nonexistentuser"]),
    "unicode": lambda rng, box: _name(rng) + rng.choice(["é", "ß", "\u202e", "😀", "\uff0e"]),
    "slash-end": lambda rng, box: _name(rng) + "/",
}

CASES = int(os.environ.get("LIVECALC_FUZZ_CASES", str(len(KINDS))))


def draw(seed: int, index: int, sandbox: Path) -> tuple[str, str]:
    """The (kind, run id) of case ``index``: kinds take turns, in an order the seed shuffles."""
    order = sorted(KINDS)
    random.Random(f"{seed}:run-id-order").shuffle(order)
    kind = order[index % len(order)]
    return kind, KINDS[kind](random.Random(f"{seed}:run-id:{index}"), sandbox)


def _config(folder: Path) -> Path:
    """A test_echo node over 20 policies in 2 checkpointed chunks."""
    folder.mkdir(parents=True)
    write_policies(folder / "policies.parquet", generate_policies(20, seed=1))
    raw = {
        "plugins": ["livecalc.testing:register_testing_engines"],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [{"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]}],
        "output": {"path": "out/{name}.parquet"},
        "run": {"chunk_size": 10, "checkpoint_chunks": "all"},
    }
    path = folder / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _outside_runs(changed: set[str], valid: bool) -> list[str]:
    """Paths written that the case may not write: anything outside home/runs/, but the
    store beside it and (a valid run) the config's outputs."""
    allowed = ("home/runs/", "home/runs.duckdb") + (("pipeline/out/",) if valid else ())
    return sorted(p for p in changed if not p.startswith(allowed))


def _one_line_exit_2(result: object) -> list[str]:
    code = getattr(result, "exit_code", None)
    output = str(getattr(result, "output", ""))
    problems = [] if code == 2 else [f"exit {code}, expected 2"]
    lines = [line for line in output.splitlines() if line.strip()]
    if len(lines) != 1 or not lines[0].startswith("error: "):
        problems.append(f"not one error line: {output[:500]!r}")
    if "Traceback" in output:
        problems.append("a traceback")
    return problems


class TestFuzzCasesRunIds:
    @pytest.mark.parametrize("index", range(CASES))
    def test_run_id_is_a_folder_name_or_refused(
        self, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A valid run id runs and is found again; a hostile one is refused with one line
        and exit 2; nothing is written outside $LIVECALC_HOME/runs."""
        kind, run_id = draw(SEED, index, tmp_path)
        valid = kind == "valid"
        home = tmp_path / "home"
        home.mkdir()
        work = tmp_path / "work" / "deep"
        work.mkdir(parents=True)
        config = _config(tmp_path / "pipeline")
        monkeypatch.setenv("LIVECALC_HOME", str(home))
        monkeypatch.chdir(work)
        before = _snapshot(tmp_path)
        problems: list[str] = []

        try:
            result = livecalc.run(config, run_id=run_id)
            if not valid:
                problems.append("livecalc.run accepted it")
            elif (result.run_id, result.success) != (run_id, True):
                problems.append(f"livecalc.run: {result.run_id!r} success={result.success}")
        except ConfigurationError as exc:
            if valid:
                problems.append(f"livecalc.run refused it: {exc}")
            elif len(str(exc).splitlines()) != 1 or len(str(exc)) > 500:
                problems.append(f"livecalc.run: not one short line: {str(exc)[:300]!r}")
        runner = CliRunner()
        resumed = runner.invoke(app, ["resume", run_id, "--no-progress"])
        shown = runner.invoke(app, ["runs", "show", run_id, "--json"])
        deleted = runner.invoke(app, ["runs", "delete", run_id])
        if valid:
            # Finished: nothing to resume (exit 2); shown and deleted by its whole id.
            if resumed.exit_code != 2 or "nothing to resume" not in resumed.output:
                problems.append(f"resume: exit {resumed.exit_code}: {resumed.output[:300]!r}")
            if shown.exit_code != 0 or json.loads(shown.output)["run_id"] != run_id:
                problems.append(f"runs show: exit {shown.exit_code}: {shown.output[:300]!r}")
            if deleted.exit_code != 0:
                problems.append(f"runs delete: exit {deleted.exit_code}: {deleted.output[:300]!r}")
        else:
            for name, outcome in (("resume", resumed), ("show", shown), ("delete", deleted)):
                problems += [f"{name}: {p}" for p in _one_line_exit_2(outcome)]
        after = _snapshot(tmp_path)
        changed = {p for p in after if before.get(p) != after[p]} | (set(before) - set(after))
        outside = _outside_runs(changed, valid)
        if outside:
            problems.append(f"written outside LIVECALC_HOME/runs: {outside}")
        if not valid and any(p.startswith("home/") for p in changed):
            problems.append(f"a refused id wrote {sorted(changed)}")

        assert [] == problems, f"case seed={SEED} index={index} kind={kind} id={run_id[:80]!r}"

    def test_every_kind_is_drawn(self, tmp_path: Path) -> None:
        """The cases of one run touch every kind of run id at least once."""
        drawn = {draw(SEED, i, tmp_path)[0] for i in range(len(KINDS))}

        assert set(KINDS) == drawn


class TestRunIdsFromTheShell:
    def test_bytes_that_are_not_utf8_are_refused_in_one_line(self, tmp_path: Path) -> None:
        """A run id from a shell variable holding bytes that are not UTF-8 (Python sees lone
        surrogates) is refused by the real command with one line and exit 2."""
        exe = Path(sys.executable).with_name("livecalc")
        env = {**os.environ, "LIVECALC_HOME": str(tmp_path / "home")}

        for args in ([b"resume", b"\xff\xfe"], [b"runs", b"show", b"a\xff"]):
            result = subprocess.run(
                [os.fsencode(exe), *args], capture_output=True, env=env, timeout=120
            )
            lines = result.stderr.decode(errors="replace").strip().splitlines()

            assert 2 == result.returncode, result.stderr
            assert 1 == len(lines) and lines[0].startswith("error: "), lines
        assert not (tmp_path / "home").exists()
