"""livecalc.ports: each port's default and test double, and livecalc.run driven through them."""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import livecalc
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.checkpoint import LocalCheckpointStore
from livecalc.ops.session import resume
from livecalc.pipeline.chunking import FixedChunks, MemoryBudgetChunks, strategy_of
from livecalc.pipeline.operations import ChunkingConfig
from livecalc.ports import (
    CheckpointStore,
    ChunkRequest,
    ChunkStrategy,
    ProgressReporter,
    RateLimiter,
    RunContext,
)
from livecalc.ports.context import LocalRunContext
from livecalc.ports.progress import LogProgress
from livecalc.ports.ratelimit import TokenBucket
from livecalc.testing import (
    FakeClock,
    MemoryCheckpointStore,
    RecordingProgress,
    RecordingRateLimiter,
    RecordingRunContext,
)

PLUGIN = "livecalc.testing:register_testing_engines"


def _request(n: int = 1_000, default: int = 100) -> ChunkRequest:
    return ChunkRequest("a", n, lambda k: (k, 64), True, 256, default)


def _echo_config(tmp_path: Path, n: int = 1_000, fail: bool = False) -> dict[str, Any]:
    """Echo over ``n`` policies in chunks of 100; with ``fail`` a node after it that fails."""
    write_policies(tmp_path / "policies.parquet", generate_policies(n, seed=8))
    engines: list[dict[str, Any]] = [
        {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]}
    ]
    if fail:
        engines.append(
            {
                "id": "b",
                "type": "test_fail_n",
                "config": {"n": 99},
                "inputs": ["a_out"],
                "outputs": ["b_out"],
            }
        )
    return {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": str(tmp_path / "policies.parquet")}},
        "engines": engines,
        "output": {"path": str(tmp_path / "out" / "a_out.parquet")},
        "run": {"chunk_size": 100, "checkpoint_min_chunk_seconds": 0},
    }


class TestProtocols:
    @pytest.mark.parametrize(
        ("port", "implementation"),
        [
            (CheckpointStore, lambda tmp: LocalCheckpointStore(tmp)),
            (CheckpointStore, lambda tmp: MemoryCheckpointStore()),
            (ChunkStrategy, lambda tmp: FixedChunks(10)),
            (ChunkStrategy, lambda tmp: MemoryBudgetChunks(1 << 30)),
            (ProgressReporter, lambda tmp: LogProgress()),
            (ProgressReporter, lambda tmp: RecordingProgress()),
            (RateLimiter, lambda tmp: TokenBucket()),
            (RateLimiter, lambda tmp: RecordingRateLimiter()),
            (RunContext, lambda tmp: LocalRunContext()),
            (RunContext, lambda tmp: RecordingRunContext()),
        ],
    )
    def test_defaults_and_doubles_satisfy_their_port(
        self, port: type, implementation: Any, tmp_path: Path
    ) -> None:
        """Every default and every double is an instance of its runtime-checkable Protocol."""
        assert isinstance(implementation(tmp_path), port)

    def test_the_cli_progress_bars_are_a_reporter(self) -> None:
        """The CLI's rich bars satisfy ProgressReporter and draw one bar per node."""
        from rich.progress import Progress

        from livecalc.cli.app import _ProgressBars

        with Progress(disable=True) as bars_progress:
            bars = _ProgressBars(bars_progress)
            bars("node_started", "a", chunks=4, chunk_size=25, chunking="fixed")
            bars("chunk_finished", "a", chunk=1, chunks=4, policies=25)
            (task,) = bars_progress.tasks

        assert isinstance(bars, ProgressReporter)
        assert (4, 2) == (task.total, task.completed)

    def test_objects_missing_a_method_are_not_ports(self) -> None:
        """A dict is no CheckpointStore and a bare number no ChunkStrategy or RateLimiter."""
        assert (False, False, False) == (
            isinstance({}, CheckpointStore),
            isinstance(3, ChunkStrategy),
            isinstance(object(), RateLimiter),
        )


class TestCheckpointStores:
    @pytest.mark.parametrize("kind", ["memory", "local"])
    def test_put_get_list_delete_behave_alike(self, kind: str, tmp_path: Path) -> None:
        """The double and the folder store agree on every operation, prefixes included."""
        store: Any = MemoryCheckpointStore() if kind == "memory" else LocalCheckpointStore(tmp_path)
        store.put("r1/manifest.json", b"{}")
        store.put("r1/a/chunk-000000.parquet", b"x")
        store.put("r10/manifest.json", b"other run")
        store.put("r1/manifest.json", b'{"v": 2}')

        listed = store.list("r1")
        store.delete("r1")

        assert ["r1/a/chunk-000000.parquet", "r1/manifest.json"] == listed
        assert ["r10/manifest.json"] == store.list()
        with pytest.raises(FileNotFoundError):
            store.get("r1/manifest.json")
        assert b"other run" == store.get("r10/manifest.json")


