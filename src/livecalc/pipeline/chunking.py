"""Chunk strategies: a fixed number of policies per chunk, or as many as a memory budget allows.

Both are ``livecalc.ports.ChunkStrategy`` objects (``FixedChunks``, ``MemoryBudgetChunks``);
``strategy_of`` picks the one a config and the CLI's ``--chunk-size`` ask for, and
``livecalc.run(config, chunking=...)`` takes any other. ``node_chunk_size`` asks the strategy
for one node's chunk size when the node starts (unless the node sets its own).

``run.chunking = {"strategy": "memory", "budget": "1GB"}`` sizes each chunked node's chunks
when it starts. The engine's own ``output_spec`` gives the output records for 1 and for 2
policies, so the output is ``fixed + per_policy x policies`` records of a known item size
(one record per policy and scenario for NPV output, one per scenario for totals, one per
policy for means). Memory that a chunk's size moves is then, per policy:

- the chunk's output records, three times when they are streamed to Parquet (the reused
  chunk buffer, its Arrow copy, the writer's encoded pages) and once when kept in memory;
- the engine's per-policy working arrays: ``POLICY_OVERHEAD`` bytes (basis tables, views)
  plus ``BYTES_PER_POLICY_YEAR`` for each projection year (cash flows by component and year,
  float64); measured: 200,000 policies of 50 years in one chunk took 2.3 kB each.

What the chunk size does not move is counted first: the process as it is now (the
interpreter, loaded libraries, the input records already read) and, for an output kept in
memory, the whole merged output. The chunk size is what fits in 90% of the rest.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Mapping

import numpy as np

from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.pipeline._node import ChunkPlan
from livecalc.pipeline.operations import ChunkingConfig
from livecalc.ports import ChunkRequest, ChunkStrategy
from livecalc.runtime.records import SCENARIO_DTYPE

__all__ = [
    "BYTES_PER_POLICY_YEAR",
    "POLICY_OVERHEAD",
    "FixedChunks",
    "MemoryBudgetChunks",
    "current_rss_bytes",
    "memory_chunk_size",
    "node_chunk_size",
    "output_records_of",
    "strategy_of",
    "working_bytes_per_policy",
]

_log = get_logger()

POLICY_OVERHEAD = 256
"""Bytes of engine working memory per policy in a chunk (policy basis arrays and views)."""

BYTES_PER_POLICY_YEAR = 48
"""Working memory per policy and projection year (5 float64 cash-flow components, + slack)."""

DEFAULT_YEARS = 50
"""Projection years assumed when a node reads no scenarios."""

_HEADROOM = 0.9  # allocator slack and interpreter churn the model does not see
_STREAM_COPIES = 3


def current_rss_bytes() -> int:
    """This process's resident memory now (Linux /proc), else its peak so far."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_chunk_size(
    node_id: str,
    budget_bytes: int,
    n_policies: int,
    output_records: Callable[[int], tuple[int, int]],
    streamed: bool,
    rss_bytes: int | None = None,
    working_bytes: int = POLICY_OVERHEAD,
) -> int:
    """Policies per chunk so that the node's peak memory stays within ``budget_bytes``.

    Args:
        output_records: ``k -> (records, itemsize)`` of the engine's output for ``k`` policies
            (from its ``output_spec``).
        streamed: whether chunk outputs go to a Parquet file (else they are kept).
        rss_bytes: the process's memory now (default: measured).
        working_bytes: the engine's working memory per policy (``working_bytes_per_policy``).
    """
    if n_policies <= 1:
        return max(1, n_policies)
    one, itemsize = output_records(1)
    two, _ = output_records(2)
    per_policy_records = max(0, two - one)
    fixed_records = max(0, one - per_policy_records)
    copies = _STREAM_COPIES if streamed else 1
    per_policy = per_policy_records * itemsize * copies + working_bytes
    fixed = (rss_bytes if rss_bytes is not None else current_rss_bytes()) + (
        fixed_records * itemsize * 2
    )
    if not streamed:
        fixed += per_policy_records * itemsize * n_policies  # the merged output, whole
    available = int(budget_bytes * _HEADROOM) - fixed
    size = int(np.clip(available // per_policy, 1, n_policies)) if available > 0 else 1
    if available <= per_policy * min(n_policies, 100):
        _log.warning(
            "memory_budget_too_small",
            engine_id=node_id,
            budget_bytes=budget_bytes,
            fixed_bytes=fixed,
            chunk_size=size,
        )
    _log.debug(
        "memory_chunk_model",
        engine_id=node_id,
        chunk_size=size,
        budget_bytes=budget_bytes,
        bytes_per_policy=per_policy,
        fixed_bytes=fixed,
    )
    return size


def working_bytes_per_policy(inputs: Mapping[str, np.ndarray]) -> int:
    """Per-policy working memory for these inputs: the overhead plus a share per year."""
    years = DEFAULT_YEARS
    for arr in inputs.values():
        if arr.dtype == SCENARIO_DTYPE and len(arr):
            years = int(arr["year"].max())
    return POLICY_OVERHEAD + BYTES_PER_POLICY_YEAR * years


def output_records_of(
    spec: Callable[[Mapping[str, np.ndarray]], object | None],
    inputs: Mapping[str, np.ndarray],
    chunked: tuple[str, ...],
) -> Callable[[int], tuple[int, int]]:
    """``k -> (records, itemsize)`` from an engine's ``output_spec`` on the first k policies."""

    def records(k: int) -> tuple[int, int]:
        out = spec({n: (a[:k] if n in chunked else a) for n, a in inputs.items()})
        if out is None:
            return 0, 0
        n = int(getattr(out, "records", 0))
        return n, np.dtype(getattr(out, "dtype", np.uint8)).itemsize

    return records


class FixedChunks:
    """``size`` policies per chunk (``run.chunk_size``, ``{"strategy": "fixed"}``,
    ``--chunk-size``); None: the run's configured chunk size."""

    name = "fixed"

    def __init__(self, size: int | None = None) -> None:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"FixedChunks: size must be an integer >= 1, not {size!r}")
        self.size = size

    def __repr__(self) -> str:
        return f"FixedChunks({self.size!r})"

    def chunk_size(self, request: ChunkRequest) -> int:
        return self.size if self.size is not None else request.default_size


class MemoryBudgetChunks:
    """As many policies per chunk as keep the process within ``budget_bytes`` (see
    ``memory_chunk_size``); ``rss_bytes`` pins the process's memory (tests), else measured."""

    name = "memory"

    def __init__(self, budget_bytes: int, *, rss_bytes: int | None = None) -> None:
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 1:
            raise ValueError(
                f"MemoryBudgetChunks: budget_bytes must be an integer >= 1, not {budget_bytes!r}"
            )
        self.budget_bytes = budget_bytes
        self.rss_bytes = rss_bytes

    def __repr__(self) -> str:
        return f"MemoryBudgetChunks({self.budget_bytes})"

    def chunk_size(self, request: ChunkRequest) -> int:
        return memory_chunk_size(
            request.node_id,
            self.budget_bytes,
            request.n_policies,
            request.output_records,
            request.streamed,
            rss_bytes=self.rss_bytes,
            working_bytes=request.working_bytes,
        )


def strategy_of(chunking: ChunkingConfig | None, chunk_size: int | None) -> ChunkStrategy:
    """The strategy a run asks for: ``--chunk-size`` (``chunk_size``) wins, then
    ``run.chunking``; otherwise fixed chunks of ``run.chunk_size``."""
    if chunk_size is not None:
        return FixedChunks(chunk_size)
    if chunking is not None and chunking.strategy == "memory":
        return MemoryBudgetChunks(chunking.budget_bytes)
    return FixedChunks(chunking.size if chunking is not None else None)


def node_chunk_size(
    node_id: str,
    own: int | None,
    inputs: Mapping[str, np.ndarray],
    output_spec: Callable[[Mapping[str, np.ndarray]], object | None],
    streamed: bool,
    strategy: ChunkStrategy,
    default_size: int,
) -> tuple[int, str]:
    """Policies per chunk of one node, and what chose it: the node's own ``chunk_size``
    (``own``: ``"node"``), else ``strategy`` (its name), asked only when the node reads
    policies.

    Args:
        output_spec: the node's engine's ``output_spec`` (the strategy sizes its output).
        streamed: whether the node's records stream to their file chunk by chunk.
        default_size: the run's chunk size (``run.chunk_size``, ``--chunk-size``).

    Raises:
        ConfigurationError: the strategy chose anything but an integer >= 1.
    """
    if own is not None:
        return own, "node"
    plan = ChunkPlan.of(inputs, default_size)
    if not plan.chunked:
        return default_size, strategy.name
    request = ChunkRequest(
        node_id=node_id,
        n_policies=plan.n_policies,
        output_records=output_records_of(output_spec, inputs, plan.chunked),
        streamed=streamed,
        working_bytes=working_bytes_per_policy(inputs),
        default_size=default_size,
    )
    size = strategy.chunk_size(request)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ConfigurationError(
            f"chunk strategy {strategy.name!r} chose {size!r} policies per chunk of "
            f"{node_id!r}; a ChunkStrategy must return an integer >= 1"
        )
    _log.info(
        "chunk_size_chosen",
        engine_id=node_id,
        strategy=strategy.name,
        chunk_size=int(size),
        policies=plan.n_policies,
    )
    return int(size), strategy.name
