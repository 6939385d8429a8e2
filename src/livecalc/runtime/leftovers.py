"""What a killed run leaves behind, named after its process, and the sweep that removes it.

A run that ends normally, fails, or is stopped with Ctrl-C or SIGTERM removes its temporary
files and shared-memory segments itself. One killed with SIGKILL (``kill -9`` of the process
group, the out-of-memory killer) cannot, and Python's resource tracker dies with it. So every
such resource carries the pid of the process that made it:

- shared-memory segments: ``/dev/shm/livecalc_<pid>_<random>``;
- temporary output files: ``.<file name>.livecalc-<pid>-<random>.tmp`` beside the output.

The next LiveCalc process sweeps them: segments when it first allocates one, temporary files
when it writes the same output. Only resources whose owner pid no longer exists are removed;
a live process's, even another user's, are left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path

from livecalc.errors import ConfigurationError

__all__ = [
    "SHM_FOLDER",
    "check_replaceable",
    "not_regular_file",
    "pid_alive",
    "segment_name",
    "sweep_segments",
    "sweep_temp_files",
    "temp_path",
]

SHM_FOLDER = Path("/dev/shm")
"""Where POSIX shared memory appears as files (Linux)."""

_SEGMENT = re.compile(r"livecalc_(\d+)_[0-9a-f]+")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (another user's counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def segment_name() -> str:
    """A new shared-memory segment name carrying this process's pid."""
    return f"livecalc_{os.getpid()}_{secrets.token_hex(6)}"


def temp_path(target: Path) -> Path:
    """A hidden temporary file beside ``target``, carrying this process's pid."""
    return target.parent / f".{target.name}.livecalc-{os.getpid()}-{secrets.token_hex(6)}.tmp"


def not_regular_file(path: Path) -> str | None:
    """What ``path`` is when it exists and is neither a regular file nor a folder (a device,
    a FIFO, a socket): a file written over it by temporary file and rename would replace it
    (as root, ``/dev/null`` would become a regular file). None otherwise."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = {
        "a character device": stat.S_ISCHR,
        "a block device": stat.S_ISBLK,
        "a FIFO (named pipe)": stat.S_ISFIFO,
        "a socket": stat.S_ISSOCK,
    }
    kind = next((k for k, test in kinds.items() if test(mode)), "special")
    return (
        f"{str(path)!r} is {kind}, not a regular file; LiveCalc writes a new file and renames "
        "it over the old one, which would replace it: give a file path"
    )


def check_replaceable(path: Path) -> None:
    """Raise ``ConfigurationError`` when ``path`` is a device, FIFO or socket, which a
    temporary file renamed over it would replace (see ``not_regular_file``)."""
    problem = not_regular_file(path)
    if problem:
        raise ConfigurationError(f"cannot write {problem}")


def sweep_segments(folder: Path = SHM_FOLDER) -> list[str]:
    """Unlink the segments of dead LiveCalc processes; the names removed."""
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed  # no /dev/shm (macOS): nothing to sweep this way
    for name in names:
        match = _SEGMENT.fullmatch(name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):  # another user's, or swept meanwhile
            os.unlink(folder / name)
            removed.append(name)
    return removed


def sweep_temp_files(target: Path) -> list[Path]:
    """Remove the temporary files that dead LiveCalc processes left beside ``target``."""
    pattern = re.compile(re.escape(f".{target.name}.livecalc-") + r"(\d+)-[0-9a-f]+\.tmp")
    removed: list[Path] = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            (target.parent / name).unlink()
            removed.append(target.parent / name)
    return removed
