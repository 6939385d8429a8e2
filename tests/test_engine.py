"""The engine interface: results, seed-style ``runChunk`` engines, ``as_engine``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.runtime.buffers import POLICY_DTYPE, RESULT_DTYPE
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    SupportsEvaluator,
    SupportsParameters,
    as_engine,
)
from livecalc.runtime.lifecycle import EngineLifecycleManager


class SeedSubclass(ICalcEngine):
    """Written against the original interface: only ``runChunk``, returning a dict."""

    def __init__(self) -> None:
        self.ready = False

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        self.ready = True

    def get_info(self) -> EngineInfo:
        return EngineInfo("Seed", "0.9", "projection")

    def runChunk(self, input_buffer: Any, output_buffer: Any) -> dict[str, Any]:
        n = len(input_buffer)
        output_buffer["policy_id"][:n] = input_buffer["policy_id"]
        output_buffer["npv"][:n] = input_buffer["sum_assured"] * 0.5
        return {"success": True, "rows_processed": n, "bytes_written": n * 24}

    def dispose(self) -> None:
        self.ready = False

    @property
    def is_initialized(self) -> bool:
        return self.ready


class DuckSeedEngine:
    """A seed engine that subclasses nothing and takes credentials as a dict."""

    def __init__(self) -> None:
        self.is_initialized = False
        self.credentials: Any = None

    def initialize(self, config: dict[str, Any], credentials: Any) -> None:
        self.credentials = credentials
        self.is_initialized = True

    def get_info(self) -> dict[str, Any]:
        return {"name": "Duck", "version": "1", "engine_type": "python_solver"}

    def runChunk(self, input_buffer: Any, output_buffer: Any) -> dict[str, Any]:
        return {"success": False, "error": "did not converge"}

    def dispose(self) -> None:
        raise RuntimeError("seed engines may raise here; the wrapper must not")


def _policies(n: int) -> np.ndarray:
    data = np.zeros(n, POLICY_DTYPE)
    data["policy_id"] = np.arange(n)
    data["sum_assured"] = 1000.0
    return data


class TestExecutionResult:
    def test_from_legacy_dict(self) -> None:
        """A seed result dict maps field by field; 'error' becomes error_message."""

        result = ExecutionResult.from_legacy(
            {"success": False, "rows_processed": 3, "error": "boom", "warnings": ["w"]}, 2.0
        )

        assert ExecutionResult(False, 2.0, 3, 0, ["w"], "boom") == result

    def test_from_legacy_none_is_success(self) -> None:
        """A seed runChunk returning None succeeded, timed by the caller."""

        assert ExecutionResult(True, 5.0) == ExecutionResult.from_legacy(None, 5.0)

    def test_from_legacy_rejects_other_types(self) -> None:
        """Anything but a result, dict or None is an ExecutionError naming the type."""

        with pytest.raises(ExecutionError) as info:
            ExecutionResult.from_legacy(42, 0.0)

        assert "int" in str(info.value)


class TestSeedStyleEngines:
    def test_subclass_with_run_chunk_spelled_the_seed_way(self) -> None:
        """A subclass defining only runChunk gets run_chunk returning an ExecutionResult."""

        engine = SeedSubclass()
        engine.initialize({})
        policies, out = _policies(4), np.zeros(4, RESULT_DTYPE)
        result = engine.run_chunk(policies, out)

        assert (True, 4, 96) == (result.success, result.rows_processed, result.bytes_written)
        assert [500.0] * 4 == out["npv"].tolist()

    def test_subclass_runs_unchanged_under_the_lifecycle_manager(self) -> None:
        """The seed-style subclass runs through EngineLifecycleManager like any engine."""

        policies, out = _policies(6), np.zeros(6, RESULT_DTYPE)
        with EngineLifecycleManager(SeedSubclass()) as manager:
            manager.initialize({})
            result = manager.run_chunk(policies, out)

        assert (6, list(range(6))) == (result.rows_processed, out["policy_id"].tolist())

    def test_duck_typed_engine_is_wrapped(self) -> None:
        """as_engine wraps a duck-typed seed engine: dict info, dict credentials, dict results."""

        inner = DuckSeedEngine()
        engine = as_engine(inner)
        engine.initialize({"k": 1}, AMCredentials(am_url="u", am_token="secret-token-1234"))
        info = engine.get_info()
        result = engine.run_chunk(None, None)
        engine.dispose()

        assert EngineInfo("Duck", "1", "python_solver") == info
        assert {"am_url": "u", "am_token": "secret-token-1234", "cache_dir": ""} == (
            inner.credentials
        )
        assert (False, "did not converge") == (result.success, result.error_message)
        assert (True, None, {}) == (
            engine.is_initialized,
            engine.output_spec({}),
            engine.get_outputs(),
        )

    def test_duck_typed_failure_through_lifecycle(self) -> None:
        """The wrapped seed engine's failed result raises ExecutionError through the manager."""

        with EngineLifecycleManager(DuckSeedEngine(), engine_id="solver") as manager:
            manager.initialize({})
            with pytest.raises(ExecutionError) as info:
                manager.run_chunk(None, None)

        assert "[solver]" in str(info.value) and "did not converge" in str(info.value)

    def test_as_engine_returns_engines_unchanged(self) -> None:
        """An ICalcEngine is returned as it is."""

        engine = SeedSubclass()

        assert engine is as_engine(engine)

    def test_as_engine_refuses_non_engines(self) -> None:
        """An object without the interface is refused, naming what it needs."""

        with pytest.raises(ConfigurationError) as info:
            as_engine(object())

        assert "initialize" in str(info.value) and "runChunk" in str(info.value)

    def test_as_engine_refuses_duck_with_new_spelling(self) -> None:
        """A duck-typed object spelling run_chunk is told to subclass ICalcEngine."""

        class Modern:
            def initialize(self, c: Any, k: Any = None) -> None: ...
            def get_info(self) -> None: ...
            def run_chunk(self, i: InputBuffer, o: Any) -> None: ...
            def dispose(self) -> None: ...

        with pytest.raises(ConfigurationError) as info:
            as_engine(Modern())

        assert "subclass livecalc.ICalcEngine" in str(info.value)


class TestProtocols:
    def test_protocols_are_checked_structurally(self) -> None:
        """SupportsParameters and SupportsEvaluator recognise engines by their methods."""

        class Tunable:
            def set_parameters(self, params: Mapping[str, float]) -> None: ...

        class Solver:
            def bind_evaluator(self, evaluator: Any) -> None: ...

        assert (True, False) == (
            isinstance(Tunable(), SupportsParameters),
            isinstance(Tunable(), SupportsEvaluator),
        )
        assert isinstance(Solver(), SupportsEvaluator)
