"""A run's datasets in: data sources and selection files read into buffers, and each node's inputs.

Under an executor with worker processes (``shared``), every record array is copied once into
a shared-memory segment, which the workers attach to by name. A node is given the record
datasets among its inputs; the rest (another engine's statistics) only order the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from livecalc.io.parquet import PolicyData
from livecalc.log import get_logger
from livecalc.pipeline._outputs import load_source, policy_ext_name
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.selection import Selection
from livecalc.runtime.buffers import BufferManager
from livecalc.runtime.factory import EngineFactory

__all__ = ["load_files", "load_sources", "node_inputs"]

_log = get_logger()


def load_sources(
    config: PipelineConfig,
    selection: Selection | None,
    buffers: BufferManager,
    shared: bool,
    datasets: dict[str, Any],
) -> None:
    """Read into ``datasets`` the data sources the run reads (a selection's nodes' only)."""
    sources = config.data_sources
    names = selection.sources(config) if selection else list(sources)
    for name in names:
        loaded = load_source(name, sources[name], config)
        parts = {name: loaded} if isinstance(loaded, np.ndarray) else {name: loaded.records}
        if isinstance(loaded, PolicyData) and loaded.ext is not None:
            parts[policy_ext_name(name)] = loaded.ext
        for key, records in parts.items():
            datasets[key] = _placed(buffers, shared, f"source.{key}", records)
        _log.info("source_loaded", source=name, records=len(parts[name]))


def load_files(
    config: PipelineConfig,
    selection: Selection | None,
    factory: EngineFactory,
    buffers: BufferManager,
    shared: bool,
    datasets: dict[str, Any],
) -> None:
    """Read into ``datasets`` those a node selection reads from files (``datasets``), checked."""
    for name, value in selection.read(config, factory) if selection else ():
        if isinstance(value, np.ndarray):
            value = _placed(buffers, shared, f"dataset.{name}", value)
        datasets[name] = value


def node_inputs(
    config: PipelineConfig, datasets: Mapping[str, Any], node_id: str
) -> dict[str, np.ndarray]:
    """The record inputs of ``node_id``, by name."""
    node = config.node(node_id)
    # Non-record inputs (another engine's get_outputs) only order the run; engines read
    # records, found by dtype. A policy source's in-force extension travels with it.
    inputs = {}
    for name in node.inputs:
        value = datasets.get(name)
        if isinstance(value, np.ndarray):
            inputs[name] = value
            ext = datasets.get(policy_ext_name(name))
            if name in config.data_sources and isinstance(ext, np.ndarray):
                inputs[policy_ext_name(name)] = ext
    return inputs


def _placed(buffers: BufferManager, shared: bool, name: str, records: np.ndarray) -> np.ndarray:
    if not shared:
        return records
    # Worker processes attach to shared segments by name: copy once into one.
    info = buffers.allocate(name, records.dtype, len(records), True)
    info.data[:] = records
    return info.data