class TestChunkStrategies:
    def test_fixed_gives_its_size_or_the_runs(self) -> None:
        """FixedChunks(25) gives 25; FixedChunks() gives the run's configured size."""
        assert (25, 100) == (
            FixedChunks(25).chunk_size(_request()),
            FixedChunks().chunk_size(_request()),
        )

    @pytest.mark.parametrize("bad", [0, -3, 2.5, True])
    def test_fixed_refuses_a_size_below_one(self, bad: Any) -> None:
        """A size that is not an integer >= 1 is refused, naming the value."""
        with pytest.raises(ValueError, match="size must be an integer >= 1"):
            FixedChunks(bad)

    def test_memory_grows_with_the_budget(self) -> None:
        """A bigger budget allows bigger chunks, never more than the node's policies."""
        small = MemoryBudgetChunks(10_000_000).chunk_size(_request(100_000))
        large = MemoryBudgetChunks(1 << 34).chunk_size(_request(100_000))

        assert 1 <= small < large == 100_000

    def test_strategy_of_follows_the_documented_precedence(self) -> None:
        """--chunk-size beats run.chunking; a memory budget beats run.chunk_size."""
        memory = ChunkingConfig(strategy="memory", budget="1GiB")

        chosen = [strategy_of(memory, 7), strategy_of(memory, None), strategy_of(None, None)]

        assert ["fixed", "memory", "fixed"] == [s.name for s in chosen]
        assert 7 == chosen[0].chunk_size(_request())
        assert (1 << 30) == getattr(chosen[1], "budget_bytes", None)

    def test_custom_strategy_sizes_each_node(self, tmp_path: Path) -> None:
        """A user's strategy is asked once per chunked node; its size shows in the progress
        events and the node report, under its name."""

        class Quarters:
            name = "quarters"

            def __init__(self) -> None:
                self.requests: list[ChunkRequest] = []

            def chunk_size(self, request: ChunkRequest) -> int:
                self.requests.append(request)
                return -(-request.n_policies // 4)

        progress = RecordingProgress()
        strategy = Quarters()

        result = livecalc.run(
            _echo_config(tmp_path), chunking=strategy, progress=progress, store=False
        )

        (started,) = progress.of("node_started", "a")
        assert [("a", 1_000, 100)] == [
            (r.node_id, r.n_policies, r.default_size) for r in strategy.requests
        ]
        assert {"chunks": 4, "chunk_size": 250, "chunking": "quarters"} == started
        assert 4 == len(progress.of("chunk_finished", "a"))
        assert (4, 250, "quarters") == (
            result.nodes["a"].chunks,
            result.nodes["a"].chunk_size,
            result.nodes["a"].chunking,
        )

    def test_a_node_chunk_size_wins_over_the_strategy(self, tmp_path: Path) -> None:
        """The node's own chunk_size is used, and reported as chosen by 'node'."""
        raw = _echo_config(tmp_path)
        raw["engines"][0]["chunk_size"] = 500

        result = livecalc.run(raw, chunking=FixedChunks(10), store=False)

        assert (2, 500, "node") == (
            result.nodes["a"].chunks,
            result.nodes["a"].chunk_size,
            result.nodes["a"].chunking,
        )

    def test_a_strategy_returning_zero_fails_the_node_clearly(self, tmp_path: Path) -> None:
        """A strategy that answers 0 fails its node with a message naming the strategy."""

        class Broken:
            name = "broken"

            def chunk_size(self, request: ChunkRequest) -> int:
                return 0

        result = livecalc.run(_echo_config(tmp_path), chunking=Broken(), store=False)

        assert "failed" == result.nodes["a"].status
        assert "chunk strategy 'broken' chose 0" in str(result.nodes["a"].error)

    def test_chunking_must_be_a_strategy(self, tmp_path: Path) -> None:
        """chunking=500 (a number, not a strategy) is a ConfigurationError saying what fits."""
        with pytest.raises(ConfigurationError, match="is not a ChunkStrategy"):
            livecalc.run(_echo_config(tmp_path), chunking=500, store=False)  # type: ignore[arg-type]


class TestProgress:
    def test_recording_progress_sees_every_event_in_order(self, tmp_path: Path) -> None:
        """node_started, one chunk_finished per chunk with its index, then node_finished."""
        progress = RecordingProgress()

        livecalc.run(_echo_config(tmp_path), progress=progress, store=False)

        assert ["node_started", *["chunk_finished"] * 10, "node_finished"] == [
            e for e, _, _ in progress.events
        ]
        assert list(range(10)) == [i["chunk"] for i in progress.of("chunk_finished")]
        assert [{"status": "succeeded"}] == progress.of("node_finished")

    def test_log_progress_tells_the_context_every_nth_chunk_and_the_last(
        self, tmp_path: Path
    ) -> None:
        """LogProgress(every_chunks=4) logs chunks 4, 8 and 10 of 10 into the context."""
        context = RecordingRunContext()

        livecalc.run(
            _echo_config(tmp_path), progress=LogProgress(context, every_chunks=4), store=False
        )

        chunks = [f["done"] for _, e, f in context.logs if e == "progress_chunk_finished"]
        assert [4, 8, 10] == chunks
        assert "progress_node_finished" in context.events()

    def test_log_progress_refuses_a_zero_interval(self) -> None:
        """every_chunks=0 would never log: refused."""
        with pytest.raises(ValueError, match="every_chunks"):
            LogProgress(every_chunks=0)


class TestMemoryCheckpointStore:
    def test_a_failed_run_checkpoints_into_memory_and_resumes_from_it(
        self, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """Node a's 10 chunks land in the dict; resume from the same store reuses all of
        them, and nothing was written to the default checkpoint folder."""
        store = MemoryCheckpointStore()
        config = tmp_path / "config.json"
        config.write_text(json.dumps(_echo_config(tmp_path, fail=True)))

        first = livecalc.run(config, checkpoint=store)
        parts = store.list(f"{first.run_id}/a")
        again = resume(first.run_id, checkpoint=store)

        assert 10 == len(parts)
        # Every chunk kept: resume still computes the last one, so the node's get_outputs()
        # is there for the summary (ops/_hooks.py OpsHooks.stored_chunks).
        assert (10, 9) == (again.nodes["a"].chunks, again.nodes["a"].reused_chunks)
        assert [] == list(livecalc_home.glob("runs/*"))

    def test_a_run_that_succeeds_leaves_only_its_finished_manifest(self, tmp_path: Path) -> None:
        """After success the parts are gone and the manifest says complete."""
        store = MemoryCheckpointStore()

        result = livecalc.run(_echo_config(tmp_path), checkpoint=store)

        assert [f"{result.run_id}/manifest.json"] == store.list()
        assert json.loads(store.get(f"{result.run_id}/manifest.json"))["complete"] is True

    def test_an_object_that_is_no_store_is_refused(self, tmp_path: Path) -> None:
        """checkpoint=42 is a ConfigurationError naming the accepted kinds."""
        with pytest.raises(ConfigurationError, match="is not a CheckpointStore"):
            livecalc.run(_echo_config(tmp_path), checkpoint=42)  # type: ignore[arg-type]


class TestTokenBucket:
    def test_burst_then_one_request_per_interval(self) -> None:
        """rate 10/s, burst 3: three at t=0, then one each 0.1 s."""
        limiter = RecordingRateLimiter(10.0, 3)

        for _ in range(6):
            limiter.acquire()

        assert [0.0, 0.0, 0.0, 0.1, 0.2, 0.3] == pytest.approx(limiter.acquired)

    def test_backoff_doubles_up_to_the_cap_then_gives_up(self) -> None:
        """Delays 0.1, 0.2, 0.4, 0.8 (plus at most 10% jitter), capped at 0.5; none after
        max_retries."""
        limiter = RecordingRateLimiter(max_retries=4, base_delay=0.1, max_delay=0.5)

        delays = [limiter.retry_delay(n, 429, None) for n in range(1, 6)]

        for got, want in zip(delays[:4], [0.1, 0.2, 0.4, 0.5], strict=True):
            assert got is not None and want <= got <= min(0.5, want * 1.1)
        assert delays[4] is None

    def test_retry_after_wins_when_longer_but_stays_capped(self) -> None:
        """The server's Retry-After of 2 s is used over a 0.1 s backoff; 60 s is capped."""
        limiter = TokenBucket(base_delay=0.1, max_delay=5.0)

        assert (2.0, 5.0) == (limiter.retry_delay(1, 503, 2.0), limiter.retry_delay(1, 429, 60.0))

    def test_other_statuses_are_not_retried(self) -> None:
        """A 500 or a 404 gets no retry delay."""
        assert (None, None) == (
            TokenBucket().retry_delay(1, 500, None),
            TokenBucket().retry_delay(1, 404, 1.0),
        )

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"rate": 0},
            {"rate": -1},
            {"burst": 0},
            {"max_retries": -1},
            {"base_delay": 2, "max_delay": 1},
        ],
    )
    def test_bad_settings_are_refused(self, kwargs: dict[str, float]) -> None:
        """A rate not above 0, a burst below 1 or delays out of order are ValueErrors."""
        with pytest.raises(ValueError):
            TokenBucket(**kwargs)

    @settings(max_examples=60, deadline=None)
    @given(
        rate=st.floats(0.5, 200),
        burst=st.integers(1, 20),
        gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=80),
    )
    def test_never_more_than_burst_plus_rate_times_t(
        self, rate: float, burst: int, gaps: list[float]
    ) -> None:
        """In any window of t seconds at most burst + rate * t requests are granted."""
        clock = FakeClock()
        limiter = RecordingRateLimiter(rate, burst, clock=clock)
        for gap in gaps:
            clock.advance(gap)
            limiter.acquire()

        times = limiter.acquired
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                assert j - i + 1 <= burst + rate * (times[j] - start) + 1e-6

    def test_unpaced_by_default(self) -> None:
        """The default bucket never waits."""
        limiter = RecordingRateLimiter()

        for _ in range(1000):
            limiter.acquire()

        assert ([], math.inf) == (limiter.clock.sleeps, limiter.rate)


