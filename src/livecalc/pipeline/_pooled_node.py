"""A node's chunks on a replica pool: the same outputs as ``NodeRunner``, byte for byte.

``PooledNodeRunner`` is the ``NodeRunner`` of a node whose handle is a ``ReplicaPool`` of more
than one replica. It hands its chunk loop to the pool's scheduler: each chunk runs on a free
replica into one of ``max_in_flight`` output slots (shared memory under ``processes``), and the
slots are merged in chunk-index order, once each, exactly as the sequential loop merges them:

- SCENARIO_TOTAL: summed per scenario in chunk order (``merge_scenario_totals``), so the
  floating-point sums are the sequential run's;
- streamed records: handed to the sink in chunk order (the Parquet file is the same);
- merged records: copied into their place in the one merged buffer.

Inputs are never copied: chunks are views of the node's input arrays (shared memory under
``processes``; one object in Ray's object store, shared by every actor, under ``ray``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from livecalc.errors import ExecutionError
from livecalc.log import get_logger
from livecalc.pipeline._node import (
    ChunkCallback,
    ChunkPlan,
    ChunkSink,
    NodeOutput,
    NodeRunner,
    OutputCallback,
    chunk_records,
    merge_cashflows,
    merge_scenario_totals,
)
from livecalc.pipeline.executors import EngineHandle
from livecalc.pipeline.pool import ReplicaPool
from livecalc.runtime.buffers import CASHFLOW_DTYPE, SCENARIO_TOTAL_DTYPE, BufferManager
from livecalc.runtime.engine import ExecutionResult

__all__ = ["PooledNodeRunner", "node_runner"]

_log = get_logger()


def node_runner(
    node_id: str,
    handle: EngineHandle,
    buffers: BufferManager,
    shared: bool,
    cancel: threading.Event | None = None,
) -> NodeRunner:
    """The runner for a node: pooled when its handle is a pool of several replicas."""
    if isinstance(handle, ReplicaPool) and handle.size > 1:
        return PooledNodeRunner(node_id, handle, buffers, shared, cancel)
    return NodeRunner(node_id, handle, buffers, shared)


class PooledNodeRunner(NodeRunner):
    """Runs one node's chunks on its replica pool, merged in chunk order."""

    def __init__(
        self,
        node_id: str,
        pool: ReplicaPool,
        buffers: BufferManager,
        shared: bool,
        cancel: threading.Event | None = None,
    ) -> None:
        super().__init__(node_id, pool, buffers, shared)
        self.pool = pool
        self._cancel = cancel

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
        """Run every chunk on the pool; merge as ``NodeRunner.run`` does, in chunk order.

        ``stored`` chunks (a resumed run) are copied into their slot instead of running;
        ``on_output`` receives each chunk's records as it merges (checkpoints), in order.
        """
        plan = ChunkPlan.of(inputs, chunk_size)
        # A node of one chunk goes through the pool's scheduler too: its replica lost (a
        # killed worker) re-runs the chunk, up to replica_retries times, as for any chunk.
        stored = stored or {}
        out = NodeOutput(chunks=plan.count)
        spec = self.pool.output_spec(plan.chunk(inputs, 0))
        dtype = None if spec is None else np.dtype(spec.dtype)
        totals_mode = dtype in (SCENARIO_TOTAL_DTYPE, CASHFLOW_DTYPE)
        stream = sink is not None and dtype is not None and not totals_mode
        merged: np.ndarray | None = None
        if dtype is not None and not totals_mode and not stream:
            whole = self.pool.output_spec(inputs)
            assert whole is not None
            merged = self._buffer(f"{role}.merged", dtype, whole.records)
        slots: list[np.ndarray] = []
        if spec is not None and dtype is not None:
            n_slots = min(self.pool.max_in_flight, plan.count)
            records = spec.records
            if dtype == CASHFLOW_DTYPE:
                # A later chunk may run more periods than the first: size for them all.
                whole_spec = self.pool.output_spec(inputs)
                records = spec.records if whole_spec is None else whole_spec.records
            slots = [self._buffer(f"{role}.slot{k}", dtype, records) for k in range(n_slots)]
        state: dict[str, Any] = {"offset": 0, "totals": None}

        def run_one(replica: EngineHandle, i: int, slot: int) -> tuple[ExecutionResult, float]:
            target = slots[slot] if slots else None
            start = time.perf_counter()
            if i in stored and target is not None:
                return self._reuse(stored[i], target), time.perf_counter() - start
            result = replica.run_chunk(plan.chunk(inputs, i) or None, target)
            return result, time.perf_counter() - start

        def merge(i: int, slot: int, value: tuple[ExecutionResult, float]) -> None:
            result, seconds = value
            target = slots[slot] if slots else None
            n = chunk_records(self.node_id, result, i, target)
            if i in stored:
                out.reused_chunks += 1
            out.engine_seconds += seconds
            out.compute_seconds += result.execution_time_ms / 1e3
            out.rows_processed += result.rows_processed
            out.warnings.extend(result.warnings)
            if target is not None:
                if on_output is not None:
                    # The slot is reused by a later chunk: the records are not stable.
                    on_output(i, plan.count, target[:n], False)
                if totals_mode and dtype == CASHFLOW_DTYPE:
                    state["totals"] = merge_cashflows(state["totals"], target[:n])
                elif totals_mode:
                    state["totals"] = merge_scenario_totals(state["totals"], target[:n])
                elif stream:
                    assert sink is not None
                    sink(target[:n])
                    out.streamed_records += n
                else:
                    assert merged is not None
                    offset = state["offset"]
                    if offset + n > len(merged):
                        raise ExecutionError(
                            f"chunk {i}: {offset + n} records exceed the {len(merged)} the "
                            "engine asked for",
                            self.node_id,
                        )
                    merged[offset : offset + n] = target[:n]
                    state["offset"] = offset + n
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
                on_chunk(i, plan.count, end_p - start_p)

        stats = self.pool.run_chunks(plan.count, run_one, merge, self._cancel)
        out.pool = stats
        out.warnings.extend(lost.describe() for lost in stats.lost)
        _log.info(
            "node_pool_finished",
            engine_id=self.node_id,
            replicas=stats.replicas,
            locations=len(stats.replicas_by_location),
            replicas_by_location=stats.replicas_by_location,
            chunks_by_location=stats.chunks_by_location,
            reruns_lost=stats.reruns_lost,
            reruns_timeout=stats.reruns_timeout,
        )
        if state["totals"] is not None:
            # As in NodeRunner: summed records go to shared memory for a next node's worker.
            out.records = self._aligned(f"{role}.totals", state["totals"], copy=self._shared)
        elif merged is not None:
            out.records = merged[: state["offset"]]
        return out
