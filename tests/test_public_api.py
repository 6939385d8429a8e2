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