class TestRunContext:
    def test_state_and_log_of_a_finished_run(self, tmp_path: Path) -> None:
        """The run takes the context's id; state gets the outcome; the context log says so."""
        context = RecordingRunContext("sched-run-1")

        result = livecalc.run(_echo_config(tmp_path), context=context)

        assert "sched-run-1" == result.run_id
        assert {"run_id": "sched-run-1", "status": "succeeded", "resumed": False} == {
            k: context.state[k] for k in ("run_id", "status", "resumed")
        }
        assert ["livecalc_run_finished"] == context.events()

    def test_a_retry_without_a_checkpoint_starts_over(self, tmp_path: Path) -> None:
        """attempt 2 of a run id that never checkpointed runs from scratch."""
        context = RecordingRunContext("never-ran", attempt=2)

        result = livecalc.run(_echo_config(tmp_path), context=context)

        assert (False, 0) == (context.state["resumed"], result.nodes["a"].reused_chunks)

    @pytest.mark.parametrize("bad", ["", ".hidden", "a/b", "x" * 129])
    def test_run_ids_that_cannot_name_a_folder_are_refused(self, bad: str) -> None:
        """A run id with a slash, a leading dot, none or too long is refused."""
        with pytest.raises(ValueError, match="run id"):
            RecordingRunContext(bad)


