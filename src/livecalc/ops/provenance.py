"""What a run was made of: the config as run and its hash, input files, versions, the host.

The same provenance goes into the run store, summary.json and the key-value metadata of every
Parquet output (``livecalc.provenance``), so a file found on a share says where it came from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from livecalc._version import __version__
from livecalc.masking import scrub_text
from livecalc.pipeline.config import PipelineConfig

__all__ = [
    "PROVENANCE_KEY",
    "am_references",
    "config_as_run",
    "config_hash",
    "file_sha256",
    "input_files",
    "pinned_assumptions",
    "provenance",
    "redact_url",
    "versions",
]

PROVENANCE_KEY = "livecalc.provenance"
"""Parquet key-value metadata key holding the provenance JSON."""

_PATH_KEYS = ("file", "path", "library")
_PATH_SUFFIXES = ("_table", "_file", "_path")


def config_as_run(config: PipelineConfig) -> dict[str, Any]:
    """The validated config (``--set`` overrides applied) as plain JSON, paths as resolved."""
    data: dict[str, Any] = config.model_dump(mode="json", exclude={"base_dir"})
    # A webhook URL's query string may hold a token: never stored or shown.
    for alert in data.get("alerts", []):
        if alert.get("type") == "webhook":
            alert["url"] = redact_url(alert["url"])
    return data


def redact_url(url: str) -> str:
    """``url`` without its query string, fragment and user info (which may hold secrets)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = "..." if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def config_hash(config: PipelineConfig) -> str:
    """sha256 of the canonical JSON of the config as run (engines' paths made absolute)."""
    data = config.model_dump(mode="json", exclude={"base_dir"})
    data["engines"] = [
        {**node, "config": config.engine_config(node["id"])} for node in data["engines"]
    ]
    data["data_sources"] = {
        k: {**v, "path": str(config.resolve(v["path"]))} for k, v in data["data_sources"].items()
    }
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _paths_in(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _paths_in(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _paths_in(v, key)
    elif (
        isinstance(value, str)
        and (key in _PATH_KEYS or key.endswith(_PATH_SUFFIXES))
        and not value.startswith("am://")
    ):
        yield value


def input_files(config: PipelineConfig) -> list[Path]:
    """Every input file of the run: data sources and the files engines' configs name."""
    found = [config.resolve(src.path) for src in config.data_sources.values()]
    for node in config.engines:
        found += [Path(p) for p in _paths_in(config.engine_config(node.id))]
    unique = dict.fromkeys(p.resolve() for p in found if p.is_file())
    return list(unique)


def am_references(config: PipelineConfig) -> list[str]:
    """The ``am://`` references of the engines' configs, as written."""
    text = json.dumps([n.config for n in config.engines], default=str)
    return sorted(set(re.findall(r"am://[A-Za-z0-9_.\-]+(?:@[A-Za-z0-9_.\-]+)?", text)))


def pinned_assumptions(
    config: PipelineConfig, credentials: Any = None, run_id: str | None = None
) -> dict[str, Any]:
    """Each ``am://`` reference of the config as it resolves now: ``{reference: {"name",
    "version", "sha256"}}``, the sha256 of the table's Arrow IPC stream (the content the
    server's ETag stands for). A checkpoint keeps this, so that a resume that would resolve
    ``@latest`` to another version, or to other content, is refused instead of valuing half
    the policies on each. A reference that cannot be resolved is left out: the engine that
    reads it reports why.

    Resolved as part of run ``run_id`` (its id bound in the log context): the run's engines
    in this process then reuse these tables (one resolution per reference and run), and the
    ``assumption_resolved`` events carry the run id.
    """
    references = am_references(config)
    if not references:
        return {}
    import pyarrow as pa
    import structlog

    from livecalc.assumptions.client import resolve_reference
    from livecalc.assumptions.credentials import CredentialManager
    from livecalc.errors import CalcEngineError

    if config.run.am_rate_limit is not None:
        # Paced and retried as the run's engines are (run.am_rate_limit), not by the defaults.
        if credentials is None:
            try:
                credentials = CredentialManager().get_credentials()
            except CalcEngineError:
                credentials = None  # none to be had: the engine that reads the table says why
        if credentials is not None:
            credentials = credentials.model_copy(update={"rate_limit": config.run.am_rate_limit})
    pinned: dict[str, Any] = {}
    for ref in references:
        try:
            with structlog.contextvars.bound_contextvars(run_id=run_id):
                found = resolve_reference(ref, credentials)
        except CalcEngineError:
            continue
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, found.table.schema) as writer:
            writer.write_table(found.table)
        digest = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
        pinned[ref] = {"name": found.name, "version": found.version, "sha256": digest}
    return pinned


def versions() -> dict[str, str]:
    """LiveCalc's, Python's, numpy's and numba's versions (numba only when installed)."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    # Read once per process: a package's metadata costs about a millisecond to find, and
    # the versions a process runs with do not change under it.
    import numpy

    out = {"livecalc": __version__, "python": platform.python_version(), "numpy": numpy.__version__}
    try:
        from importlib.metadata import version

        out["numba"] = version("numba")
        out["pyarrow"] = version("pyarrow")
    except Exception:  # a missing distribution is not a reason to lose the run's record
        pass
    return out


def provenance(
    config: PipelineConfig,
    *,
    config_path: str | None,
    overrides: list[str],
    executor: str,
    datasets: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """The provenance of a run about to start (outputs and resolved versions come later).

    ``datasets``: the files a run of some nodes reads in place of other nodes' outputs; each
    is listed among the inputs with its ``dataset`` name.
    """
    inputs: list[dict[str, Any]] = [
        {"path": str(p), "sha256": file_sha256(p), "size_bytes": p.stat().st_size}
        for p in input_files(config)
    ]
    inputs += [
        {
            "path": str(p),
            "sha256": file_sha256(p),
            "size_bytes": p.stat().st_size,
            "dataset": name,
        }
        for name, p in (datasets or {}).items()
    ]
    return {
        "config_path": config_path,
        "overrides": [scrub_text(o) for o in overrides],
        "config_hash": config_hash(config),
        "config": config_as_run(config),
        "inputs": inputs,
        "assumptions": [
            {"reference": r, "name": None, "version": None} for r in am_references(config)
        ],
        "versions": versions(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "platform": sys.platform,
        "executor": executor,
    }
