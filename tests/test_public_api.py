"""The top-level package exports its public names, sorted and complete."""

from __future__ import annotations

import livecalc


class TestPublicApi:
    def test_all_is_sorted(self) -> None:
        """__all__ is sorted, constants (upper case) first as ruff sorts them."""

        names = list(livecalc.__all__)

        assert sorted(names, key=lambda n: (not n.isupper(), n)) == names

    def test_all_names_exist(self) -> None:
        """Every name in __all__ is importable from the package."""

        missing = [n for n in livecalc.__all__ if not hasattr(livecalc, n)]

        assert [] == missing

    def test_public_module_names_are_exported(self) -> None:
        """Every public class or function defined at the top level is listed in __all__."""

        public = {
            n
            for n, v in vars(livecalc).items()
            if not n.startswith("_") and getattr(v, "__module__", "").startswith("livecalc")
        }

        assert set() == public - set(livecalc.__all__)

    def test_design_names_are_public(self) -> None:
        """The names the docs promise are importable from livecalc."""
        design = {
            "ICalcEngine", "EngineInfo", "ExecutionResult", "AMCredentials", "CalcEngineError",
            "InitializationError", "ConfigurationError", "ExecutionError", "EngineTimeoutError",
            "BufferType", "POLICY_DTYPE", "SCENARIO_DTYPE", "RESULT_DTYPE", "RESULT_DETAIL_DTYPE",
            "BufferManager", "BufferInfo", "EngineFactory", "EngineLifecycleManager",
            "LifecycleConfig", "EngineState", "CredentialManager", "CredentialSource", "TokenInfo",
            "ParquetReader", "ParquetWriter", "run", "RunResult",
        }  # fmt: skip

        assert set() == design - set(livecalc.__all__)

    def test_import_does_not_load_numba(self) -> None:
        """Importing livecalc stays light: numba kernels load only with the engines."""
        import subprocess
        import sys

        code = "import livecalc, sys; print(any(m.startswith('numba') for m in sys.modules))"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert "False" == out.stdout.strip()

    def test_import_does_not_load_a_scheduler(self) -> None:
        """Neither `import livecalc` nor its public names nor `livecalc.integrations` import
        Dagster (or Airflow): only `livecalc.integrations.dagster` does."""
        import subprocess
        import sys

        code = (
            "import sys, livecalc, livecalc.integrations; livecalc.run; livecalc.PipelineConfig; "
            "print(sorted({m.split('.')[0] for m in sys.modules "
            "if m.split('.')[0] in ('dagster', 'dagster_duckdb', 'airflow')}))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )

        assert "[]" == out.stdout.strip()


# The public names, pinned: a change here is a change of the public API and must be deliberate
# (the layout of the package may move; these names may not).
PINNED_ALL = [
    "ALL_SCENARIOS", "CASHFLOW_DTYPE", "POLICY_DTYPE", "POLICY_EXT_DTYPE", "RESULT_DETAIL_DTYPE",
    "RESULT_DETAIL_EXT_DTYPE", "RESULT_DTYPE",
    "SCENARIO_DTYPE", "SCENARIO_TOTAL_DTYPE", "AMCredentials", "AssumptionResolutionError",
    "AssumptionsClient", "BufferInfo", "BufferManager", "BufferType", "CalcEngineError",
    "ConfigurationError", "CredentialManager", "CredentialSource", "EngineFactory", "EngineInfo",
    "EngineLifecycleManager", "EngineState", "EngineTimeoutError", "ExecutionError",
    "ExecutionResult", "ICalcEngine", "InitializationError", "LifecycleConfig", "LifecycleStats",
    "LoggerConfig", "NativeEngine", "OutputSpec", "ParquetReader", "ParquetWriter",
    "PipelineConfig", "PolicyData", "ResolvedAssumption", "RunResult", "SharedArrayRef",
    "TokenInfo", "check_engines", "configure_logging", "load_config", "resolve_reference", "run",
]  # fmt: skip


class TestPinnedApi:
    def test_all_is_pinned(self) -> None:
        assert PINNED_ALL == list(livecalc.__all__)

    def test_every_name_resolves_to_its_object(self) -> None:
        """Lazy loading hands back the defining module's object, identical on every access."""
        from livecalc.ops.session import run  # the run recorded in the run store
        from livecalc.runtime.records import POLICY_DTYPE

        assert run is livecalc.run
        assert POLICY_DTYPE is livecalc.POLICY_DTYPE
        assert livecalc.run is livecalc.run

    def test_unknown_name_is_an_attribute_error(self) -> None:
        import pytest

        with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
            _ = livecalc.nonexistent  # type: ignore[attr-defined]

    def test_seed_style_imports_work(self) -> None:
        """The seed's imports: names from the package, the engine modules by path."""
        from livecalc import POLICY_DTYPE, EngineFactory, ICalcEngine  # noqa: F401
        from livecalc.engines.esg import ESGEngine  # noqa: F401
        from livecalc.engines.projection import ProjectionEngine  # noqa: F401
        from livecalc.engines.solver import SolverEngine  # noqa: F401
        from livecalc.testing import EchoEngine  # noqa: F401

    def test_entry_points_resolve(self) -> None:
        """The console script and the engine entry points name importable objects."""
        from importlib.metadata import entry_points

        scripts = {e.name: e for e in entry_points(group="console_scripts")}
        engines = {e.name: e for e in entry_points(group="livecalc.engines")}

        assert callable(scripts["livecalc"].load())
        assert {"esg", "projection", "solver"} <= set(engines)
        for entry in engines.values():
            assert isinstance(entry.load(), type)

    def test_c_header_is_packaged_where_native_says(self) -> None:
        from livecalc.runtime.native import HEADER_PATH

        assert HEADER_PATH.is_file()
        assert "lc_create" in HEADER_PATH.read_text()
