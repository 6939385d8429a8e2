"""The ``ray`` executor: each engine a Ray actor, initialised once; chunks are actor calls.

Inputs go into Ray's object store once per run: an array passed whole to every chunk (the
scenarios) as one object shared by every actor of the run, sent by reference with its record
range; a chunk of policies as an object of its own, put when the chunk is sent and freed when
it returns, so a node receives only the policies it projects. The actor reads zero-copy,
read-only views. The actor writes into an output buffer of its own, reused between
chunks, and returns the records written; the handle copies them into the runner's buffer
(Ray hands results back read-only, so that one copy is the price of the object store).

Ray's own retries are off (``max_restarts=0``, ``max_task_retries=0``): a retried chunk would
run twice. LiveCalc's policy applies instead: ``retries`` re-runs a failed chunk once (not a
timed-out one); a chunk past ``timeout_seconds`` is abandoned and its actor killed with
``ray.kill``, which fails the node. An engine that binds an evaluator (a goal-seeking solver)
runs in this process, since its evaluator calls back into the runner.

Ray is an optional extra: ``pip install 'livecalc[ray]'``. The executor joins a running Ray
(``ray.init`` already called in this process; else the ``address`` given, from ``--address`` or
``run.ray.address``; else ``RAY_ADDRESS``) or starts a new local one (``address="local"``:
never a cluster that Ray's ``ray_current_cluster`` file happens to name, which may be another
job's or long gone), and shuts down only what it started. ``run.ray.runtime_env`` is handed to
``ray.init``: how a real cluster's workers get LiveCalc, plug-in engines and files. Input
arrays are put in the object store once per run, shared by every actor.

A node with ``parallelism`` > 1 runs on a replica pool (``livecalc.pipeline.pool``) of actors
placed evenly over the cluster's nodes that have CPUs: each new replica goes to the node with
the fewest live replicas of that engine per CPU (one per node before two on any, when nodes
are alike), pinned there (Ray's ``NodeAffinitySchedulingStrategy``, ``soft=False``: with
``soft=True`` Ray 2.60 moved zero-CPU actors to other nodes, and a run left a node idle; a
node gone by then fails its replica, which the pool retires). An actor lost with its node is
retired and its chunk re-run on the others; its replacement goes to the emptiest live node.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import (
    CalcEngineError,
    ConfigurationError,
    EngineTimeoutError,
    ExecutionError,
    InitializationError,
)
from livecalc.log import get_logger
from livecalc.pipeline.config import EngineNode, RunOptions
from livecalc.pipeline.executors.base import EngineHandle, Executor
from livecalc.pipeline.executors.local import (
    DEFAULT_TIMEOUT_SECONDS,
    LocalExecutor,
)
from livecalc.runtime.buffers import POLICY_DTYPE, POLICY_EXT_DTYPE
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
    SupportsEvaluator,
)
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.numba_threads import NumbaThreadsEngine

__all__ = ["RayExecutor", "RayHandle", "place_replica"]

_log = get_logger()


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            "executor 'ray' needs Ray: pip install 'livecalc[ray]' (or use --executor local "
            "or processes)"
        ) from None
    return ray


class _EngineActor:
    """Hosts one engine inside a Ray worker; the remote class is made from it lazily."""

    def __init__(self, engine: ICalcEngine) -> None:
        self.engine = engine
        self.arrays: dict[str, np.ndarray] = {}
        self.output: np.ndarray | None = None

    def initialize(self, config: Mapping[str, Any], credentials: AMCredentials | None) -> Any:
        self.engine.initialize(config, credentials)
        return self.engine.get_info()

    def _inputs(self, refs: Mapping[str, tuple[Any, int, int, bool]]) -> dict[str, np.ndarray]:
        import ray

        inputs = {}
        for name, (ref, start, end, shared) in refs.items():
            if not shared:  # a chunk's own object: read once, not kept
                inputs[name] = ray.get(ref)
                continue
            key = ref.hex()
            if key not in self.arrays:
                self.arrays[key] = ray.get(ref)  # a read-only view of the object store
            inputs[name] = self.arrays[key][start:end]
        return inputs

    def run_chunk(
        self, refs: Mapping[str, tuple[Any, int, int, bool]], out: tuple[Any, int] | None
    ) -> tuple[ExecutionResult, np.ndarray | None]:
        inputs = self._inputs(refs)
        buffer = None
        if out is not None:
            dtype, records = np.dtype(out[0]), out[1]
            if self.output is None or self.output.dtype != dtype or len(self.output) < records:
                self.output = np.empty(records, dtype=dtype)
            buffer = self.output[:records]
        result = self.engine.run_chunk(inputs or None, buffer)
        if buffer is None:
            return result, None
        n = result.bytes_written // buffer.dtype.itemsize
        return result, buffer[:n]

    def call(self, method: str, args: tuple[Any, ...], refs: Any = None) -> Any:
        if method == "output_spec":
            return self.engine.output_spec(self._inputs(refs))
        return getattr(self.engine, method)(*args)

    def dispose(self) -> None:
        self.engine.dispose()

    def node_id(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())


def _base_array(array: np.ndarray) -> tuple[np.ndarray, int]:
    """The whole record array a chunk view belongs to, and the view's first record there."""
    base = array
    while isinstance(base.base, np.ndarray) and base.base.dtype == array.dtype:
        base = base.base
    if base is array or not base.flags.c_contiguous:
        return array, 0
    offset = (array.ctypes.data - base.ctypes.data) // array.dtype.itemsize
    return base, int(offset)


