"""The AM client's cache: each table as the Arrow IPC stream the server sent, with its ETag.

One folder per server (``<cache_dir>/<server>/<name>/<version>.arrows`` and ``.json``), every
file written atomically, so readers see the old copy or the new one, never half of one;
``_latest.json`` remembers the version ``@latest`` last resolved to.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa

__all__ = ["AssumptionCache", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$LIVECALC_HOME/cache`` (``~/.livecalc/cache`` when it is not set), used when the
    credentials name no cache folder."""
    from livecalc.home import livecalc_home

    return livecalc_home() / "cache"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Cached:
    table: pa.Table
    etag: str | None


class AssumptionCache:
    """Tables fetched from one AM server, kept as the Arrow IPC streams it sent."""

    def __init__(self, root: Path | str, am_url: str) -> None:
        url = urlsplit(am_url)
        # One folder per server, so two AMs with the same names never mix.
        server = re.sub(r"[^A-Za-z0-9._-]", "_", f"{url.netloc}{url.path}".rstrip("/"))
        self.folder = Path(root) / (server or "default")

    def _paths(self, name: str, version: str) -> tuple[Path, Path]:
        base = self.folder / name / version
        return base.with_suffix(base.suffix + ".arrows"), base.with_suffix(base.suffix + ".json")

    def load(self, name: str, version: str) -> _Cached | None:
        """The cached table of ``name@version``, or None (absent or unreadable)."""
        data_path, meta_path = self._paths(name, version)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with pa.memory_map(str(data_path)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except (OSError, ValueError, pa.ArrowInvalid):
            return None
        return _Cached(table, meta.get("etag"))

    def store(self, name: str, version: str, body: bytes, etag: str | None) -> None:
        """Keep the server's answer for ``name@version`` (data first, then its metadata)."""
        data_path, meta_path = self._paths(name, version)
        _atomic_write(data_path, body)
        meta = {"etag": etag, "fetched_at": time.time()}
        _atomic_write(meta_path, json.dumps(meta).encode())

    def latest(self, name: str) -> str | None:
        """The version ``@latest`` last resolved to, or None."""
        try:
            data = json.loads((self.folder / name / "_latest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        version = data.get("version")
        return str(version) if version else None

    def set_latest(self, name: str, version: str) -> None:
        """Remember that ``@latest`` resolved to ``version``."""
        _atomic_write(
            self.folder / name / "_latest.json", json.dumps({"version": version}).encode()
        )
