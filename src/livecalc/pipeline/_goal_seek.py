"""Goal-seek: a solver's evaluator re-runs its upstream projection with parameter overrides.

The evaluator runs the projection's initialised engine again on the same inputs and the same
chunk size, into its own ``eval`` buffers (never the records downstream engines read). The
parameters it overrode are set back when the solver's node ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from livecalc.errors import ExecutionError
from livecalc.log import get_logger
from livecalc.pipeline._node import NodeRunner
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.executors import EngineHandle
from livecalc.pipeline.graph import EngineGraph

__all__ = ["bind_evaluator", "upstream_projection"]

_log = get_logger()


def upstream_projection(
    config: PipelineConfig,
    graph: EngineGraph,
    handles: Mapping[str, EngineHandle],
    node_id: str,
) -> str | None:
    """The first node feeding ``node_id`` whose engine takes parameter overrides, if any."""
    node = config.node(node_id)
    for name in node.inputs:
        producer = graph.producers.get(name)
        handle = handles.get(producer) if producer is not None else None
        if handle is not None and handle.supports("set_parameters"):
            return producer
    return None


def bind_evaluator(
    handle: EngineHandle,
    upstream: str,
    up_handle: EngineHandle,
    up_runner: NodeRunner,
    up_inputs: Mapping[str, np.ndarray],
    chunk_size: int,
    up_config: Mapping[str, Any],
) -> Callable[[], None]:
    """Bind to ``handle`` an evaluator that re-runs node ``upstream``; returns the function
    that restores the upstream engine's parameters.

    Args:
        up_config: the upstream node's own config, which holds the original parameters when
            its engine has no ``get_parameters``.
    """
    original = (
        dict(up_handle.call("get_parameters")) if up_handle.supports("get_parameters") else {}
    )
    touched: set[str] = set()

    def evaluate(overrides: Mapping[str, float]) -> np.ndarray:
        """Re-run the upstream projection with ``overrides``; its merged output records."""
        touched.update(overrides)
        up_handle.call("set_parameters", dict(overrides))
        out = up_runner.run(up_inputs, chunk_size, role="eval")
        _log.debug("evaluation_finished", engine_id=upstream, overrides=dict(overrides))
        if out.records is None:
            raise ExecutionError("the upstream engine wrote no records", upstream)
        return out.records

    handle.call("bind_evaluator", evaluate)

    def restore() -> None:
        if touched:
            # Without get_parameters, the node's own config holds the originals (an
            # absent multiplier is the neutral 1.0).
            up_handle.call(
                "set_parameters",
                {k: original.get(k, up_config.get(k, 1.0)) for k in sorted(touched)},
            )

    return restore
