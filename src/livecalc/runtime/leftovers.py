"""What a killed run leaves behind, named after its owner, and the sweep that removes it.

A run that ends normally, fails, or is stopped with Ctrl-C or SIGTERM removes its temporary
files and shared-memory segments itself. One killed with SIGKILL (``kill -9`` of the process
group, the out-of-memory killer) cannot, and Python's resource tracker dies with it. So every
such resource is named after the process that made it, by an owner tag (``owner_tag``: the
machine and pid namespace) and its pid:

- shared-memory segments: ``/dev/shm/livecalc_<tag>_<pid>_<random>``;
- temporary output files: ``.<file name>.livecalc-<tag>-<pid>-<random>.tmp`` beside the output.

The next LiveCalc process sweeps them: segments when it first allocates one, temporary files
when it writes the same output. It removes only those of its own tag whose pid no longer
exists; a live process's, even another user's, are left alone. A pid means something only in
its own pid namespace on its own machine: seen from a container sharing /dev/shm, or from
another host sharing an output folder, a live run's pid looks dead. So names of another tag
are never swept here: a run of their own machine and namespace sweeps them (where none will
run again, remove them by hand).
Names without a tag, made by LiveCalc versions before the tag, are swept by their pid alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
import stat
from pathlib import Path

from livecalc.errors import ConfigurationError

__all__ = [
    "SHM_FOLDER",
    "check_replaceable",
    "not_regular_file",
    "owner_tag",
    "pid_alive",
    "segment_name",
    "sweep_segments",
    "sweep_temp_files",
    "temp_path",
]

SHM_FOLDER = Path("/dev/shm")
"""Where POSIX shared memory appears as files (Linux)."""

_TAG = r"[0-9a-f]{8}"
_SEGMENT = re.compile(rf"livecalc_(?:(?P<tag>{_TAG})_)?(?P<pid>\d+)_[0-9a-f]+")


def owner_tag() -> str:
    """Eight hex digits naming this machine and pid namespace: the pids of two processes of
    the same tag can be checked against each other.

    The hash of the host name and the inode of this process's pid namespace; where /proc is
    missing, of the host name alone. Computed on each call: a forked child may live in
    another namespace than its parent.
    """
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    owner = f"{socket.gethostname()}:{namespace}" if namespace else socket.gethostname()
    return hashlib.sha1(owner.encode(), usedforsecurity=False).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists in this pid namespace (another user's counts
    as alive)."""
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
    """A new shared-memory segment name carrying this process's owner tag and pid."""
    return f"livecalc_{owner_tag()}_{os.getpid()}_{secrets.token_hex(6)}"


def temp_path(target: Path) -> Path:
    """A hidden temporary file beside ``target``, carrying this process's owner tag and pid."""
    name = f".{target.name}.livecalc-{owner_tag()}-{os.getpid()}-{secrets.token_hex(6)}.tmp"
    return target.parent / name


def _dead_owner(match: re.Match[str] | None, tag: str) -> bool:
    """Whether a matched name is this tag's (or untagged) and its pid is gone."""
    if match is None or match["tag"] not in (None, tag):
        return False  # not LiveCalc's, or another machine's or namespace's: its pid says nothing
    return not pid_alive(int(match["pid"]))


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
    """Unlink the segments of dead LiveCalc processes of this owner tag; the names removed."""
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed  # no /dev/shm (macOS): nothing to sweep this way
    tag = owner_tag()
    for name in names:
        if not _dead_owner(_SEGMENT.fullmatch(name), tag):
            continue
        with contextlib.suppress(OSError):  # another user's, or swept meanwhile
            os.unlink(folder / name)
            removed.append(name)
    return removed


def sweep_temp_files(target: Path) -> list[Path]:
    """Remove the temporary files that dead LiveCalc processes of this owner tag left beside
    ``target``."""
    pattern = re.compile(
        re.escape(f".{target.name}.livecalc-")
        + rf"(?:(?P<tag>{_TAG})-)?(?P<pid>\d+)-[0-9a-f]+\.tmp"
    )
    removed: list[Path] = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    tag = owner_tag()
    for name in names:
        if not _dead_owner(pattern.fullmatch(name), tag):
            continue
        with contextlib.suppress(OSError):
            (target.parent / name).unlink()
            removed.append(target.parent / name)
    return removed
