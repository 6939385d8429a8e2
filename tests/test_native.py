"""NativeEngine runs a C ABI engine compiled from tests/native/scale_engine.c."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from livecalc.errors import ConfigurationError, ExecutionError, InitializationError
from livecalc.runtime.buffers import SCENARIO_DTYPE, BufferManager, BufferType
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.lifecycle import EngineLifecycleManager, EngineState, LifecycleConfig
from livecalc.runtime.native import HEADER_PATH, NativeEngine

SOURCE = Path(__file__).parent / "native" / "scale_engine.c"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test engine, compiled with the system C compiler against LiveCalc's header."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler is not None, "a C compiler is needed: apt-get install gcc"
    out = tmp_path_factory.mktemp("native") / "libscale.so"
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O2",
            f"-I{HEADER_PATH.parent}",
            str(SOURCE),
            "-o",
            str(out),
        ],
        check=True,
    )
    return str(out)


def _scenarios(mgr: BufferManager, n: int) -> np.ndarray:
    buf = mgr.allocate_buffer(BufferType.SCENARIO, "scen", n).data
    buf["scenario_id"] = np.arange(n) // 10
    buf["year"] = np.arange(n) % 10 + 1
    buf["rate"] = np.linspace(0.01, 0.05, n)
    return buf


class TestNativeEngine:
    def test_runs_in_place_on_caller_buffers(self, library: str) -> None:
        """The library reads the input records and writes scaled rates into the output buffer."""
        engine = EngineFactory(discover=False).create_engine("native")
        engine.initialize({"library": library, "output_type": "scenario", "factor": 2.0})
        with BufferManager() as mgr:
            scen = _scenarios(mgr, 100)
            spec = engine.output_spec({"scenarios": scen})
            assert spec is not None
            out = mgr.allocate("out", spec.dtype, spec.records).data

            result = engine.run_chunk(scen, out)

            assert result.success
            assert 100 * SCENARIO_DTYPE.itemsize == result.bytes_written
            np.testing.assert_array_equal(scen["rate"] * 2.0, out["rate"])
            np.testing.assert_array_equal(scen["year"], out["year"])
        engine.dispose()

    def test_get_info_comes_from_the_library(self, library: str) -> None:
        """get_info returns the strings the library reports."""
        engine = NativeEngine()
        engine.initialize({"library": library, "output_type": "scenario", "factor": 1.0})

        info = engine.get_info()

        assert ("Scale Engine", "1.0.0", "scale") == (info.name, info.version, info.engine_type)
        engine.dispose()
        assert not engine.is_initialized

    def test_library_initialize_error_is_reported(self, library: str) -> None:
        """An lc_initialize failure becomes an InitializationError with the library's message."""
        engine = NativeEngine()

        with pytest.raises(InitializationError, match=r"config\.factor: give a number"):
            engine.initialize({"library": library, "output_type": "scenario"})

    def test_missing_library_names_the_key(self, tmp_path: Path) -> None:
        """A library path that does not exist is a configuration error naming config.library."""
        with pytest.raises(ConfigurationError, match=r"config\.library"):
            NativeEngine().initialize({"library": str(tmp_path / "nope.so")})

    def test_not_an_engine_library(self, tmp_path: Path) -> None:
        """A file that is not a shared library with the ABI is refused with the header's name."""
        bogus = tmp_path / "bogus.so"
        bogus.write_bytes(b"not an ELF file")

        with pytest.raises(InitializationError, match=r"livecalc_engine\.h"):
            NativeEngine().initialize({"library": str(bogus)})

    def test_unknown_output_type(self, library: str) -> None:
        """An unknown output_type lists the buffer types."""
        with pytest.raises(ConfigurationError, match="result_detail"):
            NativeEngine().initialize({"library": library, "output_type": "bogus", "factor": 1})


class TestNativeEngineIsolated:
    def test_runs_in_a_worker_on_shared_buffers(self, library: str) -> None:
        """In a worker process the library writes straight into the caller's shared buffer."""
        config = {"library": library, "output_type": "scenario", "factor": 3.0}
        with BufferManager() as mgr:
            scen = mgr.allocate_buffer(BufferType.SCENARIO, "scen", 50, shared=True).data
            scen["rate"] = np.linspace(0.01, 0.05, 50)
            out = mgr.allocate_buffer(BufferType.SCENARIO, "out", 50, shared=True).data
            isolated = LifecycleConfig(isolation="process", timeout_seconds=30)
            with EngineLifecycleManager(NativeEngine(), isolated) as manager:
                manager.initialize(config)

                manager.run_chunk(scen, out)

            np.testing.assert_array_equal(scen["rate"] * 3.0, out["rate"])

    def test_segfault_fails_the_chunk_not_the_caller(self, library: str) -> None:
        """A segfault in the library kills only its worker: the caller gets an ExecutionError
        naming SIGSEGV, and the next chunk runs in a fresh worker."""
        config = {"library": library, "output_type": "scenario", "factor": 1.0, "mode": "segfault"}
        with BufferManager() as mgr:
            scen = mgr.allocate_buffer(BufferType.SCENARIO, "scen", 10, shared=True).data
            out = mgr.allocate_buffer(BufferType.SCENARIO, "out", 10, shared=True).data
            isolated = LifecycleConfig(isolation="process", timeout_seconds=30)
            with EngineLifecycleManager(NativeEngine(), isolated) as manager:
                manager.initialize(config)

                with pytest.raises(ExecutionError, match="SIGSEGV"):
                    manager.run_chunk(scen, out)

                assert EngineState.ERROR == manager.state
