"""Run one fuzz case through the real ``livecalc`` command and list the promises it broke.

The promises (docs/cli.md, docs/config.md, docs/data.md): exit 0, 1 or 2 (``validate``: 0 or
2); a config ``validate`` refuses is refused by ``run`` too; no traceback; every command
ends within the time limit; no temporary file left; no input file changed; nothing written
on exit 2; on exit 0 every written result is readable and finite; no shared-memory segment
left by a dead process; no webhook URL's password or token in any output or file; a refusal
of a mutated config section names that section.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fuzz_cases import CONFIG_NAME, FUZZ_SECRET, Case

from livecalc.runtime.leftovers import owner_tag

TIMEOUT_SECONDS = float(os.environ.get("LIVECALC_FUZZ_TIMEOUT", "90"))
"""Longest one command may take; generous because the test machine is shared."""

MEMORY_LIMIT_BYTES = 8 * 2**30
"""Address-space cap of each command, so a runaway allocation fails instead of swapping."""

SHM = Path("/dev/shm")
# livecalc_<owner tag>_<pid>_<random> (livecalc.runtime.leftovers); without the tag: the names
# of earlier LiveCalc versions.
_SEGMENT = re.compile(r"livecalc_(?:(?P<tag>[0-9a-f]{8})_)?(?P<pid>\d+)_[0-9a-f]+")


@dataclass(frozen=True)
class Outcome:
    """What one command did: exit status (None: killed at the time limit), output, time."""

    command: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    pids: frozenset[int] = frozenset()  # the command's process and the workers it started

    def tail(self, chars: int = 1500) -> str:
        """The end of stderr and stdout, for a failure report."""
        return (
            f"$ {self.command}\n  exit {self.returncode} after {self.seconds:.1f} s\n"
            f"  stderr: ...{self.stderr[-chars:]}\n  stdout: ...{self.stdout[-chars // 3 :]}"
        )


def livecalc_command() -> list[str]:
    """The installed ``livecalc`` console script beside this Python."""
    script = Path(sys.executable).with_name("livecalc")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from livecalc.cli import main; main()"]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def _group_members(pgid: int) -> set[int]:
    """The processes now in process group ``pgid`` (from /proc)."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after its ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            members.add(int(stat.parent.name))
    return members


def _watch_group(pgid: int, seen: set[int], done: threading.Event) -> None:
    """Collect the members of a process group until ``done``: the workers a command starts
    are gone by the time it exits, and their pids name the segments they created."""
    while not done.is_set():
        seen |= _group_members(pgid)
        done.wait(0.1)


