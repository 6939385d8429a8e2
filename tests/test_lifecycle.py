"""EngineLifecycleManager: states, statistics, retries, timeouts, crashes and its events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import (
    ConfigurationError,
    EngineTimeoutError,
    ExecutionError,
    InitializationError,
)
from livecalc.log import capture_logs
from livecalc.runtime.buffers import POLICY_DTYPE, BufferInfo, BufferManager, BufferType
from livecalc.runtime.engine import OutputSpec
from livecalc.runtime.lifecycle import (
    TRANSITIONS,
    EngineLifecycleManager,
    EngineState,
    LifecycleConfig,
    LifecycleStats,
)
from livecalc.testing import (
    CrashEngine,
    EchoEngine,
    FailNTimesEngine,
    NumbaSpinEngine,
    SleepEngine,
    SpinEngine,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")
# Generous where chunks should succeed (the test machine may be loaded); short for runaways.
PROCESS = LifecycleConfig(isolation="process", timeout_seconds=30)
RUNAWAY = LifecycleConfig(isolation="process", timeout_seconds=1.0)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[BufferInfo, BufferInfo]]:
    """A shared POLICY input of 100 records (ids 0..99) and a shared output of the same size."""
    with BufferManager() as manager:
        policies = manager.allocate_buffer(BufferType.INPUT, "policies", 100, shared=True)
        policies.data["policy_id"] = np.arange(100)
        output = manager.allocate_buffer(BufferType.INPUT, "output", 100, shared=True)
        yield policies, output


def _policies(n: int = 10) -> np.ndarray:
    data = np.zeros(n, POLICY_DTYPE)
    data["policy_id"] = np.arange(n)
    return data


def _pid_gone(pid: int | None) -> bool:
    # Reaped by join(), so the pid no longer exists at all (not even as a zombie).
    return pid is not None and not os.path.exists(f"/proc/{pid}")


class TestLifecycleConfig:
    def test_defaults(self) -> None:
        """The defaults are the seed's: 300 s, no retry, 3 consecutive errors, inline."""

        config = LifecycleConfig()

        assert (300.0, False, 3, "inline") == (
            config.timeout_seconds,
            config.auto_retry_on_error,
            config.max_consecutive_errors,
            config.isolation,
        )

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"timeout_seconds": 0}, "timeout_seconds"),
            ({"timeout_seconds": "5"}, "timeout_seconds"),
            ({"auto_retry_on_error": 1}, "auto_retry_on_error"),
            ({"max_consecutive_errors": 0}, "max_consecutive_errors"),
            ({"max_consecutive_errors": True}, "max_consecutive_errors"),
            ({"isolation": "thread"}, "isolation"),
        ],
    )
    def test_invalid_values_name_the_field(self, kwargs: dict[str, Any], field: str) -> None:
        """An invalid value raises ConfigurationError naming the field."""

        with pytest.raises(ConfigurationError) as info:
            LifecycleConfig(**kwargs)

        assert f"LifecycleConfig.{field}" in str(info.value)