def _projection_config(tmp_path: Path) -> Path:
    """ESG (1,000 scenarios, 30 years) -> projection of 5,000 policies in 10 chunks."""
    write_policies(tmp_path / "policies.parquet", generate_policies(5_000, seed=11, max_term=30))
    raw = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {
                    "model": "hull_white",
                    "outer": 10,
                    "inner": 100,
                    "years": 30,
                    "seed": 3,
                },
                "outputs": ["scenarios"],
            },
            {
                "id": "projection",
                "type": "projection",
                # Monthly steps: 12 times the work for the same output, so that a loaded
                # machine cannot see the run finish before the test kills it.
                "config": {"output": "npv", "time_step": "monthly"},
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
        ],
        "output": {"path": "out/results.parquet"},
        "run": {"chunk_size": 500, "checkpoint_min_chunk_seconds": 0},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _done(home: Path) -> tuple[str, int]:
    for manifest in home.glob("runs/*/manifest.json"):
        try:
            data = json.loads(manifest.read_text())
        except ValueError:
            continue
        node = data["nodes"].get("projection")
        return data["run_id"], len(node["done"]) if node else 0
    return "", 0


def _data_bytes(path: Path) -> bytes:
    """A Parquet file's bytes before its footer: every data page, no key-value metadata."""
    raw = path.read_bytes()
    (footer,) = struct.unpack("<I", raw[-8:-4])
    return raw[: len(raw) - 8 - footer]


class TestSchedulerRetry:
    def test_killed_attempt_is_resumed_by_the_retry(
        self, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """A `livecalc run` SIGKILLed after >= 4 of 10 chunks; the scheduler's attempt 2 with
        the same run id computes only the rest, to the same bytes, and says it resumed."""
        config = _projection_config(tmp_path)
        out = tmp_path / "out" / "results.parquet"
        assert livecalc.run(config, store=False).success
        reference = out.rename(tmp_path / "reference.parquet")
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("livecalc")), "run", str(config), "--no-progress"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 240
        run_id, done = "", 0
        while done < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
            run_id, done = _done(livecalc_home)
        # Frozen at once, so that it cannot finish its last chunks before the kill lands.
        os.kill(proc.pid, signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        run_id, done = _done(livecalc_home)
        assert 4 <= done < 10
        context = RecordingRunContext(run_id, attempt=2)
        progress = RecordingProgress()

        result = livecalc.run(config, context=context, progress=progress)

        projection = result.nodes["projection"]
        assert (run_id, True, "succeeded") == (
            result.run_id,
            context.state["resumed"],
            context.state["status"],
        )
        assert (10, done) == (projection.chunks, projection.reused_chunks)
        assert 10 - done == projection.chunks - projection.reused_chunks
        assert _data_bytes(reference) == _data_bytes(out)
        assert ["livecalc_resuming", "livecalc_run_finished"] == context.events()
