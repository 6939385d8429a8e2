"""Executors: where engines run, behind one small interface.

An ``Executor`` turns a config node into an ``EngineHandle``: something with the engine
contract's methods (``initialize``, ``run_chunk``, ``output_spec``, ``get_outputs``,
``call(method, ...)`` for optional methods such as ``set_parameters``, ``dispose``). The
runner drives handles the same way whatever the executor:

- ``local``: engines in this process (``EngineLifecycleManager``, isolation ``"inline"``);
- ``processes``: each engine in a worker process attached to shared-memory buffers
  (isolation ``"process"``); a crash or a timeout fails that node, never the orchestrator;
- ``ray``: engines as Ray actors, chunks as actor calls, arrays through the object store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from livecalc.errors import ConfigurationError
from livecalc.pipeline.executors.base import EngineHandle, Executor

if TYPE_CHECKING:
    from livecalc.pipeline.config import RayOptions

__all__ = ["EXECUTORS", "EngineHandle", "Executor", "create_executor"]


EXECUTORS = ("local", "processes", "ray")


def create_executor(name: str, ray: RayOptions | None = None) -> Executor:
    """The executor called ``name`` (local, processes or ray); ``ray``: the run's
    ``run.ray`` (the cluster to join and its runtime_env)."""
    if name == "local":
        from livecalc.pipeline.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "processes":
        from livecalc.pipeline.executors.processes import ProcessExecutor

        return ProcessExecutor()
    if name == "ray":
        from livecalc.pipeline.executors.ray import RayExecutor

        if ray is None:
            return RayExecutor()
        return RayExecutor(ray.address, runtime_env=ray.runtime_env)
    raise ConfigurationError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
