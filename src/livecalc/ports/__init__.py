"""Ports: the small interfaces through which a scheduler (or the CLI) drives LiveCalc.

LiveCalc's runner knows no scheduler. Whatever starts a run - the command line, the Python
API, Dagster, Airflow - hands it the same five things, each a ``typing.Protocol`` here:

- ``RunContext``: the run's id, its attempt number, where its log lines go, and a small state
  mapping the scheduler keeps between attempts (a retried attempt with the same run id resumes
  from the checkpoint of the first);
- ``CheckpointStore``: where finished chunks are kept (put/get/list/delete of named blobs);
- ``ChunkStrategy``: how many policies go into one chunk of a node;
- ``ProgressReporter``: told of node and chunk events while the run goes;
- ``RateLimiter``: paces calls to a remote service (the Assumptions Manager) and says how long
  to wait before retrying an HTTP 429 or 503.

Default implementations (what the CLI uses), by port:

=================  ========================================================================
port               default
=================  ========================================================================
RunContext         ``livecalc.ports.context.LocalRunContext`` (new run id, attempt 1, logs)
CheckpointStore    ``livecalc.ops.checkpoint.LocalCheckpointStore`` (a folder);
                   ``ArrowFsCheckpointStore`` for any ``pyarrow.fs`` URI
ChunkStrategy      ``livecalc.pipeline.chunking.FixedChunks`` / ``MemoryBudgetChunks``
ProgressReporter   the CLI's progress bars; ``livecalc.ports.progress.LogProgress`` (logs)
RateLimiter        ``livecalc.ports.ratelimit.TokenBucket``
=================  ========================================================================

Test doubles for each live in ``livecalc.testing``. This module imports nothing of LiveCalc's
above the foundation, so every layer may depend on it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "CheckpointStore",
    "ChunkRequest",
    "ChunkStrategy",
    "ProgressReporter",
    "RateLimiter",
    "RunContext",
]


@runtime_checkable
class CheckpointStore(Protocol):
    """Where chunk parts and manifests live: four operations on named blobs.

    Keys are ``/``-separated relative paths (``RUN_ID/manifest.json``,
    ``RUN_ID/NODE_ID/chunk-000003.rec``).
    """

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically: readers see the old value or the new one."""

    def get(self, key: str) -> bytes:
        """The bytes at ``key``; FileNotFoundError when there is none."""

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (a folder-like path), sorted."""

    def delete(self, prefix: str) -> None:
        """Remove ``prefix`` and everything under it; nothing when there is none."""


@dataclass(frozen=True)
class ChunkRequest:
    """What a ``ChunkStrategy`` knows of the node it sizes chunks for."""

    node_id: str
    n_policies: int
    """Policies (rows of the chunked inputs) the node will process."""
    output_records: Callable[[int], tuple[int, int]]
    """``k -> (records, itemsize)`` of the engine's output for ``k`` policies."""
    streamed: bool
    """Whether chunk outputs stream to a file (else the node keeps them all in memory)."""
    working_bytes: int
    """Estimated engine working memory per policy."""
    default_size: int
    """The run's configured chunk size (``run.chunk_size`` or ``--chunk-size``)."""
    replicas: int = 1
    """Engine replicas that run the node's chunks side by side (each with its working memory)."""
    chunks_in_flight: int = 1
    """Chunk outputs held at once (a replica pool's output slots; 1 without a pool)."""
    worker_processes: int = 0
    """Engine processes of the whole run besides the driver (workers, Ray actors)."""
    replica_output_copies: int = 0
    """Copies of a chunk's output each replica keeps apart from the slot (2 under Ray: the
    actor's buffer and the returned object)."""
    input_bytes: int = 0
    """Bytes of the node's input arrays, held whole while it runs."""
    concurrent_nodes: int = 1
    """Chunked nodes that may run at the same time (each gets an equal share of a budget)."""


@runtime_checkable
class ChunkStrategy(Protocol):
    """Chooses the policies per chunk of each chunked node, when the node starts."""

    name: str
    """Shown in logs and the run record: ``fixed``, ``memory``, or a strategy's own name."""

    def chunk_size(self, request: ChunkRequest) -> int:
        """Policies per chunk for this node: at least 1."""


@runtime_checkable
class ProgressReporter(Protocol):
    """Called as ``reporter(event, node_id, **info)`` while a run goes.

    Events: ``node_started`` (chunks, chunk_size, chunking: the strategy's name),
    ``chunk_finished`` (chunk, chunks, policies), ``node_finished`` (status). A plain function
    with that signature is one; a reporter must not raise (an exception fails the node).
    """

    def __call__(self, event: str, node_id: str, **info: Any) -> None: ...


@runtime_checkable
class RateLimiter(Protocol):
    """Paces requests to a remote service, and says how long to back off when it pushes back."""

    def acquire(self) -> None:
        """Block until one more request may be sent."""

    def retry_delay(self, attempt: int, status: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retrying a request answered ``status`` (429, 503) for the
        ``attempt``-th time (1 for the first refusal); None: give up now. ``retry_after`` is
        the server's Retry-After header in seconds, when it sent one."""


@runtime_checkable
class RunContext(Protocol):
    """How a scheduler hands LiveCalc its run: id, attempt, logging, and state across attempts.

    ``livecalc.run(config, context=ctx)`` uses ``ctx.run_id`` as the run's id (so a scheduler's
    run and LiveCalc's run store agree). When ``ctx.attempt > 1`` and an unfinished checkpoint
    of that run id exists, the run resumes from it instead of starting over.
    """

    @property
    def run_id(self) -> str:
        """The LiveCalc run id: the same on every attempt of one scheduled run."""

    @property
    def attempt(self) -> int:
        """1 for the first try, 2 for the first retry, ..."""

    @property
    def state(self) -> MutableMapping[str, Any]:
        """Small JSON-able values LiveCalc leaves for the scheduler (``run_id``, output paths,
        ``resumed``); a scheduler may persist them between attempts (Airflow XCom, Dagster
        metadata)."""

    def log(self, level: str, event: str, **fields: Any) -> None:
        """One log line from LiveCalc for the scheduler's own log (level: debug, info,
        warning, error). LiveCalc's structured JSON logs are written as well."""
