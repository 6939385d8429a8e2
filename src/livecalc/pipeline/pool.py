"""Replica pools: one node's engine replicated, its chunks run side by side, merged in order.

A node with ``parallelism`` N > 1 gets a ``ReplicaPool``: an ``EngineHandle`` over N handles
of the same engine, made by the executor (worker processes, Ray actors or inline engines).
The pool initialises its first replica with the runner's other engines, and the others the
first time the node runs more than one chunk, all with the same config, then replays the
parameters set since (``set_parameters``), so a goal-seek's overrides reach every replica.

``ReplicaPool.run_chunks`` is the scheduler. One thread per replica takes chunk indices from a
shared queue; at most ``max_in_flight`` chunks are dispatched beyond the last one merged, each
holding one of as many output slots, so memory stays bounded whatever the chunk count. Chunks
finish in any order; ``merge`` sees them in chunk-index order, once each, so the merged output
is the sequential run's, byte for byte.

Faults:

- a replica that dies (worker killed, Ray actor or node lost) has its chunk re-run on the next
  free replica, up to ``replica_retries`` times per chunk; a worker process is replaced by a
  fresh one on its next chunk, a lost Ray actor is retired;
- a chunk past its timeout (its worker killed) is re-run when the node has ``retries``, and
  fails the node otherwise;
- any other failure fails the node (the handle already applied the node's ``retries``);
- ``cancel`` (Ctrl-C) kills every replica at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import EngineTimeoutError, ExecutionError
from livecalc.log import get_logger
from livecalc.pipeline.executors import EngineHandle, Executor
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    InputBuffer,
    OutputSpec,
    SupportsEvaluator,
)

if TYPE_CHECKING:
    from livecalc.pipeline.config import EngineNode, PipelineConfig, RunOptions
    from livecalc.runtime.factory import EngineFactory

__all__ = [
    "LostReplica",
    "PoolRun",
    "ReplicaPool",
    "create_node_handle",
    "reads_policies",
    "replica_count",
]

_log = get_logger()

_POLL_SECONDS = 0.1
"""How often the scheduler looks at the cancel flag while no chunk finishes."""

IN_FLIGHT_PER_REPLICA = 2
"""Chunks dispatched per replica beyond the last merged: one running, one queued behind it."""


def replica_count(node: EngineNode, options: RunOptions, default: int) -> int:
    """A node's replicas: its own ``parallelism``, else the run's, else ``default``."""
    chosen = node.parallelism or options.parallelism or default
    return max(1, int(chosen))


def reads_policies(config: PipelineConfig, node: EngineNode) -> bool:
    """Whether ``node`` reads a policy data source, so runs in chunks that a pool can share."""
    return any(
        name in config.data_sources and config.data_sources[name].resolved_kind(name) == "policies"
        for name in node.inputs
    )


def create_node_handle(
    executor: Executor,
    node: EngineNode,
    factory: EngineFactory,
    options: RunOptions,
    chunked: bool = True,
) -> EngineHandle:
    """The handle for ``node``: a ReplicaPool when it runs on more than one replica.

    A node that is not ``chunked`` (it reads no policies: one chunk) stays single, and so does
    an engine that binds an evaluator (a goal-seeking solver): its evaluator is a callback into
    this process, and it drives the (pooled) projection anyway.
    """
    size = replica_count(node, options, executor.default_parallelism()) if chunked else 1
    if size > 1 and not isinstance(factory.create_engine(node.type), SupportsEvaluator):
        threads = max(1, executor.cpus() // size)
        return ReplicaPool(
            node.id,
            lambda: executor.create_replica(node, factory, options, threads),
            size,
            replica_retries=options.replica_retries,
            timeout_retries=node.retries,
        )
    return executor.create_handle(node, factory, options)


def _lost(handle: EngineHandle) -> bool:
    probe = getattr(handle, "replica_lost", None)
    return bool(probe()) if callable(probe) else False


def _restartable(handle: EngineHandle) -> bool:
    return bool(getattr(handle, "restartable", True))


def _where(handle: EngineHandle) -> str:
    probe = getattr(handle, "location", None)
    if not callable(probe):
        return "inline"
    try:
        return str(probe())
    except ExecutionError:
        # Asked after its chunk finished: a replica lost since (its Ray node gone) has no
        # location to give, and its finished chunk still counts.
        return "lost"


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _kill(handle: EngineHandle) -> None:
    kill = getattr(handle, "kill", None)
    if callable(kill):
        kill()


@dataclass
class _Replica:
    index: int
    handle: EngineHandle
    retired: bool = False
    chunks: int = 0


@dataclass(frozen=True)
class LostReplica:
    """A replica lost during a run (its worker killed, its Ray node gone), and when."""

    replica: int
    location: str
    """Where it ran: a Ray node id, or ``pid:N`` of a worker process."""
    at: str
    """When its loss was seen (UTC, ISO 8601)."""
    chunk: int
    """The chunk it was running, re-run on another replica."""

    def describe(self) -> str:
        """One line for the summary's and the report's warnings."""
        return (
            f"replica {self.replica} lost on {self.location} at {self.at}; its chunk "
            f"{self.chunk} re-ran on another replica"
        )


@dataclass
class PoolRun:
    """What one ``run_chunks`` call did: replicas and chunks per location, re-runs by cause,
    the replicas lost."""

    chunks_by_location: dict[str, int] = field(default_factory=dict)
    replicas_by_location: dict[str, int] = field(default_factory=dict)
    reruns_lost: int = 0
    reruns_timeout: int = 0
    lost: list[LostReplica] = field(default_factory=list)

    @property
    def replicas(self) -> int:
        """Replicas that took part (lost ones included)."""
        return sum(self.replicas_by_location.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the summary's and the run store's ``pool`` of a node)."""
        return {
            "replicas": self.replicas,
            "replicas_by_location": dict(self.replicas_by_location),
            "chunks_by_location": dict(self.chunks_by_location),
            "reruns_lost": self.reruns_lost,
            "reruns_timeout": self.reruns_timeout,
            "lost": [
                {"replica": x.replica, "location": x.location, "at": x.at, "chunk": x.chunk}
                for x in self.lost
            ],
        }


