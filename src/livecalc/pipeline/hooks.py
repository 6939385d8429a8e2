"""Points where a layer above the runner (the run store, checkpoints) follows a run.

The runner calls a ``RunHooks`` object, when it is given one, at four fixed points. The base
class does nothing, so a subclass overrides only what it needs. ``livecalc.ops`` uses them to
record runs, keep chunk checkpoints and skip the chunks a resumed run already has; the runner
knows nothing of either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from livecalc.pipeline._summary import RunSummary
    from livecalc.pipeline.config import PipelineConfig

__all__ = ["RunHooks"]


class RunHooks:
    """Callbacks of one run; every method of the base class does nothing."""

    def run_started(self, run_id: str, config: PipelineConfig) -> Mapping[str, str]:
        """Called before any source is read; returns key-value metadata for every output file."""
        return {}

    def stored_chunks(self, node_id: str, chunk_size: int, chunks: int) -> Mapping[int, np.ndarray]:
        """Output records of the chunks of ``node_id`` that need not run again (resume)."""
        return {}

    def chunk_output(
        self, node_id: str, chunk: int, chunks: int, records: np.ndarray, stable: bool = False
    ) -> None:
        """One finished chunk's output records: a view valid only during the call, or, when
        ``stable``, until ``run_finished`` (a slice of the node's merged output)."""

    def run_finished(self, summary: RunSummary) -> None:
        """Called when every node is done, before the summary file is written."""
