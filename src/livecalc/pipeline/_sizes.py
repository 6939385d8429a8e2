"""Record buffers checked against MAX_RECORDS before anything runs, from file footers.

A projection writes one record per policy and scenario. Its output buffer holds one chunk
(``chunk_size`` policies x scenarios) when the output streams to Parquet, or the whole set
(policies x scenarios) when another engine reads it. Either must stay within the record
limit of its type (``livecalc.runtime.records.MAX_RECORDS``): past it, the run would take
gigabytes, or end in a MemoryError after loading everything. The counts come from the
Parquet footers of the data sources (no data is read) and from what an initialised ESG says
it will generate (``esg_metadata``: outer x inner scenarios).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.graph import EngineGraph
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.records import (
    MAX_RECORDS,
    RESULT_DETAIL_DTYPE,
    RESULT_DTYPE,
    BufferType,
)

__all__ = [
    "buffer_problems",
    "esg_horizon_years",
    "esg_scenario_count",
]

_LIMITS = {
    RESULT_DTYPE: ("RESULT", MAX_RECORDS[BufferType.RESULT]),
    RESULT_DETAIL_DTYPE: ("RESULT_DETAIL", MAX_RECORDS[BufferType.RESULT_DETAIL]),
}


def esg_scenario_count(outputs: Mapping[str, object]) -> int | None:
    """The number of scenarios an initialised ESG will write, from its ``get_outputs()``."""
    meta = outputs.get("esg_metadata")
    if not isinstance(meta, Mapping):
        return None
    outer, inner = meta.get("outer"), meta.get("inner")
    return outer * inner if isinstance(outer, int) and isinstance(inner, int) else None


def esg_horizon_years(outputs: Mapping[str, object]) -> int | None:
    """The years of every scenario an initialised ESG will write, from its ``get_outputs()``."""
    meta = outputs.get("esg_metadata")
    if not isinstance(meta, Mapping):
        return None
    years = meta.get("years")
    return years if isinstance(years, int) and years > 0 else None


def buffer_problems(
    config: PipelineConfig,
    factory: EngineFactory,
    produced_scenarios: Mapping[str, int],
    chunk_size: int | None = None,
) -> list[str]:
    """Every projection whose output buffer would pass the record limit, with what to do.

    Args:
        config: a validated config.
        factory: resolves aliases of the projection type.
        produced_scenarios: scenarios per dataset an engine (the ESG) produces.
        chunk_size: the run's chunk size when it overrides the config's.
    """
    graph = EngineGraph(config)
    policies: dict[str, int] = {}
    scenarios: dict[str, int] = dict(produced_scenarios)
    for name, src in config.data_sources.items():
        counts = _footer_counts(config.resolve(src.path), src.resolved_kind(name))
        if counts is not None:
            (policies if src.resolved_kind(name) == "policies" else scenarios)[name] = counts
    streamed = {name for name in graph.output_paths() if not graph.consumers(name)}
    problems = []
    for i, node in enumerate(config.engines):
        if factory.canonical_type(node.type) != "projection" or not node.outputs:
            continue
        n_pol = next((policies[n] for n in node.inputs if n in policies), None)
        scen_inputs = [n for n in node.inputs if n in scenarios]
        known = all(n in config.data_sources or n in scenarios for n in node.inputs)
        if n_pol is None or not known:
            continue  # sizes not known before the run: the runner checks them there
        n_scen = scenarios[scen_inputs[0]] if scen_inputs else 1
        problem = _projection_problem(
            config, i, n_pol, n_scen, node.outputs[0] in streamed, chunk_size
        )
        if problem:
            problems.append(problem)
    return problems


def _projection_problem(
    config: PipelineConfig,
    i: int,
    n_pol: int,
    n_scen: int,
    streamed: bool,
    chunk_size: int | None,
) -> str | None:
    from livecalc.kernels.projection_basis import OutputMode

    node = config.engines[i]
    try:
        mode = OutputMode(node.config.get("output", "npv"))
    except ValueError:
        return None  # the engine's own config check names it
    if mode.dtype not in _LIMITS:
        return None  # scenario totals: one record per scenario
    name, limit = _LIMITS[mode.dtype]
    chunk = node.chunk_size or chunk_size or config.run.chunk_size
    if streamed or n_pol <= chunk:
        records = mode.records(min(chunk, n_pol), n_scen)
        if records <= limit:
            return None
        fits = max(1, limit // max(1, n_scen))
        return (
            f"engines[{i}] ({node.id!r}): each chunk's output would hold {records:,} {name} "
            f"records ({min(chunk, n_pol):,} policies x {n_scen:,} scenarios), over the "
            f"limit of {limit:,} per buffer; lower chunk_size to at most {fits:,}, or use "
            '"output": "scenario_totals" (one record per scenario)'
        )
    records = mode.records(n_pol, n_scen)
    if records <= limit:
        return None
    return (
        f"engines[{i}] ({node.id!r}): its output {node.outputs[0]!r} is read by another "
        f"engine, so it is kept in memory whole: {records:,} {name} records ({n_pol:,} "
        f"policies x {n_scen:,} scenarios), over the limit of {limit:,}; use "
        '"output": "scenario_totals" (one record per scenario, what risk measures need), '
        "fewer policies or scenarios, or let no engine read it so it streams to Parquet "
        "chunk by chunk"
    )


def _footer_counts(path: Path, kind: str) -> int | None:
    """Policies (rows), or scenarios (rows / years), of a Parquet file from its footer."""
    if not path.is_file() or path.suffix.lower() == ".csv":
        return None  # a missing file is reported elsewhere; CSV has no footer
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
        if kind == "policies":
            return int(meta.num_rows)
        column = meta.schema.names.index("year")
        years = 0
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(column).statistics
            if stats is None or not stats.has_min_max:
                return None
            years = max(years, int(stats.max))
    except (OSError, ValueError, TypeError):
        return None  # unreadable or no 'year' column: the reader says what is wrong
    return int(meta.num_rows) // years if years > 0 else None
