"""Chunk strategies: a fixed number of policies per chunk, or as many as a memory budget allows.

Both are ``livecalc.ports.ChunkStrategy`` objects (``FixedChunks``, ``MemoryBudgetChunks``);
``strategy_of`` picks the one a config and the CLI's ``--chunk-size`` ask for, and
``livecalc.run(config, chunking=...)`` takes any other. ``node_chunk_size`` asks the strategy
for one node's chunk size when the node starts (unless the node sets its own).

``run.chunking = {"strategy": "memory", "budget": "1GB"}`` sizes each chunked node's chunks
when it starts, so that the whole run - the driver, every engine process, all replicas and all
chunks in flight - stays within the budget. The chunk size is a function of the budget, the
record sizes and the replica count only, never of the memory the process happens to use, so a
rerun gives the same chunks and the same bits (under local, processes and Ray alike).

The engine's own ``output_spec`` gives the output records for 1 and for 2 policies, so the
output is ``fixed + per_policy x policies`` records of a known item size (one record per policy
and scenario for NPV output, one per scenario for totals, one per policy for means). Memory
that a chunk's size moves is then, per policy:

- one output slot per chunk in flight (``chunks_in_flight``: 2 per replica in a pool, else 1),
  plus, for a streamed output, two more copies of the chunk being written (its Arrow copy and
  the writer's encoded pages), plus the copies each replica keeps of its own output
  (``replica_output_copies``: the actor's buffer and the returned object under Ray);
- each replica's working arrays: ``POLICY_OVERHEAD`` bytes (basis tables, views) plus
  ``BYTES_PER_POLICY_YEAR`` for each projection year (cash flows by component and year,
  float64); measured: 200,000 policies of 50 years in one chunk took 2.3 kB each.

What the chunk size does not move is counted first, from constants and record sizes: the
driver (``DRIVER_BYTES``) and each engine process (``WORKER_BYTES``), as measured (PSS) with
LiveCalc's libraries and kernels loaded; the node's input arrays; the fixed part of each output
slot; and, for an output kept in memory, the whole merged output. What is left of 90% of the
budget is shared equally by the chunked nodes that may run at once (``run.max_parallel``), and
the chunk size is what fits in a node's share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.pipeline._node import ChunkPlan
from livecalc.pipeline.operations import ChunkingConfig
from livecalc.ports import ChunkRequest, ChunkStrategy
from livecalc.runtime.records import SCENARIO_DTYPE

__all__ = [
    "BYTES_PER_POLICY_YEAR",
    "DRIVER_BYTES",
    "POLICY_OVERHEAD",
    "WORKER_BYTES",
    "FixedChunks",
    "Footprint",
    "MemoryBudgetChunks",
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

DRIVER_BYTES = 400 * 2**20
"""The driver process (interpreter, pyarrow, numba, kernels): 215 to 380 MB PSS measured,
depending on the libraries' versions."""

WORKER_BYTES = 128 * 2**20
"""One engine process (a worker or a Ray actor) before its chunks: about 100 MB PSS measured."""

_HEADROOM = 0.9  # allocator slack and interpreter churn the model does not see
_STREAM_EXTRA_COPIES = 2  # the chunk being written: its Arrow copy and the encoded pages


@dataclass(frozen=True)
class Footprint:
    """What of a run a node's memory budget covers besides its chunks (see ``ChunkRequest``)."""

    replicas: int = 1
    chunks_in_flight: int = 1
    worker_processes: int = 0
    replica_output_copies: int = 0
    input_bytes: int = 0
    concurrent_nodes: int = 1


