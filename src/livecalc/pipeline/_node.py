"""Running one DAG node: its policy chunks, its output buffers and the merge of chunk outputs.

A node whose inputs include POLICY records runs once per chunk of ``chunk_size`` policies
(POLICY_EXT records in lock-step); every other input is passed whole to each chunk. Output
buffers are allocated once and reused. Chunk outputs merge by dtype:

- SCENARIO_TOTAL: summed field by field per scenario (policy_count too), in a small
  accumulator; the chunk buffer is reused;
- CASHFLOW: summed per (scenario_id, period) in chunk-index order, every float field but
  ``time_years`` and ``discount_factor`` (the same in every chunk); the chunk buffer is sized
  for the longest policy of the whole input and reused;
- other records (RESULT, RESULT_DETAIL, per-policy means): either streamed to a sink chunk by
  chunk from one reused chunk buffer (bounded memory), or written by the engine straight into
  its slice of one merged buffer sized for the whole policy set (no copy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.log import get_logger
from livecalc.pipeline.executors import EngineHandle
from livecalc.runtime.buffers import (
    ALIGNMENT,
    CASHFLOW_DTYPE,
    MAX_RECORDS,
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    SCENARIO_TOTAL_DTYPE,
    BufferManager,
)
from livecalc.runtime.engine import ExecutionResult

if TYPE_CHECKING:
    from livecalc.pipeline.pool import PoolRun

__all__ = [
    "ChunkPlan",
    "NodeOutput",
    "NodeRunner",
    "chunk_records",
    "merge_cashflows",
    "merge_scenario_totals",
]

_log = get_logger()

ChunkSink = Callable[[np.ndarray], None]
"""Receives each chunk's output records (a view valid only during the call)."""

ChunkCallback = Callable[[int, int, int], None]
"""Called after each chunk with (chunk index, chunk count, policies in the chunk)."""

OutputCallback = Callable[[int, int, np.ndarray, bool], None]
"""Called after each chunk with (chunk index, chunk count, its output records: a view, and
whether that view stays valid after the call: a slice of the merged output)."""


