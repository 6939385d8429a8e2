"""What a finished node leaves behind: its report's counters and statistics, and its datasets.

A node's record output becomes the dataset downstream nodes read and, when it is planned, an
output file (``OutputPlan``); a node with no record output (a solver) gives its
``get_outputs()`` as its dataset. Scenario files keep the ESG's description (for
``livecalc esg check``), and a run that keeps its datasets (``keep_datasets``) keeps each one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from livecalc.errors import CalcEngineError
from livecalc.io.generate import ESG_METADATA_KEY
from livecalc.pipeline._node import NodeOutput
from livecalc.pipeline._outputs import OutputPlan
from livecalc.pipeline._summary import NodeReport
from livecalc.pipeline.config import EngineNode
from livecalc.pipeline.executors import EngineHandle
from livecalc.pipeline.selection import DatasetKeeper

__all__ = ["engine_esg_metadata", "publish", "record_result"]


def _esg_metadata(outputs: Mapping[str, Any]) -> dict[str, str]:
    """The Parquet metadata describing an ESG's scenarios, from its ``get_outputs()``."""
    esg = outputs.get("esg_metadata")
    return {ESG_METADATA_KEY: json.dumps(esg)} if isinstance(esg, Mapping) else {}


def engine_esg_metadata(handle: EngineHandle) -> dict[str, str]:
    """The ESG description of an initialised engine (an ESG gives it from initialize on)."""
    try:
        return _esg_metadata(handle.get_outputs())
    except CalcEngineError:
        return {}


def record_result(
    report: NodeReport, result: NodeOutput, handle: EngineHandle, streamed: int
) -> None:
    """Copy a node's counters into its report, with the engine's statistics (``outputs``).

    Args:
        streamed: records the node streamed to its file (counted when none were kept).
    """
    report.engine_seconds = result.engine_seconds
    report.compute_seconds = result.compute_seconds
    report.rows_processed = result.rows_processed
    report.chunks = result.chunks
    report.reused_chunks = result.reused_chunks
    report.records = streamed if result.records is None else len(result.records)
    report.warnings = [*report.warnings, *result.warnings]
    report.pool = result.pool
    try:
        report.outputs = dict(handle.get_outputs())
    except CalcEngineError as exc:
        report.warnings.append(f"get_outputs failed: {exc}")


def publish(
    node: EngineNode,
    dataset: str,
    result: NodeOutput,
    report: NodeReport,
    outputs: OutputPlan,
    datasets: dict[str, Any],
    keeper: DatasetKeeper | None,
) -> None:
    """Make a node's ``dataset`` (its first output) available in ``datasets``, written.

    Raises:
        CalcEngineError: an output file could not be written.
    """
    if result.records is not None:
        datasets[dataset] = result.records
        # A scenario file keeps the ESG's description, for `livecalc esg check`.
        outputs.write_whole(dataset, result.records, _esg_metadata(report.outputs))
        if len(node.outputs) > 1:
            datasets[node.outputs[1]] = report.outputs
    elif outputs.is_streamed(dataset):
        datasets[dataset] = outputs.written[dataset]
    else:
        # No record output: the engine's get_outputs() is its dataset (a solver's solution).
        datasets[dataset] = report.outputs
    if keeper is not None:
        meta = _esg_metadata(report.outputs)
        for name in node.outputs:
            # A dataset already written to its output file is kept as that file.
            value = outputs.written.get(name, datasets.get(name))
            keeper.keep(name, value, {**outputs.metadata, **meta})
