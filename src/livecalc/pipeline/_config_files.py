"""Reading config files, applying ``--set`` overrides and checking file paths.

Helpers of ``livecalc.pipeline.config`` that work on raw JSON values and paths, not on the models.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from livecalc.errors import ConfigurationError
from livecalc.runtime.leftovers import not_regular_file

__all__ = [
    "MAX_CONFIG_BYTES",
    "apply_overrides",
    "given_path",
    "parse_override",
    "read_config_json",
    "same_file",
    "unwritable",
    "with_absolute_paths",
    "with_declared_paths",
]


def parse_override(text: str) -> tuple[str, list[str], Any]:
    """Split ``engine.key=value`` into the node id, the key path and the JSON-parsed value.

    ``run.chunk_size=500`` and ``output.path=x.parquet`` set those sections instead.
    """
    target, sep, raw = text.partition("=")
    parts = target.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ConfigurationError(
            f"--set {text!r}: write it as ENGINE_ID.KEY=VALUE (e.g. projection.seed=7)"
        )
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare word is a string: --set esg.model=hull_white
    return parts[0], parts[1:], value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the raw config with each ``engine.key=value`` override applied."""
    data = copy.deepcopy(dict(raw))
    for text in overrides:
        head, keys, value = parse_override(text)
        if head in ("run", "output"):
            target = data.setdefault(head, {})
        else:
            engines = data.get("engines")
            nodes = [e for e in engines or [] if isinstance(e, dict) and e.get("id") == head]
            if not nodes:
                ids = [e.get("id") for e in engines or [] if isinstance(e, dict)]
                close = difflib.get_close_matches(head, [str(i) for i in ids], 1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigurationError(
                    f"--set {text!r}: no engine with id {head!r}{hint}; ids: "
                    + ", ".join(map(str, ids))
                )
            target = nodes[0].setdefault("config", {})
        if not isinstance(target, dict):
            raise ConfigurationError(f"--set {text!r}: {head!r} is not an object")
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigurationError(f"--set {text!r}: {key!r} is not an object")
        target[keys[-1]] = value
    return data


MAX_CONFIG_BYTES = 16 * 2**20
"""The largest config file read (16 MiB): configs are small; data belongs in data files."""


def _read_config_bytes(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_CONFIG_BYTES; anything else is refused.

    Opened without blocking and checked on the open descriptor: a FIFO, a device such as
    /dev/zero or a folder is refused before a byte is read, and a file that grows while it
    is read is cut off one byte past the limit, so nothing endless is ever read whole.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigurationError(f"{path}: is a folder; give the config's JSON file")
        raise ConfigurationError(
            f"{path}: not a regular file (a device, pipe or socket); save the config "
            "to a JSON file and give its path"
        )
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES or info.st_size > MAX_CONFIG_BYTES:
        size = max(len(data), info.st_size)
        raise ConfigurationError(
            f"{path}: {size / 2**20:.1f} MiB is over the {MAX_CONFIG_BYTES // 2**20} MiB limit "
            "of a config file; a config describes the pipeline: keep data (policies, "
            "scenarios, tables) in Parquet or CSV files and give their paths"
        )
    return data


def read_config_json(path: Path) -> dict[str, Any]:
    """The JSON object in a config file; unreadable, non-UTF-8, invalid or duplicate-key
    JSON, a file over MAX_CONFIG_BYTES or not a regular file is a ConfigurationError naming
    the file and the fix."""
    try:
        text = _read_config_bytes(path).decode("utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: config file not found; check the path") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the config ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8 JSON"
        ) from None
    duplicates: list[str] = []

    def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json.loads would silently keep the last of two equal keys: say so instead.
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                duplicates.append(key)
            seen[key] = value
        return seen

    try:
        data = json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: the config must be a JSON object {{...}}")
    if duplicates:
        names = ", ".join(repr(k) for k in dict.fromkeys(duplicates))
        raise ConfigurationError(
            f"{path}: key {names} appears twice in one object (JSON keeps only the last); "
            "remove or merge the duplicate"
        )
    return data


def given_path(value: str | os.PathLike[str], where: str) -> Path:
    """A path given outside the config (a CLI option, an API argument), ``~`` expanded and
    made absolute.

    Raises:
        ConfigurationError: naming ``where``: a NUL byte, or ``~user`` of no such user.
    """
    text = os.fspath(value)
    if "\x00" in text:
        raise ConfigurationError(f"{where}: {text!r} holds a NUL byte (\\x00); remove it")
    try:
        return Path(text).expanduser().resolve()
    except RuntimeError:
        user = text[1:].split("/", 1)[0]
        raise ConfigurationError(
            f"{where}: {text!r}: '~{user}' names no user of this machine; give the folder itself"
        ) from None


def _expanded(value: str) -> Path:
    """``value`` with ``~`` expanded; as it is when ``~user`` names no user (the file is then
    reported missing where it was looked for)."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        return Path(value)


def unwritable(path: Path) -> str | None:
    """Why a file cannot be written at ``path`` (None when it can, as far as we can tell)."""
    if path.is_dir():
        return f"{str(path)!r} is a folder, not a file"
    special = not_regular_file(path)
    if special:
        return special
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot create {str(path)!r}: {str(folder)!r} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write into {str(folder)!r} (no write permission)"
    return None


_PATH_KEYS = ("file", "path", "library")
_PATH_SUFFIXES = ("_table", "_file", "_path")


def with_absolute_paths(value: Any, base: Path, key: str = "") -> Any:
    """``value`` with relative file paths under path-like keys made absolute against ``base``."""
    if isinstance(value, dict):
        return {k: with_absolute_paths(v, base, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [with_absolute_paths(v, base, key) for v in value]
    is_path_key = key in _PATH_KEYS or key.endswith(_PATH_SUFFIXES)
    if isinstance(value, str) and is_path_key and value and "://" not in value:
        path = _expanded(value)
        if not path.is_absolute() and (base / path).exists():
            return str(base / path)
    return value


def with_declared_paths(config: Any, base: Path, keys: Sequence[str]) -> Any:
    """``config`` with the relative paths at the declared ``keys`` made absolute against
    ``base`` (dotted paths; ``*`` matches every list item or object key).

    A declared key is a path whether or not the file exists, so a missing file is reported
    with the folder it was looked for in; ``am://`` and other URLs, absolute paths and
    non-string values (a list of rates) are left as they are.
    """
    result = copy.deepcopy(config)
    for key in keys:
        result = _resolve_at(result, key.split("."), base)
    return result


def _resolve_at(value: Any, parts: list[str], base: Path) -> Any:
    if not parts:
        if isinstance(value, str) and value and "://" not in value:
            path = _expanded(value)
            return value if path.is_absolute() else str(base / path)
        return value
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        names = list(value) if head == "*" else [head] if head in value else []
        for name in names:
            value[name] = _resolve_at(value[name], rest, base)
    elif isinstance(value, list) and head == "*":
        value[:] = [_resolve_at(item, rest, base) for item in value]
    return value


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (the same path resolved, or hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False  # one of them does not exist (yet)