RunOne = Callable[[EngineHandle, int, int], Any]
"""``run_one(replica, chunk index, slot)``: runs one chunk on a replica (in its thread)."""

Merge = Callable[[int, int, Any], None]
"""``merge(chunk index, slot, what run_one returned)``: called in chunk order, once each."""


class ReplicaPool:
    """An EngineHandle over ``size`` replicas of one node's engine, with a chunk scheduler."""

    def __init__(
        self,
        node_id: str,
        make_replica: Callable[[], EngineHandle],
        size: int,
        *,
        replica_retries: int = 3,
        timeout_retries: int = 0,
    ) -> None:
        self.node_id = node_id
        self.size = size
        self.replica_retries = replica_retries
        self.timeout_retries = timeout_retries
        self._make = make_replica
        self._replicas = [_Replica(0, make_replica())]
        self._init: tuple[dict[str, Any], AMCredentials | None] | None = None
        self._parameters: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.last_run = PoolRun()

    @property
    def max_in_flight(self) -> int:
        """Chunks dispatched at most beyond the last one merged (output slots)."""
        return IN_FLIGHT_PER_REPLICA * self.size

    @property
    def primary(self) -> EngineHandle:
        """The first live replica: output specs, outputs and info come from it."""
        for replica in self._replicas:
            if not replica.retired:
                return replica.handle
        return self._replicas[0].handle

    def _on_primary(self, what: Callable[[EngineHandle], Any]) -> Any:
        # A primary lost for good (its Ray node gone) is retired and the next one asked; with
        # none left, a fresh replica is started.
        for _ in range(len(self._replicas) + 1):
            replica = next((r for r in self._replicas if not r.retired), None)
            if replica is None:
                self.ensure_started(1)
                continue
            try:
                return what(replica.handle)
            except ExecutionError:
                if not (_lost(replica.handle) and not _restartable(replica.handle)):
                    raise
                replica.retired = True
                _log.warning("replica_retired", engine_id=self.node_id, replica=replica.index)
        raise ExecutionError("no replica of the engine is left", self.node_id)

    def live_replicas(self) -> list[EngineHandle]:
        """The replicas started and not retired."""
        return [r.handle for r in self._replicas if not r.retired]

    # -- the EngineHandle contract --------------------------------------------------------------

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Initialise every replica at once (worker start-up is most of a replica's cost).

        The first replica's error (a ConfigurationError naming the key) is the one raised.
        """
        self._init = (dict(config), credentials)
        primary = self.primary
        with cf.ThreadPoolExecutor(self.size, thread_name_prefix="livecalc-replica-init") as ex:
            first = ex.submit(
                contextvars.copy_context().run, primary.initialize, config, credentials
            )
            others = [
                ex.submit(contextvars.copy_context().run, self._start_replica, i)
                for i in range(1, self.size)
            ]
            primary_error: BaseException | None = None
            try:
                first.result()
            except ExecutionError as exc:
                # Lost while starting (its Ray node died, its worker was killed): retired;
                # the other replicas carry on. A refused config is not a loss: raised below.
                if not _lost(primary):
                    raise
                primary_error = exc
                self._replicas[0].retired = True
            started = []
            for future in others:
                try:
                    started.append(future.result())
                except ExecutionError as exc:
                    _log.warning("replica_start_failed", engine_id=self.node_id, error=str(exc))
        self._replicas.extend(started)
        if not self.live_replicas():
            if primary_error is not None:
                raise primary_error
            raise ExecutionError("no replica of the engine started", self.node_id)
        if primary_error is not None:
            _log.warning("replica_retired", engine_id=self.node_id, replica=0)
        _log.info("replicas_started", engine_id=self.node_id, replicas=len(self.live_replicas()))

    def get_info(self) -> EngineInfo:
        """The engine's metadata."""
        return self.primary.get_info()

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """One chunk on the first replica, unprotected by ``replica_retries``: a pooled node's
        chunks, a node's only chunk too, go through ``run_chunks`` instead."""
        return self.primary.run_chunk(input_buffer, output_buffer)

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """The engine's output buffer needs."""
        return self._on_primary(lambda h: h.output_spec(inputs))  # type: ignore[no-any-return]

    def get_outputs(self) -> Mapping[str, Any]:
        """The first replica's non-record results."""
        return self._on_primary(lambda h: h.get_outputs())  # type: ignore[no-any-return]

    def supports(self, method: str) -> bool:
        """Whether the engine has ``method``."""
        return self.primary.supports(method)

    def call(self, method: str, *args: Any) -> Any:
        """``set_parameters`` goes to every replica (and is replayed on new ones); others to one."""
        if method != "set_parameters":
            return self._on_primary(lambda h: h.call(method, *args))
        if args and isinstance(args[0], Mapping):
            self._parameters.update(args[0])
        value = None
        for replica in [r for r in self._replicas if not r.retired]:
            try:
                value = replica.handle.call(method, *args)
            except ExecutionError:
                if not (_lost(replica.handle) and not _restartable(replica.handle)):
                    raise
                replica.retired = True  # gone for good (its Ray node): the others carry on
                _log.warning("replica_retired", engine_id=self.node_id, replica=replica.index)
        if not self.live_replicas():
            raise ExecutionError("no replica of the engine is left", self.node_id)
        return value

    def dispose(self) -> None:
        """Dispose of every replica; never raises."""
        for replica in self._replicas:
            try:
                replica.handle.dispose()
            except Exception as exc:  # one failed dispose must not keep the others alive
                _log.warning("replica_dispose_failed", engine_id=self.node_id, error=str(exc))

    def kill(self) -> None:
        """Stop every replica now (Ctrl-C): workers killed, actors killed, no goodbye."""
        for replica in self._replicas:
            try:
                _kill(replica.handle)
            except Exception as exc:
                _log.warning("replica_kill_failed", engine_id=self.node_id, error=str(exc))

    def compile_seconds(self) -> float:
        """Seconds of numba compiling in this node's replicas: the longest replica's, since
        replicas compile side by side (their sum would exceed the node's wall time)."""
        seconds = [0.0]
        for replica in self._replicas:
            measure = getattr(replica.handle, "compile_seconds", None)
            if callable(measure):
                seconds.append(float(measure()))
        return max(seconds)

    def cancel(self) -> None:
        """The runner's Ctrl-C hook (as for a single handle): every replica killed at once."""
        self.kill()

    # -- replicas --------------------------------------------------------------------------------

    def _start_replica(self, index: int) -> _Replica:
        handle = self._make()
        assert self._init is not None
        handle.initialize(*self._init)
        if self._parameters:
            handle.call("set_parameters", dict(self._parameters))
        return _Replica(index, handle)

    def ensure_started(self, wanted: int) -> None:
        """Start replicas (in parallel) until ``wanted`` are live, at most ``size`` in all
        (replacing replicas retired since, e.g. with a lost Ray node)."""
        if self._init is None:
            raise ExecutionError("the replica pool is not initialised", self.node_id)
        missing = min(wanted, self.size) - len(self.live_replicas())
        if missing <= 0:
            return
        base = len(self._replicas)
        with cf.ThreadPoolExecutor(missing, thread_name_prefix="livecalc-replica-init") as ex:
            started = list(ex.map(self._start_replica, range(base, base + missing)))
        self._replicas.extend(started)
        _log.info("replicas_started", engine_id=self.node_id, replicas=len(self.live_replicas()))

    # -- the scheduler ---------------------------------------------------------------------------

    def run_chunks(
        self,
        count: int,
        run_one: RunOne,
        merge: Merge,
        cancel: threading.Event | None = None,
    ) -> PoolRun:
        """Run chunks ``0..count-1`` over the replicas; ``merge`` each in index order.

        Raises:
            ExecutionError: a chunk exhausted its retries, every replica is gone, or ``cancel``
                was set (every replica is then killed).
        """
        self.ensure_started(count)
        stats = PoolRun()
        self.last_run = stats
        todo: queue.Queue[tuple[int, int] | None] = queue.Queue()
        done: queue.Queue[tuple[_Replica, int, int, Any, BaseException | None]] = queue.Queue()
        replicas = [r for r in self._replicas if not r.retired]
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=self._serve,
                args=(r, todo, done, run_one, stop),
                name=f"livecalc-{self.node_id}-replica-{r.index}",
                daemon=True,
            )
            for r in replicas
        ]
        for t in threads:
            t.start()
        free = list(range(min(self.max_in_flight, count)))[::-1]
        finished: dict[int, tuple[int, Any]] = {}
        lost_reruns: dict[int, int] = {}
        timeout_reruns: dict[int, int] = {}
        first_losses: dict[int, str] = {}  # what went wrong first, for the error message
        next_dispatch = next_merge = 0
        try:
            while next_merge < count:
                while free and next_dispatch < count:
                    todo.put((next_dispatch, free.pop()))
                    next_dispatch += 1
                try:
                    replica, i, slot, value, error = done.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if cancel is not None and cancel.is_set():
                        self.kill()
                        raise ExecutionError(
                            f"interrupted after {next_merge} of {count} chunks; every replica "
                            "was stopped",
                            self.node_id,
                        ) from None
                    if not any(t.is_alive() for t in threads):
                        first = next(iter(first_losses.values()), "")
                        raise ExecutionError(
                            f"every replica is gone; {count - next_merge} chunks not run"
                            + (f" (first loss: {first})" if first else ""),
                            self.node_id,
                        ) from None
                    continue
                if error is None:
                    if i >= next_merge and i not in finished:  # a chunk counts once
                        finished[i] = (slot, value)
                        where = _where(replica.handle)
                        _log.debug("chunk_done", engine_id=self.node_id, chunk=i, location=where)
                        stats.chunks_by_location[where] = stats.chunks_by_location.get(where, 0) + 1
                    while next_merge in finished:
                        slot_m, value_m = finished.pop(next_merge)
                        merge(next_merge, slot_m, value_m)
                        free.append(slot_m)
                        next_merge += 1
                    continue
                first_losses.setdefault(i, str(error))
                self._rerun_or_raise(
                    replica, i, error, lost_reruns, timeout_reruns, stats, first_losses[i]
                )
                todo.put((i, slot))  # the same slot: nobody else writes it any more
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                while True:  # chunks not started stay so: no replica takes another
                    todo.get_nowait()
            for _ in threads:
                todo.put(None)
            interrupted = cancel is not None and cancel.is_set()
            for t in threads:
                while t.is_alive():
                    if interrupted:
                        self.kill()  # again: a replica may have just restarted its worker
                    t.join(_POLL_SECONDS * 5)
        for r in replicas:
            where = _where(r.handle)
            stats.replicas_by_location[where] = stats.replicas_by_location.get(where, 0) + 1
        return stats

    def _rerun_or_raise(
        self,
        replica: _Replica,
        i: int,
        error: BaseException,
        lost_reruns: dict[int, int],
        timeout_reruns: dict[int, int],
        stats: PoolRun,
        first_loss: str = "",
    ) -> None:
        if isinstance(error, EngineTimeoutError):
            if timeout_reruns.get(i, 0) >= self.timeout_retries:
                raise error
            timeout_reruns[i] = timeout_reruns.get(i, 0) + 1
            stats.reruns_timeout += 1
            cause = "timeout"
        elif isinstance(error, ExecutionError) and _lost(replica.handle):
            if lost_reruns.get(i, 0) >= self.replica_retries:
                raise ExecutionError(
                    f"chunk {i}: its replica was lost {lost_reruns[i] + 1} times "
                    f"(replica_retries={self.replica_retries}); first: {first_loss}",
                    self.node_id,
                ) from error
            lost_reruns[i] = lost_reruns.get(i, 0) + 1
            stats.reruns_lost += 1
            stats.lost.append(LostReplica(replica.index, _where(replica.handle), _utc_now(), i))
            cause = "replica_lost"
        else:
            raise error
        _log.warning(
            "chunk_rerun",
            engine_id=self.node_id,
            chunk=i,
            cause=cause,
            replica=replica.index,
            error=str(error),
        )

    def _serve(
        self,
        replica: _Replica,
        todo: queue.Queue[tuple[int, int] | None],
        done: queue.Queue[tuple[_Replica, int, int, Any, BaseException | None]],
        run_one: RunOne,
        stop: threading.Event,
    ) -> None:
        # One replica's loop: take a chunk, run it, report; stop on None, on stop or retired.
        while True:
            item = todo.get()
            if item is None or stop.is_set():
                return
            i, slot = item
            _where(replica.handle)  # known before the chunk: a replica lost in it is named
            try:
                value = run_one(replica.handle, i, slot)
            except BaseException as exc:
                if _lost(replica.handle) and not _restartable(replica.handle):
                    replica.retired = True
                done.put((replica, i, slot, None, exc))
                if replica.retired:
                    _log.warning("replica_retired", engine_id=self.node_id, replica=replica.index)
                    return
                continue
            replica.chunks += 1
            done.put((replica, i, slot, value, None))