def run_cli(args: list[str], cwd: Path) -> Outcome:
    """Run ``livecalc ARGS`` in its own process group; kill the group at the time limit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECALC_")}
    env.update(NO_COLOR="1", TERM="dumb", COLUMNS="160")
    start = time.monotonic()
    proc = subprocess.Popen(
        [*livecalc_command(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=_limit_memory,
    )
    pids = {proc.pid}
    done = threading.Event()
    watcher = threading.Thread(target=_watch_group, args=(proc.pid, pids, done), daemon=True)
    watcher.start()
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_SECONDS)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group of the command started above
        stdout, stderr = proc.communicate()
        code = None
    finally:
        done.set()
        watcher.join()
    seconds = time.monotonic() - start
    return Outcome("livecalc " + " ".join(args), code, stdout, stderr, seconds, frozenset(pids))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` by relative path, with a hash of its bytes."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def shm_segments() -> set[str]:
    """LiveCalc's shared-memory segments now in /dev/shm."""
    if not SHM.is_dir():
        return set()
    return {p.name for p in SHM.iterdir() if _SEGMENT.fullmatch(p.name)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leaked_segments(before: set[str], pids: frozenset[int] | None = None) -> list[str]:
    """Segments that appeared since ``before``, created by one of ``pids`` (any process when
    None), whose creating process is gone. Other people's runs share /dev/shm: only the
    case's own processes count."""
    leaked = []
    tag = owner_tag()
    for name in sorted(shm_segments() - before):
        match = _SEGMENT.fullmatch(name)
        if not match or match["tag"] not in (None, tag):
            continue  # another machine's or pid namespace's: its pid means nothing here
        pid = int(match["pid"])
        if (pids is None or pid in pids) and not _alive(pid):
            leaked.append(name)
    return leaked


def _unreadable_or_not_finite(path: Path) -> str | None:
    """Why a result file a successful run wrote is not usable (None when it is)."""
    try:
        table = pacsv.read_csv(path) if path.suffix == ".csv" else pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        return f"cannot be read back: {exc}"
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_floating(column.type):
            for i, value in enumerate(column.to_pylist()):
                if value is None or not math.isfinite(value):
                    return f"column {name!r} row {i} is {value!r}"
    return None


@dataclass(frozen=True)
class Report:
    """The outcomes of a case and the promises they broke."""

    validate: Outcome | None
    run: Outcome
    problems: list[str]

    def text(self, case: Case) -> str:
        """The case, its problems and the commands' output, for the failure message."""
        parts = [case.describe(), "problems:", *(f"  - {p}" for p in self.problems)]
        parts += [o.tail() for o in (self.validate, self.run) if o is not None]
        return "\n".join(parts)


def check_command(
    outcome: Outcome, allowed: set[int], before: dict[str, str], after: dict[str, str]
) -> list[str]:
    """The promises one command broke, from its outcome and the files before and after."""
    problems = []
    name = outcome.command.split()[1]
    if outcome.returncode is None:
        problems.append(f"{name}: still running after {TIMEOUT_SECONDS:g} s (killed)")
    elif outcome.returncode not in allowed:
        problems.append(f"{name}: exit {outcome.returncode}, expected one of {sorted(allowed)}")
    for stream, text in (("stderr", outcome.stderr), ("stdout", outcome.stdout)):
        if "Traceback (most recent call last)" in text:
            problems.append(f"{name}: a traceback on {stream}")
        if FUZZ_SECRET in text:
            problems.append(f"{name}: a webhook URL's password or token on {stream}")
    if outcome.returncode not in (0, None) and not outcome.stderr.strip():
        problems.append(f"{name}: exit {outcome.returncode} with nothing on stderr")
    left = [p for p in after if Path(p).name.endswith(".tmp")]
    if left:
        problems.append(f"{name}: temporary files left: {left}")
    changed = [p for p in before if p in after and before[p] != after[p]]
    if changed:
        problems.append(f"{name}: input files changed: {changed}")
    removed = [p for p in before if p not in after]
    if removed:
        problems.append(f"{name}: files removed: {removed}")
    new = [p for p in after if p not in before]
    if new and (name == "validate" or outcome.returncode == 2):
        problems.append(f"{name}: exit {outcome.returncode} but wrote {new}")
    return problems


def _not_strict_json(path: Path) -> str | None:
    """Why a written JSON file is not valid JSON (NaN and Infinity are not JSON)."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)
    except (ValueError, OSError) as exc:
        return str(exc)
    return None


def check_results(
    case_dir: Path, code: int | None, before: dict[str, str], after: dict[str, str]
) -> list[str]:
    """Files a run wrote (exit 0, or the finished nodes' files on exit 1) that cannot be read
    back, hold non-finite results, or are not strict JSON."""
    problems = []
    for rel in after:
        if rel in before:
            continue
        why = None
        if rel.endswith((".parquet", ".csv")):
            why = _unreadable_or_not_finite(case_dir / rel)
        elif rel.endswith(".json"):
            why = _not_strict_json(case_dir / rel)
        text = ""
        if not why and rel.endswith((".json", ".html")):
            text = (case_dir / rel).read_text(encoding="utf-8", errors="replace")
        if FUZZ_SECRET in text:
            why = "holds a webhook URL's password or token"
        if why:
            problems.append(f"run: exit {code} but {rel}: {why}")
    return problems


def run_case(case: Case, case_dir: Path) -> Report:
    """Validate (unless only the data changed: validate reads none) and run the case."""
    config = f"pipeline/{CONFIG_NAME}"
    sets = [arg for o in case.overrides for arg in ("--set", o)]
    problems: list[str] = []
    validate = None
    shm_before = shm_segments()
    if not case.reads_data:
        before = snapshot(case_dir)
        validate = run_cli(["validate", config, *sets], case_dir)
        problems += check_command(validate, {0, 2}, before, snapshot(case_dir))
    before = snapshot(case_dir)
    options = ["--no-progress", "--executor", case.executor, *sets, *case.run_args]
    run = run_cli(["run", config, *options], case_dir)
    after = snapshot(case_dir)
    # The unmutated examples run: when only the data changed, the run either succeeds or
    # refuses the data as bad input (exit 2, docs/cli.md); a node failing on it (exit 1) means
    # bad data was found late (issue 9 item 11).
    problems += check_command(run, {0, 2} if case.reads_data else {0, 1, 2}, before, after)
    if validate is not None and validate.returncode == 2 and run.returncode != 2:
        problems.append(f"validate refused the config (exit 2) but run exited {run.returncode}")
    if case.error_in and run.returncode == 2 and case.error_in not in run.stderr:
        problems.append(f"run: exit 2 without naming {case.error_in!r}, the section mutated")
    # The examples run; a config change that validate accepts and that then fails a node is
    # bad input found late (it should be exit 2 at validation), unless the case fails a node
    # on purpose or a chunk ran past a timeout the case set (the documented way to fail).
    timed_out = "timeout_seconds" in run.stderr
    if (
        validate is not None
        and validate.returncode == 0
        and run.returncode == 1
        and not case.fails_nodes
        and not timed_out
    ):
        problems.append("validate accepted the config (exit 0) but run failed a node (exit 1)")
    if run.returncode in (0, 1):
        problems += check_results(case_dir, run.returncode, before, after)
    own = run.pids | (validate.pids if validate is not None else frozenset())
    leaked = leaked_segments(shm_before, own)
    if leaked:
        problems.append(f"shared-memory segments left in /dev/shm: {leaked}")
    return Report(validate, run, problems)