def memory_chunk_size(
    node_id: str,
    budget_bytes: int,
    n_policies: int,
    output_records: Callable[[int], tuple[int, int]],
    streamed: bool,
    working_bytes: int = POLICY_OVERHEAD,
    footprint: Footprint | None = None,
) -> int:
    """Policies per chunk so that the run's peak memory stays within ``budget_bytes``.

    Args:
        output_records: ``k -> (records, itemsize)`` of the engine's output for ``k`` policies
            (from its ``output_spec``).
        streamed: whether chunk outputs go to a Parquet file (else they are kept).
        working_bytes: the engine's working memory per policy (``working_bytes_per_policy``).
        footprint: replicas, chunks in flight, processes and inputs of the run (default: one
            replica in the driver, no inputs counted).
    """
    if n_policies <= 1:
        return max(1, n_policies)
    f = footprint if footprint is not None else Footprint()
    one, itemsize = output_records(1)
    two, _ = output_records(2)
    per_policy_records = max(0, two - one)
    fixed_records = max(0, one - per_policy_records)
    replicas = max(1, f.replicas)
    output_copies = max(1, f.chunks_in_flight) + replicas * f.replica_output_copies
    if streamed:
        output_copies += _STREAM_EXTRA_COPIES
    per_policy = per_policy_records * itemsize * output_copies + replicas * working_bytes
    fixed = (
        DRIVER_BYTES
        + f.worker_processes * WORKER_BYTES
        + f.input_bytes
        + fixed_records * itemsize * (output_copies + 1)  # + the merged totals
    )
    if not streamed:
        fixed += per_policy_records * itemsize * n_policies  # the merged output, whole
    available = (int(budget_bytes * _HEADROOM) - fixed) // max(1, f.concurrent_nodes)
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
        replicas=replicas,
        worker_processes=f.worker_processes,
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
    """As many policies per chunk as keep the run within ``budget_bytes`` (see
    ``memory_chunk_size``): the same size for the same budget, records and replicas."""

    name = "memory"

    def __init__(self, budget_bytes: int) -> None:
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 1:
            raise ValueError(
                f"MemoryBudgetChunks: budget_bytes must be an integer >= 1, not {budget_bytes!r}"
            )
        self.budget_bytes = budget_bytes

    def __repr__(self) -> str:
        return f"MemoryBudgetChunks({self.budget_bytes})"

    def chunk_size(self, request: ChunkRequest) -> int:
        return memory_chunk_size(
            request.node_id,
            self.budget_bytes,
            request.n_policies,
            request.output_records,
            request.streamed,
            working_bytes=request.working_bytes,
            footprint=Footprint(
                replicas=request.replicas,
                chunks_in_flight=request.chunks_in_flight,
                worker_processes=request.worker_processes,
                replica_output_copies=request.replica_output_copies,
                input_bytes=request.input_bytes,
                concurrent_nodes=request.concurrent_nodes,
            ),
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
    footprint: Footprint | None = None,
) -> tuple[int, str]:
    """Policies per chunk of one node, and what chose it: the node's own ``chunk_size``
    (``own``: ``"node"``), else ``strategy`` (its name), asked only when the node reads
    policies.

    Args:
        output_spec: the node's engine's ``output_spec`` (the strategy sizes its output).
        streamed: whether the node's records stream to their file chunk by chunk.
        default_size: the run's chunk size (``run.chunk_size``, ``--chunk-size``).
        footprint: the node's replicas and the run's processes (the node's input bytes are
            counted here, from ``inputs``, when it gives none).

    Raises:
        ConfigurationError: the strategy chose anything but an integer >= 1.
    """
    if own is not None:
        return own, "node"
    plan = ChunkPlan.of(inputs, default_size)
    if not plan.chunked:
        return default_size, strategy.name
    f = footprint if footprint is not None else Footprint()
    request = ChunkRequest(
        node_id=node_id,
        n_policies=plan.n_policies,
        output_records=output_records_of(output_spec, inputs, plan.chunked),
        streamed=streamed,
        working_bytes=working_bytes_per_policy(inputs),
        default_size=default_size,
        replicas=f.replicas,
        chunks_in_flight=f.chunks_in_flight,
        worker_processes=f.worker_processes,
        replica_output_copies=f.replica_output_copies,
        input_bytes=f.input_bytes or _distinct_bytes(inputs.values()),
        concurrent_nodes=f.concurrent_nodes,
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


def _distinct_bytes(arrays: Iterable[np.ndarray]) -> int:
    """Bytes of the distinct arrays (an array passed under two names counts once)."""
    seen = {a.__array_interface__["data"][0]: a.nbytes for a in arrays}
    return sum(seen.values())