class RayHandle:
    """An EngineHandle whose engine lives in a Ray actor."""

    restartable = False
    """A lost actor (its node gone, or killed at a timeout) stays lost: a pool retires it."""

    def __init__(
        self,
        ray: Any,
        engine: ICalcEngine,
        node: EngineNode,
        options: RunOptions,
        puts: dict[tuple[int, int], Any] | None = None,
        placement: Any = None,
    ) -> None:
        """Args:
        puts: object-store references of input arrays, shared by a node's replicas so each
            array is put once.
        placement: the actor's Ray scheduling strategy (a replica's node); None: Ray's choice.
        """
        self._ray = ray
        self._engine = engine
        self._node = node
        self._timeout = node.timeout_seconds or options.timeout_seconds or DEFAULT_TIMEOUT_SECONDS
        # num_cpus=0: the runner decides what runs at once; reserving a CPU per actor would
        # leave a pipeline of more engines than CPUs waiting forever for its last actor.
        remote = ray.remote(max_restarts=0, max_task_retries=0, num_cpus=0)(_EngineActor)
        if placement is not None:
            remote = remote.options(scheduling_strategy=placement)
        self._actor = remote.remote(engine)
        self._puts: dict[tuple[int, int], Any] = {} if puts is None else puts
        self._info: EngineInfo | None = None
        self._dead: str | None = None
        self._node_id: str | None = None
        # The node it was pinned to: where it was, should it be lost before it said so.
        self._placed_on: str | None = getattr(placement, "node_id", None)

    def _get(self, ref: Any, what: str, timeout: float | None = None) -> Any:
        ray = self._ray
        if self._dead:
            raise ExecutionError(f"{what}: the engine's actor was stopped ({self._dead})")
        try:
            return ray.get(ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            # An actor call cannot be cancelled with force=True (that is for tasks): killing
            # the actor is the only way to stop code that does not return.
            ray.kill(self._actor, no_restart=True)
            self._dead = f"timed out after {timeout:g} s"
            raise EngineTimeoutError(
                f"{what} ran past timeout_seconds={timeout:g}; its actor was killed",
                self._node.id,
                timeout,
            ) from None
        except ray.exceptions.RayActorError as exc:
            self._dead = "actor died"
            raise ExecutionError(
                f"{what}: the engine's actor died ({exc})", self._node.id
            ) from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            if isinstance(cause, CalcEngineError):
                raise cause from None
            raise ExecutionError(f"{what} failed: {cause or exc}", self._node.id) from cause
        except ray.exceptions.RayError as exc:
            # Node died, object lost with it, worker crashed: the actor is as good as gone.
            self._dead = f"lost ({type(exc).__name__})"
            raise ExecutionError(
                f"{what}: the engine's actor was lost ({exc})", self._node.id
            ) from None

    def _refs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, tuple[Any, int, int, bool]]:
        refs = {}
        for name, array in inputs.items():
            base, start = _base_array(array)
            if array.dtype in (POLICY_DTYPE, POLICY_EXT_DTYPE) and len(array) < len(base):
                # A chunk of policies travels alone (one object per call, freed after it):
                # each node receives only the policies it projects, not the whole set.
                refs[name] = (self._ray.put(np.ascontiguousarray(array)), 0, len(array), False)
                continue
            key = (base.ctypes.data, base.nbytes)
            if key not in self._puts:
                # The whole array goes in once; later chunks of it only send their range.
                self._puts[key] = self._ray.put(base)
            refs[name] = (self._puts[key], start, start + len(array), True)
        return refs

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Initialise the engine in its actor."""
        try:
            self._info = self._get(
                self._actor.initialize.remote(dict(config), credentials), "initialize"
            )
        except ConfigurationError:
            raise
        except CalcEngineError as exc:
            raise InitializationError(
                f"engine {self._node.id!r} failed to initialize: {exc}"
            ) from exc

    def get_info(self) -> EngineInfo:
        """The engine's metadata, once initialised."""
        if self._info is None:
            raise ExecutionError("engine is not initialised", self._node.id)
        return self._info

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """One chunk as an actor call; the records written are copied into ``output_buffer``."""
        inputs = dict(input_buffer) if isinstance(input_buffer, Mapping) else {}
        refs = self._refs(inputs)
        out = None if output_buffer is None else (output_buffer.dtype, len(output_buffer))
        attempts = 2 if self._node.retries else 1
        for attempt in range(attempts):
            try:
                ref = self._actor.run_chunk.remote(refs, out)
                result, records = self._get(ref, "run_chunk", self._timeout)
                if not result.success:
                    raise ExecutionError(
                        result.error_message or "engine reported failure", self._node.id
                    )
                break
            except EngineTimeoutError:
                raise
            except ExecutionError as exc:
                if attempt + 1 == attempts or self._dead:
                    raise
                _log.warning("chunk_retried", engine_id=self._node.id, error=str(exc))
        if records is not None and output_buffer is not None:
            output_buffer[: len(records)] = records
        return result  # type: ignore[no-any-return]

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """The engine's output buffer needs, computed in its actor."""
        ref = self._actor.call.remote("output_spec", (), self._refs(inputs))
        return self._get(ref, "output_spec")  # type: ignore[no-any-return]

    def get_outputs(self) -> Mapping[str, Any]:
        """The engine's non-record results."""
        return self._get(self._actor.call.remote("get_outputs", ()), "get_outputs")  # type: ignore[no-any-return]

    def supports(self, method: str) -> bool:
        """Whether the engine's class defines ``method``."""
        return callable(getattr(self._engine, method, None))

    def call(self, method: str, *args: Any) -> Any:
        """Call an optional engine method in the actor."""
        return self._get(self._actor.call.remote(method, args), f"{method}()")

    def replica_lost(self) -> bool:
        """Whether the actor is gone (died with its node, or killed at a timeout)."""
        return self._dead is not None

    def location(self) -> str:
        """The Ray node id the actor runs on."""
        if self._node_id is None:
            if self._dead and self._placed_on is not None:
                return self._placed_on
            self._node_id = str(self._get(self._actor.node_id.remote(), "node_id", 30.0))
        return self._node_id

    def kill(self) -> None:
        """Kill the actor now (Ctrl-C), without waiting for its chunk."""
        self._ray.kill(self._actor, no_restart=True)
        self._dead = self._dead or "killed"

    def dispose(self) -> None:
        """Dispose of the engine and stop its actor; never raises."""
        try:
            if not self._dead:
                self._ray.get(self._actor.dispose.remote(), timeout=10)
        except Exception:
            pass
        self._ray.kill(self._actor, no_restart=True)
        self._dead = self._dead or "disposed"


