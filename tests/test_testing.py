"""The fake engines of livecalc.testing behave as documented (inline, where that is safe)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.runtime.buffers import POLICY_DTYPE, SCENARIO_DTYPE
from livecalc.runtime.engine import ICalcEngine, OutputSpec
from livecalc.testing import (
    TESTING_ENGINE_TYPES,
    CrashEngine,
    EchoEngine,
    FailNTimesEngine,
    NoOpEngine,
    NumbaSpinEngine,
    SleepEngine,
)


def _policies(n: int = 5) -> np.ndarray:
    data = np.zeros(n, POLICY_DTYPE)
    data["policy_id"] = np.arange(10, 10 + n)
    return data


class TestFakes:
    def test_echo_copies_records(self) -> None:
        """EchoEngine copies its (first named) input to the output and reports the bytes."""

        engine = EchoEngine()
        engine.initialize({})
        data, out = _policies(), np.zeros(8, POLICY_DTYPE)
        result = engine.run_chunk({"policies": data}, out)

        assert (5, 160) == (result.rows_processed, result.bytes_written)
        assert [10, 11, 12, 13, 14, 0, 0, 0] == out["policy_id"].tolist()

    def test_echo_refuses_a_mismatched_output(self) -> None:
        """An output of another dtype is refused with the fix."""

        engine = EchoEngine()
        engine.initialize({})
        with pytest.raises(ConfigurationError) as info:
            engine.run_chunk(_policies(), np.zeros(5, SCENARIO_DTYPE))

        assert "output_spec" in str(info.value)

    def test_echo_before_initialize(self) -> None:
        """Running an uninitialised fake is an ExecutionError."""

        with pytest.raises(ExecutionError):
            EchoEngine().run_chunk(_policies(), np.zeros(5, POLICY_DTYPE))

    def test_output_spec_follows_the_input(self) -> None:
        """output_spec asks for the input's dtype and length; none without inputs."""

        engine = EchoEngine()

        assert OutputSpec(POLICY_DTYPE, 5) == engine.output_spec({"p": _policies()})
        assert None is engine.output_spec({})

    def test_noop_counts_without_writing(self) -> None:
        """NoOpEngine reports the input length and leaves the output alone."""

        engine = NoOpEngine()
        engine.initialize({})
        out = np.ones(5, POLICY_DTYPE)
        result = engine.run_chunk(_policies(), out)

        assert (5, 0, [1] * 5) == (
            result.rows_processed,
            result.bytes_written,
            out["policy_id"].tolist(),
        )

    def test_sleep_then_echo(self) -> None:
        """SleepEngine with 0 seconds just echoes."""

        engine = SleepEngine()
        engine.initialize({"seconds": 0})
        out = np.zeros(5, POLICY_DTYPE)
        engine.run_chunk(_policies(), out)

        assert list(range(10, 15)) == out["policy_id"].tolist()

    @pytest.mark.parametrize(
        ("engine", "config", "key"),
        [
            (SleepEngine(), {"seconds": -1}, "config.seconds"),
            (SleepEngine(), {"seconds": True}, "config.seconds"),
            (CrashEngine(), {"kind": "explode"}, "config.kind"),
            (FailNTimesEngine(), {"mode": "maybe"}, "config.mode"),
            (FailNTimesEngine(), {"n": "two"}, "config.n"),
            (NumbaSpinEngine(), {"iterations": -5}, "config.iterations"),
        ],
    )
    def test_bad_config_names_the_key(
        self, engine: ICalcEngine, config: dict[str, object], key: str
    ) -> None:
        """Each fake validates its config keys, naming the key in the error."""

        with pytest.raises(ConfigurationError) as info:
            engine.initialize(config)

        assert key in str(info.value)

    def test_fail_n_times_then_echo(self) -> None:
        """FailNTimesEngine raises n times, then echoes; mode "result" returns failures."""

        raising, reporting = FailNTimesEngine(), FailNTimesEngine()
        raising.initialize({"n": 2})
        reporting.initialize({"n": 1, "mode": "result"})
        out = np.zeros(5, POLICY_DTYPE)
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append(raising.run_chunk(_policies(), out).rows_processed)
            except RuntimeError as exc:
                outcomes.append(str(exc))
        reported = reporting.run_chunk(_policies(), out)

        assert ["planned failure 1 of 2", "planned failure 2 of 2", 5] == outcomes
        assert (False, "planned failure 1 of 1") == (reported.success, reported.error_message)

    def test_numba_spin_with_a_bound_finishes(self) -> None:
        """NumbaSpinEngine with a small iteration count returns and echoes."""

        engine = NumbaSpinEngine()
        engine.initialize({"iterations": 1000})
        out = np.zeros(5, POLICY_DTYPE)
        result = engine.run_chunk(_policies(), out)

        assert 5 == result.rows_processed
        assert engine.value > 1.0

    def test_fakes_pickle_and_report_their_type(self) -> None:
        """Every fake pickles (for worker processes) and names its registered type."""

        types = {
            name: pickle.loads(pickle.dumps(cls())).get_info().engine_type
            for name, cls in TESTING_ENGINE_TYPES.items()
        }

        assert {name: name for name in TESTING_ENGINE_TYPES} == types