class TestStateMachine:
    def test_every_state_has_its_transitions(self) -> None:
        """The transition table covers every state and only names states."""

        assert set(EngineState) == set(TRANSITIONS)
        assert all(targets <= set(EngineState) for targets in TRANSITIONS.values())

    def test_normal_life_passes_through_the_seed_states(self) -> None:
        """initialize, run_chunk and dispose walk the seed's states, each transition logged."""

        data = _policies()
        with capture_logs() as logs:
            manager = EngineLifecycleManager(EchoEngine(), engine_id="echo")
            manager.initialize({})
            manager.run_chunk(data, np.zeros_like(data))
            manager.dispose()

        transitions = [
            (e["old_state"], e["new_state"]) for e in logs if e["event"] == "state_transition"
        ]
        assert [
            ("UNINITIALIZED", "INITIALIZING"),
            ("INITIALIZING", "READY"),
            ("READY", "RUNNING"),
            ("RUNNING", "READY"),
            ("READY", "DISPOSED"),
        ] == transitions

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.sampled_from(["init", "run_ok", "run_fail", "dispose"]), max_size=12))
    def test_any_sequence_follows_the_model(self, operations: list[str]) -> None:
        """Any sequence of calls moves through states (and counts runs) as the model says."""

        data = _policies(4)
        good, bad = np.zeros(4, POLICY_DTYPE), np.zeros(1, POLICY_DTYPE)  # bad: too small
        manager = EngineLifecycleManager(EchoEngine(), LifecycleConfig(max_consecutive_errors=3))
        state, consecutive, ok, failed = EngineState.UNINITIALIZED, 0, 0, 0
        usable = (EngineState.READY, EngineState.ERROR)
        for operation in operations:
            if operation == "init":
                if state in (EngineState.UNINITIALIZED, EngineState.ERROR, EngineState.DISPOSED):
                    manager.initialize({})
                    state, consecutive = EngineState.READY, 0
                else:
                    with pytest.raises(InitializationError):
                        manager.initialize({})
            elif operation == "dispose":
                manager.dispose()
                state = EngineState.DISPOSED
            elif state not in usable:
                with pytest.raises(ExecutionError):
                    manager.run_chunk(data, good)
            elif operation == "run_ok":
                manager.run_chunk(data, good)
                state, consecutive, ok = EngineState.READY, 0, ok + 1
            else:
                with pytest.raises(ConfigurationError):
                    manager.run_chunk(data, bad)
                consecutive, failed = consecutive + 1, failed + 1
                state = EngineState.DISPOSED if consecutive >= 3 else EngineState.ERROR
            assert state == manager.state
        stats = manager.get_stats()

        assert (ok, failed) == (stats.successful_runs, stats.failed_runs)

    def test_run_before_initialize_names_both_states(self) -> None:
        """run_chunk before initialize raises ExecutionError naming UNINITIALIZED and RUNNING."""

        manager = EngineLifecycleManager(EchoEngine())
        with pytest.raises(ExecutionError) as info:
            manager.run_chunk(None, None)

        assert "UNINITIALIZED" in str(info.value) and "RUNNING" in str(info.value)

    def test_initialize_twice_is_refused(self) -> None:
        """A second initialize raises InitializationError naming READY and INITIALIZING."""

        with EngineLifecycleManager(EchoEngine()) as manager:
            manager.initialize({})
            with pytest.raises(InitializationError) as info:
                manager.initialize({})

        assert "READY" in str(info.value) and "INITIALIZING" in str(info.value)

    def test_dispose_then_run_refused_then_reinitialize(self) -> None:
        """After dispose run_chunk raises; initialize makes it usable again (seed rule 4)."""

        data = _policies()
        manager = EngineLifecycleManager(EchoEngine())
        manager.initialize({})
        manager.dispose()
        manager.dispose()  # a second dispose does nothing
        with pytest.raises(ExecutionError):
            manager.run_chunk(data, np.zeros_like(data))
        manager.initialize({})
        result = manager.run_chunk(data, np.zeros_like(data))

        assert (10, EngineState.READY) == (result.rows_processed, manager.state)

    def test_failed_initialize_returns_to_uninitialized(self) -> None:
        """An engine refusing its config re-raises its ConfigurationError; state UNINITIALIZED."""

        manager = EngineLifecycleManager(SleepEngine())
        with pytest.raises(ConfigurationError) as info:
            manager.initialize({"seconds": -1})

        assert "config.seconds" in str(info.value)
        assert EngineState.UNINITIALIZED == manager.state

    def test_seed_dict_credentials(self) -> None:
        """Credentials as the seed's dict are accepted; a bad one is refused without its token."""

        with EngineLifecycleManager(EchoEngine()) as manager:
            manager.initialize({}, {"am_url": "https://am", "am_token": "tok-0123456789"})
            with pytest.raises(ConfigurationError) as info:
                EngineLifecycleManager(EchoEngine()).initialize(
                    {}, {"am_url": "https://am", "am_token": "tok-0123456789", "x": 1}
                )

        assert "credentials: x" in str(info.value)
        assert "tok-0123456789" not in str(info.value)

    def test_context_manager_disposes(self) -> None:
        """Leaving the with block disposes of the engine."""

        engine = EchoEngine()
        with EngineLifecycleManager(engine) as manager:
            manager.initialize({})

        assert (EngineState.DISPOSED, False) == (manager.state, engine.is_initialized)

    def test_call_before_initialize_refused(self) -> None:
        """Forwarded calls need an initialised engine."""

        manager = EngineLifecycleManager(EchoEngine())
        with pytest.raises(ExecutionError) as info:
            manager.get_outputs()

        assert "UNINITIALIZED" in str(info.value)


