"""The ``processes`` executor: each engine in its own worker process over shared memory.

Buffers live in shared-memory segments (the runner allocates them with ``shared=True``), so a
worker reads its inputs and writes its outputs in place: handing a chunk over costs the same
for 1 KB and 1 GB. A timeout kills the worker; a crash (even a segfault in a native engine)
fails that node only, never the orchestrator.

An engine that binds an evaluator (a goal-seeking solver) runs inline instead: its evaluator
is a callback into this process's runner, which a worker process could not call. The
projection it drives still runs in its own worker.

Workers start when their handles are created, all of them before the first is initialised,
so they boot in parallel; each is kept for the whole run (every chunk, every re-run of a
goal-seek) and stopped when the run ends.
"""

from __future__ import annotations

from typing import Literal

from livecalc.pipeline.config import EngineNode, RunOptions
from livecalc.pipeline.executors.base import EngineHandle, Executor
from livecalc.pipeline.executors.local import ManagedHandle, lifecycle_config
from livecalc.runtime.engine import SupportsEvaluator
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.lifecycle import EngineLifecycleManager

__all__ = ["ProcessExecutor"]


class ProcessExecutor(Executor):
    """Engines run in worker processes attached to shared-memory buffers."""

    name = "processes"
    shared_buffers = True
    engine_processes = True

    def create_handle(
        self, node: EngineNode, factory: EngineFactory, options: RunOptions
    ) -> EngineHandle:
        """A handle running ``node``'s engine in a worker (inline for evaluator-binders)."""
        engine = factory.create_engine(node.type)
        isolation: Literal["inline", "process"] = (
            "inline" if isinstance(engine, SupportsEvaluator) else "process"
        )
        manager = EngineLifecycleManager(
            engine, lifecycle_config(node, options, isolation), engine_id=node.id
        )
        # Boot the worker now: the runner creates every handle before initialising any, so
        # the workers of all nodes start side by side instead of one after another.
        manager.start()
        return ManagedHandle(engine, manager)

    def default_parallelism(self) -> int:
        """One replica per CPU this process may use (replica pools: ``parallelism``)."""
        from livecalc.pipeline.executors.local import available_cpus

        return available_cpus()

    def cpus(self) -> int:
        """The CPUs this process may use."""
        from livecalc.pipeline.executors.local import available_cpus

        return available_cpus()
