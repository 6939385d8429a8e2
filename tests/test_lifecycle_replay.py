"""A fresh worker that replaces a lost one gets the parameters set before the loss."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from livecalc.engines.projection import ProjectionEngine
from livecalc.io.generate import generate_policies
from livecalc.runtime.buffers import BufferManager, BufferType
from livecalc.runtime.lifecycle import EngineLifecycleManager, LifecycleConfig

CONFIG = {"output": "scenario_totals", "discount_rate": 0.03}


def _totals(manager: EngineLifecycleManager, mgr: BufferManager, name: str) -> np.ndarray:
    policies = mgr.get_buffer("policies").data
    spec = manager.output_spec({"policies": policies})
    assert spec is not None
    out = mgr.allocate(name, spec.dtype, spec.records, shared=True).data
    manager.run_chunk({"policies": policies}, out)
    return out.copy()


class TestParameterReplay:
    def test_set_parameters_survive_a_killed_worker(self) -> None:
        """After the worker is killed, the next chunk runs with the premium multiplier set
        before, as an inline engine does."""
        with BufferManager() as mgr:
            pol = mgr.allocate_buffer(BufferType.INPUT, "policies", 40, shared=True)
            pol.data[:] = generate_policies(40, seed=5).records
            inline = EngineLifecycleManager(ProjectionEngine())
            inline.initialize(CONFIG)
            inline.call("set_parameters", {"premium_multiplier": 1.7})
            inline.call("set_parameters", {"mortality_multiplier": 1.2})
            config = LifecycleConfig(isolation="process", timeout_seconds=60)
            with EngineLifecycleManager(ProjectionEngine(), config) as isolated:
                isolated.initialize(CONFIG)
                isolated.call("set_parameters", {"premium_multiplier": 1.7})
                isolated.call("set_parameters", {"mortality_multiplier": 1.2})
                pid = isolated.worker_pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                while isolated.worker_pid == pid:
                    time.sleep(0.01)

                replayed = _totals(isolated, mgr, "isolated")

            expected = _totals(inline, mgr, "inline")
            inline.dispose()

        assert expected.tobytes() == replayed.tobytes()