class TestStats:
    def test_counts_and_times(self) -> None:
        """Successes and failures are counted; the average is the total over all executions."""

        data = _policies()
        with EngineLifecycleManager(FailNTimesEngine()) as manager:
            manager.initialize({"n": 1})
            with pytest.raises(ExecutionError):
                manager.run_chunk(data, np.zeros_like(data))
            manager.run_chunk(data, np.zeros_like(data))
            manager.run_chunk(data, np.zeros_like(data))
            stats = manager.get_stats()

        assert (2, 1, 0) == (stats.successful_runs, stats.failed_runs, stats.timeout_count)
        assert stats.total_execution_time_ms > 0
        assert stats.total_execution_time_ms / 3 == pytest.approx(stats.average_execution_time_ms)

    def test_reset(self) -> None:
        """reset_stats zeroes every figure."""

        data = _policies()
        with EngineLifecycleManager(EchoEngine()) as manager:
            manager.initialize({})
            manager.run_chunk(data, np.zeros_like(data))
            manager.reset_stats()
            stats = manager.get_stats()

        assert LifecycleStats() == stats


class TestInlineFailures:
    def test_exception_is_chained_and_next_run_allowed(self) -> None:
        """An engine exception raises ExecutionError with it chained; the next chunk runs."""

        data = _policies()
        out = np.zeros_like(data)
        with EngineLifecycleManager(FailNTimesEngine(), engine_id="f") as manager:
            manager.initialize({"n": 1})
            with pytest.raises(ExecutionError) as info:
                manager.run_chunk(data, out)
            state_after_failure = manager.state
            manager.run_chunk(data, out)

        assert isinstance(info.value.__cause__, RuntimeError)
        assert ("f", "planned failure 1 of 1") == (info.value.engine_id, str(info.value.__cause__))
        assert EngineState.ERROR == state_after_failure
        assert data.tolist() == out.tolist()

    def test_unsuccessful_result_raises_with_its_message(self) -> None:
        """A result with success=False raises ExecutionError carrying its error_message."""

        data = _policies()
        with EngineLifecycleManager(FailNTimesEngine()) as manager:
            manager.initialize({"n": 1, "mode": "result"})
            with pytest.raises(ExecutionError) as info:
                manager.run_chunk(data, np.zeros_like(data))

        assert "planned failure 1 of 1" in str(info.value)

    def test_auto_retry_recovers(self) -> None:
        """With auto_retry_on_error a chunk that fails once is retried and succeeds."""

        data = _policies()
        config = LifecycleConfig(auto_retry_on_error=True)
        with EngineLifecycleManager(FailNTimesEngine(), config) as manager:
            manager.initialize({"n": 1})
            result = manager.run_chunk(data, np.zeros_like(data))
            stats = manager.get_stats()

        assert (10, 1, 1) == (result.rows_processed, stats.successful_runs, stats.failed_runs)

    def test_auto_retry_only_once(self) -> None:
        """A chunk failing twice raises after one retry."""

        data = _policies()
        config = LifecycleConfig(auto_retry_on_error=True)
        with EngineLifecycleManager(FailNTimesEngine(), config) as manager:
            manager.initialize({"n": 2})
            with pytest.raises(ExecutionError):
                manager.run_chunk(data, np.zeros_like(data))
            stats = manager.get_stats()

        assert (0, 2) == (stats.successful_runs, stats.failed_runs)

    def test_consecutive_errors_dispose_the_engine(self) -> None:
        """max_consecutive_errors failures in a row dispose of the engine; later calls raise."""

        data = _policies()
        config = LifecycleConfig(max_consecutive_errors=3)
        manager = EngineLifecycleManager(FailNTimesEngine(), config)
        manager.initialize({"n": 100})
        states = []
        for _ in range(3):
            with pytest.raises(ExecutionError) as info:
                manager.run_chunk(data, np.zeros_like(data))
            states.append(manager.state)
        with pytest.raises(ExecutionError) as later:
            manager.run_chunk(data, np.zeros_like(data))

        assert [EngineState.ERROR, EngineState.ERROR, EngineState.DISPOSED] == states
        assert any("disposed after 3" in note for note in info.value.__notes__)
        assert "DISPOSED" in str(later.value)

    def test_success_resets_consecutive_errors(self) -> None:
        """A success between failures restarts the count: no disposal."""

        data = _policies()
        config = LifecycleConfig(max_consecutive_errors=2)
        with EngineLifecycleManager(FailNTimesEngine(), config) as manager:
            manager.initialize({"n": 1})
            with pytest.raises(ExecutionError):
                manager.run_chunk(data, np.zeros_like(data))
            manager.run_chunk(data, np.zeros_like(data))
            manager.call("initialize", {"n": 1})  # arm one more failure in the engine itself
            with pytest.raises(ExecutionError):
                manager.run_chunk(data, np.zeros_like(data))
            state = manager.state

        assert EngineState.ERROR == state

    def test_configuration_error_passes_through_without_retry(self) -> None:
        """A ConfigurationError from the engine reaches the caller as is and is not retried."""

        data = _policies()
        config = LifecycleConfig(auto_retry_on_error=True)
        with EngineLifecycleManager(EchoEngine(), config) as manager:
            manager.initialize({})
            with pytest.raises(ConfigurationError) as info:
                manager.run_chunk(data, np.zeros(3, POLICY_DTYPE))
            stats = manager.get_stats()

        assert "allocate it from output_spec" in str(info.value)
        assert 1 == stats.failed_runs

    def test_inline_overrun_is_a_timeout(self) -> None:
        """Inline, a chunk slower than timeout_seconds raises EngineTimeoutError once it returns."""

        data = _policies()
        config = LifecycleConfig(timeout_seconds=0.05)
        with EngineLifecycleManager(SleepEngine(), config) as manager:
            manager.initialize({"seconds": 0.2})
            with pytest.raises(EngineTimeoutError) as info:
                manager.run_chunk(data, np.zeros_like(data))
            stats = manager.get_stats()

        assert 0.05 == info.value.timeout_seconds
        assert (1, 1) == (stats.timeout_count, stats.failed_runs)


