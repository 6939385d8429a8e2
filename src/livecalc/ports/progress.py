"""``LogProgress``: a ``ProgressReporter`` that turns progress events into log lines.

For a run with no terminal to draw bars on (a scheduler's worker, a batch job):
``livecalc.run(config, progress=LogProgress(context))`` logs ``progress_node_started``,
``progress_chunk_finished`` (every ``every_chunks``-th chunk, and the last) and
``progress_node_finished`` to LiveCalc's structured log, and to the ``RunContext``'s own log
when one is given (so they show in the scheduler's task log).
"""

from __future__ import annotations

from typing import Any

from livecalc.log import get_logger
from livecalc.ports import RunContext

__all__ = ["LogProgress"]

_log = get_logger()


class LogProgress:
    """Logs node and chunk events; ``every_chunks`` thins out the chunk lines of long nodes."""

    def __init__(self, context: RunContext | None = None, *, every_chunks: int = 1) -> None:
        if isinstance(every_chunks, bool) or not isinstance(every_chunks, int) or every_chunks < 1:
            raise ValueError(f"every_chunks must be an integer >= 1, not {every_chunks!r}")
        self.context = context
        self.every_chunks = every_chunks

    def __repr__(self) -> str:
        return f"LogProgress(context={self.context!r}, every_chunks={self.every_chunks})"

    def __call__(self, event: str, node_id: str, **info: Any) -> None:
        if event == "chunk_finished":
            done, chunks = int(info.get("chunk", 0)) + 1, int(info.get("chunks", 0))
            if done % self.every_chunks and done != chunks:
                return
            info = {**info, "done": done}
        level = "warning" if info.get("status") not in (None, "succeeded") else "info"
        fields = {"engine_id": node_id, **info}
        getattr(_log, level)(f"progress_{event}", **fields)
        if self.context is not None:
            self.context.log(level, f"progress_{event}", **fields)