@dataclass(frozen=True)
class ChunkPlan:
    """How a node's inputs split into chunks: which inputs are chunked and where they cut."""

    chunked: tuple[str, ...]
    n_policies: int
    chunk_size: int

    @classmethod
    def of(cls, inputs: Mapping[str, np.ndarray], chunk_size: int) -> ChunkPlan:
        """The plan for these inputs: POLICY and POLICY_EXT inputs are chunked together."""
        chunked = tuple(
            name for name, arr in inputs.items() if arr.dtype in (POLICY_DTYPE, POLICY_EXT_DTYPE)
        )
        lengths = {len(inputs[n]) for n in chunked}
        if len(lengths) > 1:
            sizes = ", ".join(f"{n}: {len(inputs[n])}" for n in chunked)
            raise ConfigurationError(
                f"policy inputs have different lengths ({sizes}); POLICY and POLICY_EXT "
                "records must match one to one"
            )
        return cls(chunked, lengths.pop() if lengths else 0, max(1, chunk_size))

    @property
    def count(self) -> int:
        """Number of chunks (1 for a node with no policy input, or with no policies)."""
        if not self.chunked:
            return 1
        return max(1, -(-self.n_policies // self.chunk_size))

    def bounds(self, i: int) -> tuple[int, int]:
        """Start and end policy index of chunk ``i``."""
        start = i * self.chunk_size
        return start, min(self.n_policies, start + self.chunk_size)

    def chunk(self, inputs: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
        """Inputs of chunk ``i``: views of the chunked inputs, the others whole."""
        if not self.chunked:
            return dict(inputs)
        start, end = self.bounds(i)
        return {n: (a[start:end] if n in self.chunked else a) for n, a in inputs.items()}


def merge_scenario_totals(acc: np.ndarray | None, chunk: np.ndarray) -> np.ndarray:
    """``acc`` plus one chunk's SCENARIO_TOTAL records, every float field summed per scenario."""
    if acc is None:
        return chunk.copy()
    floats = [n for n in SCENARIO_TOTAL_DTYPE.names or () if n not in ("scenario_id", "reserved")]
    if len(acc) == len(chunk) and np.array_equal(acc["scenario_id"], chunk["scenario_id"]):
        for name in floats:
            acc[name] += chunk[name]
        return acc
    # Chunks reported different scenario sets: align by scenario_id.
    ids = np.union1d(acc["scenario_id"], chunk["scenario_id"])
    merged = np.zeros(len(ids), dtype=SCENARIO_TOTAL_DTYPE)
    merged["scenario_id"] = ids
    for part in (acc, chunk):
        pos = np.searchsorted(ids, part["scenario_id"])
        for name in floats:
            np.add.at(merged[name], pos, part[name])
    return merged


_CASHFLOW_KEPT = ("scenario_id", "period", "time_years", "discount_factor")


def merge_cashflows(acc: np.ndarray | None, chunk: np.ndarray) -> np.ndarray:
    """``acc`` plus one chunk's CASHFLOW records, summed per (scenario_id, period).

    Chunks whose policies run fewer periods write fewer records: the result has every period
    any chunk had, sorted by scenario slot then period as the engine writes them.
    """
    if acc is None:
        return chunk.copy()
    sums = [n for n in CASHFLOW_DTYPE.names or () if n not in _CASHFLOW_KEPT]
    keys_acc = acc["scenario_id"].astype(np.int64) << 32 | acc["period"]
    keys_new = chunk["scenario_id"].astype(np.int64) << 32 | chunk["period"]
    if len(acc) >= len(chunk) and np.array_equal(keys_acc[: len(chunk)], keys_new):
        for name in sums:
            acc[name][: len(chunk)] += chunk[name]
        return acc
    # Different period counts: align by key (slot order kept: ids as first seen).
    order = list(dict.fromkeys([*acc["scenario_id"].tolist(), *chunk["scenario_id"].tolist()]))
    rank = {sid: r for r, sid in enumerate(order)}
    periods = max(int(acc["period"].max(initial=0)), int(chunk["period"].max(initial=0)))
    merged = np.zeros(len(order) * periods, dtype=CASHFLOW_DTYPE)
    view = merged.reshape(len(order), periods)
    view["scenario_id"] = np.array(order, dtype=np.uint32)[:, None]
    view["period"] = np.arange(1, periods + 1)[None, :]
    for part in (acc, chunk):
        pos = np.array([rank[int(s)] for s in part["scenario_id"]], dtype=np.int64) * periods
        pos += part["period"].astype(np.int64) - 1
        for name in ("time_years", "discount_factor"):
            merged[name][pos] = part[name]
        for name in sums:
            merged[name][pos] += part[name]
    return merged


@dataclass
class NodeOutput:
    """What a node run produced: its merged records (unless streamed) and its counters."""

    records: np.ndarray | None = None
    streamed_records: int = 0
    rows_processed: int = 0
    chunks: int = 0
    reused_chunks: int = 0
    engine_seconds: float = 0.0
    compute_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    pool: PoolRun | None = None
    """What the node's replica pool did (None without a pool)."""


class NodeRunner:
    """Runs one node's engine over its chunks, with buffers allocated once and reused."""

    def __init__(
        self,
        node_id: str,
        handle: EngineHandle,
        buffers: BufferManager,
        shared: bool,
    ) -> None:
        self.node_id = node_id
        self.handle = handle
        self._buffers = buffers
        self._shared = shared
        self._allocated: dict[str, np.ndarray] = {}

    def _buffer(self, role: str, dtype: np.dtype[Any], records: int) -> np.ndarray:
        # One buffer per role, allocated the first time and reused while it is large enough
        # (goal-seek re-runs ask for the same sizes).
        key = f"{self.node_id}.{role}"
        have = self._allocated.get(key)
        if have is not None and have.dtype == dtype and len(have) >= records:
            return have
        if key in self._buffers:
            self._buffers.free(key)
        data = self._buffers.allocate(key, dtype, records, shared=self._shared).data
        self._allocated[key] = data
        return data

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        chunk_size: int,
        sink: ChunkSink | None = None,
        role: str = "out",
        on_chunk: ChunkCallback | None = None,
        stored: Mapping[int, np.ndarray] | None = None,
        on_output: OutputCallback | None = None,
    ) -> NodeOutput:
        """Run every chunk; merge outputs into records, or hand each chunk to ``sink``.

        Args:
            inputs: the node's record inputs by name.
            chunk_size: policies per chunk.
            sink: when given, RESULT-like chunk outputs go there and are not kept.
            role: names this run's buffers (``"out"``; ``"eval"`` for goal-seek re-runs, so
                they never overwrite the records downstream engines read).
            on_chunk: progress callback.
            stored: output records of chunks that do not run again (a resumed run): they are
                merged as if the engine had just written them.
            on_output: receives each chunk's output records (checkpoints).
        """
        inputs = {name: self._aligned(f"{role}.input.{name}", a) for name, a in inputs.items()}
        stored = stored or {}
        plan = ChunkPlan.of(inputs, chunk_size)
        out = NodeOutput(chunks=plan.count)
        first = self._chunk(plan, inputs, 0, role)
        spec = self.handle.output_spec(first)
        buf: np.ndarray | None = None
        merged: np.ndarray | None = None
        totals: np.ndarray | None = None
        stream = False
        if spec is not None:
            dtype = np.dtype(spec.dtype)
            summed = dtype in (SCENARIO_TOTAL_DTYPE, CASHFLOW_DTYPE)
            if summed or sink is not None or plan.count == 1:
                stream = sink is not None and not summed
                records = spec.records
                if dtype == CASHFLOW_DTYPE:
                    # A later chunk may run more periods than the first: size for them all.
                    whole = self.handle.output_spec(inputs)
                    records = spec.records if whole is None else whole.records
                _check_limit(dtype, records, whole=plan.count == 1 and sink is None)
                buf = self._buffer(f"{role}.chunk", dtype, records)
            else:
                whole = self.handle.output_spec(inputs)
                assert whole is not None
                _check_limit(dtype, whole.records, whole=True)
                merged = self._buffer(f"{role}.merged", dtype, whole.records)
        offset = 0
        for i in range(plan.count):
            chunk_inputs = first if i == 0 else self._chunk(plan, inputs, i, role)
            target = buf if merged is None else merged[offset:]
            landing = target
            if merged is not None and spec is not None and _misaligned(merged[offset:]):
                # RESULT records are 24 bytes: after an odd number of them the slice starts
                # 8 bytes off. The engine writes into an aligned buffer; its records are
                # copied into place below.
                room = min(spec.records, len(merged) - offset)
                target = self._buffer(f"{role}.aligned", merged.dtype, max(1, room))[:room]
            start = time.perf_counter()
            if i in stored and target is not None:
                result = self._reuse(stored[i], target)
                out.reused_chunks += 1
            else:
                result = self.handle.run_chunk(chunk_inputs or None, target)
            seconds = time.perf_counter() - start
            n = chunk_records(self.node_id, result, i, target)
            out.engine_seconds += seconds
            out.compute_seconds += result.execution_time_ms / 1e3
            out.rows_processed += result.rows_processed
            out.warnings.extend(result.warnings)
            if on_output is not None and target is not None:
                on_output(i, plan.count, target[:n], merged is not None)
            if merged is not None:
                if target is not landing:
                    assert landing is not None and target is not None
                    landing[:n] = target[:n]
                offset += n
            elif buf is not None and buf.dtype == SCENARIO_TOTAL_DTYPE:
                totals = merge_scenario_totals(totals, buf[:n])
            elif buf is not None and buf.dtype == CASHFLOW_DTYPE:
                totals = merge_cashflows(totals, buf[:n])
            elif stream:
                assert sink is not None and buf is not None
                sink(buf[:n])
                out.streamed_records += n
            elif buf is not None:
                merged, offset = buf, n  # a single chunk: its buffer is the result
            start_p, end_p = plan.bounds(i)
            _log.debug(
                "chunk_finished",
                engine_id=self.node_id,
                chunk=i,
                chunks=plan.count,
                rows=result.rows_processed,
                records=n,
                seconds=seconds,
            )
            if on_chunk is not None:
                on_chunk(i, plan.count, end_p - start_p if plan.chunked else 0)
        if totals is not None:
            # Summed records are a fresh array: under worker processes the next node (a nested
            # valuation reading cash flows) gets them from shared memory like any output.
            out.records = self._aligned(f"{role}.totals", totals, copy=self._shared)
        elif merged is not None:
            out.records = merged[:offset]
        return out

    def _aligned(self, key: str, records: np.ndarray, copy: bool = False) -> np.ndarray:
        """``records`` when it starts on an ALIGNMENT boundary, else (or with ``copy``) an
        aligned copy in the node's buffers (shared memory under worker processes)."""
        if not (copy or _misaligned(records)):
            return records
        placed = self._buffer(key, records.dtype, len(records))[: len(records)]
        placed[:] = records
        return placed

    def _chunk(
        self, plan: ChunkPlan, inputs: Mapping[str, np.ndarray], i: int, role: str
    ) -> dict[str, np.ndarray]:
        # A chunk of 24-byte POLICY_EXT records may start 8 bytes off: engines get every
        # buffer 16-byte aligned, as the C header promises.
        return {
            name: self._aligned(f"{role}.chunk_input.{name}", a)
            for name, a in plan.chunk(inputs, i).items()
        }

    def _reuse(self, records: np.ndarray, target: np.ndarray) -> ExecutionResult:
        """A stored chunk output copied where the engine would have written it."""
        if records.dtype != target.dtype or len(records) > len(target):
            raise ExecutionError(
                f"a stored chunk ({len(records)} records of {records.dtype}) does not fit the "
                f"output buffer ({len(target)} of {target.dtype})",
                self.node_id,
            )
        target[: len(records)] = records
        return ExecutionResult(success=True, bytes_written=records.nbytes)


def chunk_records(node_id: str, result: ExecutionResult, i: int, target: np.ndarray | None) -> int:
    """The records chunk ``i`` wrote into ``target`` (0 with no output buffer), checked.

    Raises:
        ExecutionError: the engine reported failure, or ``bytes_written`` that is not a
            whole number of records, or more records than ``target`` holds.
    """
    if not result.success:
        raise ExecutionError(
            f"chunk {i} failed: {result.error_message or 'the engine reported failure'}",
            node_id,
        )
    if target is None:
        return 0
    n, rest = divmod(result.bytes_written, target.dtype.itemsize)
    if rest or n < 0:
        raise ExecutionError(
            f"chunk {i}: engine reported bytes_written={result.bytes_written}, not "
            f"a whole number of {target.dtype.itemsize}-byte records; report "
            "n * output_buffer.dtype.itemsize for the n records written",
            node_id,
        )
    if n > len(target):
        raise ExecutionError(
            f"chunk {i}: engine reported {n} records written into a buffer of {len(target)}",
            node_id,
        )
    return n


def _misaligned(records: np.ndarray) -> bool:
    return len(records) > 0 and records.ctypes.data % ALIGNMENT != 0


def _check_limit(dtype: np.dtype[Any], records: int, whole: bool) -> None:
    """Refuse an output buffer past the record limit of its type, saying what to do."""
    for kind, limit in MAX_RECORDS.items():
        if kind.dtype == dtype and records > limit:
            advice = (
                "let no engine read this output, so that it streams to Parquet chunk by "
                "chunk, or have the engine write fewer records (the projection's "
                '"output": "scenario_totals")'
                if whole
                else "lower chunk_size"
            )
            raise ConfigurationError(
                f"the output buffer would hold {records:,} {kind.name} records, over the limit "
                f"of {limit:,}; {advice}"
            )