class TestProcessIsolation:
    def test_worker_writes_callers_shared_output(
        self, shared: tuple[BufferInfo, BufferInfo]
    ) -> None:
        """The engine runs in another process and writes straight into the caller's buffer."""

        policies, output = shared
        output.data[:] = np.zeros(1, POLICY_DTYPE)
        with EngineLifecycleManager(EchoEngine(), PROCESS) as manager:
            manager.initialize({"k": 1})
            result = manager.run_chunk({"policies": policies.data[:60]}, output.data)
            pid = manager.worker_pid
            outputs = manager.get_outputs()
            spec = manager.output_spec({"p": policies.data})

        assert pid not in (None, os.getpid())
        assert (60, 60 * 32) == (result.rows_processed, result.bytes_written)
        assert list(range(60)) + [0] * 40 == output.data["policy_id"].tolist()
        assert {"calls": 1, "config": {"k": 1}} == outputs
        assert OutputSpec(POLICY_DTYPE, 100) == spec

    def test_private_buffers_refused(self, shared: tuple[BufferInfo, BufferInfo]) -> None:
        """A buffer outside shared memory is refused with the fix, not silently copied."""

        policies, _ = shared
        with EngineLifecycleManager(EchoEngine(), PROCESS) as manager:
            manager.initialize({})
            with pytest.raises(ConfigurationError) as info:
                manager.run_chunk(policies.data, np.zeros(100, POLICY_DTYPE))

        assert "output_buffer" in str(info.value) and "shared=True" in str(info.value)

    def test_engine_exception_in_worker(self, shared: tuple[BufferInfo, BufferInfo]) -> None:
        """A worker-side exception raises ExecutionError chaining it; its traceback is logged."""

        policies, output = shared
        with (
            capture_logs() as logs,
            EngineLifecycleManager(FailNTimesEngine(), PROCESS) as manager,
        ):
            manager.initialize({"n": 1})
            with pytest.raises(ExecutionError) as info:
                manager.run_chunk(policies.data, output.data)
            result = manager.run_chunk(policies.data, output.data)

        errors = [e for e in logs if e["event"] == "error"]
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "in run_chunk" in errors[0]["stack_trace"]
        assert 100 == result.rows_processed

    def test_config_error_from_worker_initialize(self) -> None:
        """A ConfigurationError raised while initialising in the worker reaches the caller."""

        with EngineLifecycleManager(SleepEngine(), PROCESS) as manager:
            with pytest.raises(ConfigurationError) as info:
                manager.initialize({"seconds": "long"})
            state = manager.state

        assert "config.seconds" in str(info.value)
        assert EngineState.UNINITIALIZED == state

    def test_unpicklable_engine_refused(self) -> None:
        """An engine that cannot be pickled is refused up front with the alternatives."""

        engine = EchoEngine()
        engine.hook = lambda: None  # type: ignore[attr-defined]
        with pytest.raises(ConfigurationError) as info:
            EngineLifecycleManager(engine, PROCESS)

        assert "isolation='inline'" in str(info.value)

    @pytest.mark.parametrize(
        ("engine", "config"),
        [(SpinEngine(), {}), (NumbaSpinEngine(), {})],
        ids=["python-loop", "numba-nogil-loop"],
    )
    def test_timeout_kills_a_runaway_loop(
        self, shared: tuple[BufferInfo, BufferInfo], engine: Any, config: dict[str, Any]
    ) -> None:
        """A chunk stuck in a loop raises EngineTimeoutError and its worker no longer exists."""

        policies, output = shared
        with EngineLifecycleManager(engine, RUNAWAY, engine_id="stuck") as manager:
            manager.initialize(config)
            pid = manager.worker_pid
            with pytest.raises(EngineTimeoutError) as info:
                manager.run_chunk(policies.data, output.data)
            state, stats = manager.state, manager.get_stats()
            gone = _pid_gone(pid)
            # The next call gets a fresh worker, initialised with the same config.
            outputs = manager.get_outputs()
            new_pid = manager.worker_pid

        assert (1.0, "stuck") == (info.value.timeout_seconds, info.value.engine_id)
        assert (True, EngineState.ERROR) == (gone, state)
        assert (1, 1) == (stats.timeout_count, stats.failed_runs)
        assert {"calls": 0, "config": config} == outputs
        assert new_pid not in (None, pid)

    def test_timeout_is_not_retried(self, shared: tuple[BufferInfo, BufferInfo]) -> None:
        """auto_retry_on_error does not re-run a chunk that timed out."""

        policies, output = shared
        config = LifecycleConfig(isolation="process", timeout_seconds=0.3, auto_retry_on_error=True)
        with EngineLifecycleManager(SleepEngine(), config) as manager:
            manager.initialize({"seconds": 30})
            with pytest.raises(EngineTimeoutError):
                manager.run_chunk(policies.data, output.data)
            stats = manager.get_stats()

        assert (1, 1) == (stats.failed_runs, stats.timeout_count)

    @pytest.mark.parametrize(
        ("kind", "signal_name"), [("segfault", "SIGSEGV"), ("abort", "SIGABRT")]
    )
    def test_crash_becomes_an_error(
        self, shared: tuple[BufferInfo, BufferInfo], kind: str, signal_name: str
    ) -> None:
        """A worker killed by a crash raises ExecutionError naming the signal; we live on."""

        policies, output = shared
        with EngineLifecycleManager(CrashEngine(), PROCESS) as manager:
            manager.initialize({"kind": kind})
            with pytest.raises(ExecutionError) as info:
                manager.run_chunk(policies.data, output.data)
            state = manager.state
            outputs = manager.get_outputs()  # served by a fresh worker

        assert signal_name in str(info.value)
        assert not isinstance(info.value, EngineTimeoutError)
        assert EngineState.ERROR == state
        assert {"calls": 0, "config": {"kind": kind}} == outputs

    def test_crash_is_retried_in_a_fresh_worker(
        self, shared: tuple[BufferInfo, BufferInfo]
    ) -> None:
        """With auto_retry_on_error a crash is retried once, in a new worker."""

        policies, output = shared
        config = LifecycleConfig(isolation="process", auto_retry_on_error=True)
        with EngineLifecycleManager(CrashEngine(), config) as manager:
            manager.initialize({"kind": "abort"})
            with pytest.raises(ExecutionError):
                manager.run_chunk(policies.data, output.data)
            stats = manager.get_stats()

        assert (0, 2) == (stats.successful_runs, stats.failed_runs)

    def test_forwarded_call_is_stopped_at_the_deadline(self) -> None:
        """A forwarded call that hangs raises EngineTimeoutError; its worker is killed."""

        config = LifecycleConfig(isolation="process", timeout_seconds=0.3)
        with EngineLifecycleManager(SleepEngine(), config) as manager:
            manager.initialize({"seconds": 30})
            pid = manager.worker_pid
            with pytest.raises(EngineTimeoutError):
                manager.call("run_chunk", None, None)
            gone = _pid_gone(pid)

        assert gone

    @pytest.mark.parametrize("isolation", ["inline", "process"])
    def test_call_of_a_missing_method(self, isolation: Any) -> None:
        """Calling a method the engine lacks is a ConfigurationError naming it, in both modes."""

        with EngineLifecycleManager(EchoEngine(), LifecycleConfig(isolation=isolation)) as m:
            m.initialize({})
            with pytest.raises(ConfigurationError) as info:
                m.call("set_parameters", {"premium_multiplier": 1.1})

        assert "'set_parameters'" in str(info.value)

    def test_worker_killed_between_chunks_is_replaced(
        self, shared: tuple[BufferInfo, BufferInfo]
    ) -> None:
        """A worker killed while idle (OOM killer, operator) is replaced before the next chunk."""

        policies, output = shared
        with EngineLifecycleManager(EchoEngine(), PROCESS) as manager:
            manager.initialize({"k": 2})
            pid = manager.worker_pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            while manager.worker_pid is not None:  # until the kernel has finished it
                time.sleep(0.01)
            result = manager.run_chunk(policies.data, output.data)
            outputs, new_pid = manager.get_outputs(), manager.worker_pid

        assert (100, {"calls": 1, "config": {"k": 2}}) == (result.rows_processed, outputs)
        assert new_pid not in (None, pid)

    def test_interrupted_wait_kills_the_worker(self, shared: tuple[BufferInfo, BufferInfo]) -> None:
        """An exception interrupting the wait (Ctrl-C) kills the worker: no stale answer later."""

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        policies, output = shared
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            with EngineLifecycleManager(SleepEngine(), PROCESS) as manager:
                manager.initialize({"seconds": 1})
                pid = manager.worker_pid
                signal.setitimer(signal.ITIMER_REAL, 0.2)
                with pytest.raises(KeyboardInterrupt):
                    manager.run_chunk(policies.data, output.data)
                state, gone = manager.state, _pid_gone(pid)
                result = manager.run_chunk(policies.data, output.data)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

        assert (EngineState.ERROR, True) == (state, gone)
        assert 100 == result.rows_processed

    def test_dispose_stops_the_worker(self) -> None:
        """dispose ends the worker process."""

        manager = EngineLifecycleManager(EchoEngine(), PROCESS)
        manager.initialize({})
        pid = manager.worker_pid
        manager.dispose()

        assert (None, True) == (manager.worker_pid, _pid_gone(pid))

    def test_worker_exits_when_its_parent_dies(self, tmp_path: Path) -> None:
        """A worker whose parent is SIGKILLed mid-chunk exits by itself."""

        script = tmp_path / "parent.py"
        script.write_text(
            textwrap.dedent(
                f"""
                import sys, threading
                sys.path.insert(0, {SRC!r})
                import structlog, logging
                from livecalc.runtime.lifecycle import EngineLifecycleManager, LifecycleConfig
                from livecalc.testing import SpinEngine

                if __name__ == "__main__":
                    config = LifecycleConfig(isolation="process", timeout_seconds=60)
                    manager = EngineLifecycleManager(SpinEngine(), config)
                    manager.initialize({{}})
                    print(manager.worker_pid, flush=True)
                    manager.run_chunk(None, None)
                """
            )
        )
        parent = subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        time.sleep(0.3)  # let the chunk start spinning
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        parent.stdout.close()

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{worker_pid}"):
            # The orphan is reparented to init (or a subreaper), which reaps it once it exits.
            time.sleep(0.05)
        alive = os.path.exists(f"/proc/{worker_pid}") and not _is_zombie(worker_pid)

        assert not alive


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class TestEvents:
    def test_init_and_execution_events(self) -> None:
        """engine_init, execution_start and execution_complete carry the seed's fields."""

        data = _policies(8)
        credentials = AMCredentials(am_url="https://am", am_token="tok-abcdef-123456789")
        with capture_logs() as logs, EngineLifecycleManager(EchoEngine(), engine_id="e1") as m:
            m.initialize({"years": 50, "api_token": "should-not-show"}, credentials)
            m.run_chunk(data, np.zeros_like(data))

        by_event = {e["event"]: e for e in logs}
        init = by_event["engine_init"]
        assert ("e1", "test_echo", "EchoEngine", "1.0", False) == (
            init["engine_id"],
            init["engine_type"],
            init["engine_name"],
            init["engine_version"],
            init["supports_am"],
        )
        assert (50, "***", "https://am") == (
            init["config.years"],
            init["config.api_token"],
            init["am_url"],
        )
        assert (256, 256) == (
            by_event["execution_start"]["input_size_bytes"],
            by_event["execution_start"]["output_size_bytes"],
        )
        complete = by_event["execution_complete"]
        assert (True, 8, 256) == (
            complete["success"],
            complete["rows_processed"],
            complete["bytes_written"],
        )
        assert complete["memory_used_mb"] > 0 and complete["throughput_rows_per_sec"] > 0
        assert not any("tok-abcdef" in repr(e) or "should-not-show" in repr(e) for e in logs)

    def test_failure_events(self) -> None:
        """A failure logs an error event and an unsuccessful execution_complete; a retry warns."""

        data = _policies()
        config = LifecycleConfig(auto_retry_on_error=True)
        with capture_logs() as logs, EngineLifecycleManager(FailNTimesEngine(), config) as m:
            m.initialize({"n": 1})
            m.run_chunk(data, np.zeros_like(data))

        events = [(e["event"], e["log_level"]) for e in logs if e["event"] != "state_transition"]
        assert [
            ("engine_init", "info"),
            ("execution_start", "info"),
            ("error", "error"),
            ("execution_complete", "error"),
            ("warning", "warning"),
            ("execution_start", "info"),
            ("execution_complete", "info"),
        ] == events
        assert "planned failure" in next(e for e in logs if e["event"] == "error")["error_message"]