def place_replica(nodes: Sequence[tuple[str, float]], live: Sequence[str]) -> str | None:
    """The node for a new replica: the fewest live replicas per CPU, the first such in order.

    Args:
        nodes: ``(node id, CPUs)`` of the cluster's live nodes, in the cluster's order.
        live: the node of each live replica of the same engine.
    """
    usable = [(node_id, cpus) for node_id, cpus in nodes if cpus > 0]
    if not usable:
        return None
    counts = {node_id: 0 for node_id, _ in usable}
    for node_id in live:
        if node_id in counts:
            counts[node_id] += 1
    # Fewest per CPU first; on a tie the node with fewer replicas, then the cluster's order.
    best = min(
        range(len(usable)),
        key=lambda k: (counts[usable[k][0]] / usable[k][1], counts[usable[k][0]], k),
    )
    return usable[best][0]


class RayExecutor(Executor):
    """Engines as Ray actors (a new local Ray is started when no cluster is named)."""

    name = "ray"
    shared_buffers = False
    engine_processes = True
    replica_output_copies = 2  # the actor's output buffer and the records it returns

    def __init__(
        self, address: str | None = None, *, runtime_env: Mapping[str, Any] | None = None
    ) -> None:
        """Args:
        address: the cluster to join; default ``RAY_ADDRESS``, else a new Ray started here.
        runtime_env: Ray's runtime_env for the run's workers (``run.ray.runtime_env``).
        """
        self._ray = _ray()
        self._address = address or os.environ.get("RAY_ADDRESS") or None
        self._runtime_env = dict(runtime_env) if runtime_env else None
        self._started = False
        self._local = LocalExecutor()
        # Input arrays in the object store, by (address, size): one put per array per run,
        # shared by every replica of every node.
        self._puts: dict[tuple[int, int], Any] = {}
        # Each engine's replicas and the Ray node each was placed on (for even placement).
        self._placed: dict[str, list[tuple[str, RayHandle]]] = {}
        self._placing = threading.Lock()

    def _ensure_started(self) -> None:
        if self._ray.is_initialized():
            if self.address is None:  # joined the Ray this process had already started
                self.address = str(self._ray.get_runtime_context().gcs_address)
            return
        # Recorded as asked (a ray:// or host:port address), or "local": a Ray of the run's own.
        self.address = self._address or "local"
        options: dict[str, Any] = {"log_to_driver": False}
        if self._runtime_env is not None:
            options["runtime_env"] = self._runtime_env
        if self._address:
            _log.info("ray_joining", address=self._address)
            try:
                self._ray.init(address=self._address, **options)
            except Exception as exc:  # ConnectionError, AuthenticationError, a bad address
                # Ray's own words say why (no cluster there, a refused token); the fix is ours.
                raise ConfigurationError(
                    f"cannot join the Ray cluster at {self._address!r} "
                    f"({type(exc).__name__}: {exc}); check --address (run.ray.address, "
                    "RAY_ADDRESS) and, on a cluster with token authentication, that "
                    "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN) are set here"
                ) from None
        else:
            # "local": a new cluster, never one found through Ray's ray_current_cluster file
            # (another job's, or a stale file naming a cluster long gone). It serves this run
            # only, so it listens on loopback.
            _log.info("ray_starting_local")
            self._ray.init(
                address="local",
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                **options,
            )
        self._started = True

    def default_parallelism(self) -> int:
        """The cluster's CPUs: one replica per CPU over every node."""
        return self.cpus()

    def cpus(self) -> int:
        """The CPUs of the whole cluster (joining or starting it)."""
        self._ensure_started()
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def _nodes(self) -> list[tuple[str, float]]:
        return [
            (str(n["NodeID"]), float(n.get("Resources", {}).get("CPU", 0)))
            for n in self._ray.nodes()
            if n.get("Alive")
        ]

    def create_replica(
        self, node: EngineNode, factory: EngineFactory, options: RunOptions, numba_threads: int
    ) -> EngineHandle:
        """An actor for one replica of ``node``, on the node with fewest of its replicas."""
        self._ensure_started()
        engine = NumbaThreadsEngine(factory.create_engine(node.type), numba_threads)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        with self._placing:  # a pool starts its replicas from several threads at once
            placed = self._placed.setdefault(node.id, [])
            placed[:] = [(where, h) for where, h in placed if not h.replica_lost()]
            target = place_replica(self._nodes(), [where for where, _ in placed])
            strategy = (
                "SPREAD"
                if target is None
                else NodeAffinitySchedulingStrategy(node_id=target, soft=False)
            )
            handle = RayHandle(
                self._ray, engine, node, options, puts=self._puts, placement=strategy
            )
            if target is not None:
                placed.append((target, handle))
        _log.debug("replica_placed", engine_id=node.id, ray_node=target)
        return handle

    def create_handle(
        self, node: EngineNode, factory: EngineFactory, options: RunOptions
    ) -> EngineHandle:
        """A Ray actor for ``node``'s engine (in this process for evaluator-binders)."""
        engine = factory.create_engine(node.type)
        if isinstance(engine, SupportsEvaluator):
            return self._local.create_handle(node, factory, options)
        self._ensure_started()
        return RayHandle(self._ray, engine, node, options, puts=self._puts)

    def close(self) -> None:
        """Shut Ray down if this executor started it."""
        self._puts.clear()
        self._placed.clear()
        if self._started:
            self._ray.shutdown()
            self._started = False
