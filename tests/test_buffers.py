"""Record dtypes, aligned buffers, shared memory across processes, and zero-copy hand-off."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.errors import ConfigurationError
from livecalc.runtime.buffers import (
    ALIGNMENT,
    ALL_SCENARIOS,
    CASHFLOW_DTYPE,
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DETAIL_EXT_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
    BufferManager,
    BufferType,
    SharedArrayRef,
    attach_shared,
    detach,
    shared_ref_of,
)
from livecalc.runtime.engine import EngineInfo, ExecutionResult, ICalcEngine, InputBuffer
from livecalc.runtime.lifecycle import EngineLifecycleManager
from livecalc.testing import EchoEngine

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _layout(dtype: np.dtype[Any]) -> list[tuple[str, str, int]]:
    assert dtype.fields is not None
    return [(name, dtype.fields[name][0].str, dtype.fields[name][1]) for name in dtype.names or ()]


def _shm_exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


def _wait_until(predicate: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def _child_writes(ref: SharedArrayRef) -> None:
    data, handle = attach_shared(ref)
    data["npv"] = np.arange(len(data), dtype=np.float64) * 2.5
    data["policy_id"] = 7
    del data
    detach(handle)


class TestRecordLayouts:
    def test_policy(self) -> None:
        """POLICY is 32 bytes with the offsets of docs/data.md."""

        expected = [
            ("policy_id", "<u8", 0),
            ("age", "|u1", 8),
            ("gender", "|u1", 9),
            ("underwriting_class", "|u1", 10),
            ("product_type", "|u1", 11),
            ("term", "<u4", 12),
            ("sum_assured", "<f8", 16),
            ("premium", "<f8", 24),
        ]

        assert (expected, 32) == (_layout(POLICY_DTYPE), POLICY_DTYPE.itemsize)

    def test_scenario(self) -> None:
        """SCENARIO is 16 bytes: scenario_id, year, rate."""

        expected = [("scenario_id", "<u4", 0), ("year", "<u4", 4), ("rate", "<f8", 8)]

        assert (expected, 16) == (_layout(SCENARIO_DTYPE), SCENARIO_DTYPE.itemsize)

    def test_result(self) -> None:
        """RESULT is the seed's 24-byte record."""

        expected = [
            ("scenario_id", "<u4", 0),
            ("policy_id", "<u4", 4),
            ("npv", "<f8", 8),
            ("reserved", "<u8", 16),
        ]

        assert (expected, 24) == (_layout(RESULT_DTYPE), RESULT_DTYPE.itemsize)

    def test_result_detail(self) -> None:
        """RESULT_DETAIL is 64 bytes: ids, then npv and its five components."""

        expected = [
            ("scenario_id", "<u4", 0),
            ("reserved", "<u4", 4),
            ("policy_id", "<u8", 8),
            ("npv", "<f8", 16),
            ("premium_income", "<f8", 24),
            ("death_benefits", "<f8", 32),
            ("surrender_benefits", "<f8", 40),
            ("expenses", "<f8", 48),
            ("maturity_benefits", "<f8", 56),
        ]

        assert (expected, 64) == (_layout(RESULT_DETAIL_DTYPE), RESULT_DETAIL_DTYPE.itemsize)

    def test_result_detail_ext(self) -> None:
        """RESULT_DETAIL_EXT is 96 bytes: RESULT_DETAIL's fields, then commissions, premium
        annuity and premium; a multiple of 16."""

        expected = [
            ("scenario_id", "<u4", 0),
            ("reserved", "<u4", 4),
            ("policy_id", "<u8", 8),
            ("npv", "<f8", 16),
            ("premium_income", "<f8", 24),
            ("death_benefits", "<f8", 32),
            ("surrender_benefits", "<f8", 40),
            ("expenses", "<f8", 48),
            ("maturity_benefits", "<f8", 56),
            ("commissions", "<f8", 64),
            ("premium_annuity", "<f8", 72),
            ("premium", "<f8", 80),
            ("reserved2", "<u8", 88),
        ]

        assert (expected, 96) == (
            _layout(RESULT_DETAIL_EXT_DTYPE),
            RESULT_DETAIL_EXT_DTYPE.itemsize,
        )
        assert 0 == RESULT_DETAIL_EXT_DTYPE.itemsize % 16

    def test_cashflow(self) -> None:
        """CASHFLOW is 112 bytes: scenario, period, time, then twelve float fields."""
        floats = [
            "time_years", "premiums", "death_claims", "surrenders", "maturities", "expenses",
            "commissions", "net_cash_flow", "policies_in_force", "deaths", "lapses",
            "discount_factor", "pv_net_cash_flow",
        ]  # fmt: skip
        expected = [("scenario_id", "<u4", 0), ("period", "<u4", 4)]
        expected += [(name, "<f8", 8 + 8 * i) for i, name in enumerate(floats)]

        assert (expected, 112) == (_layout(CASHFLOW_DTYPE), CASHFLOW_DTYPE.itemsize)
        assert 0 == CASHFLOW_DTYPE.itemsize % 16

    def test_policy_ext(self) -> None:
        """POLICY_EXT is 24 bytes: policy_id, duration_months, reserved, policy_count."""

        expected = [
            ("policy_id", "<u8", 0),
            ("duration_months", "<i4", 8),
            ("reserved", "<u4", 12),
            ("policy_count", "<f8", 16),
        ]

        assert (expected, 24) == (_layout(POLICY_EXT_DTYPE), POLICY_EXT_DTYPE.itemsize)

    def test_scenario_total(self) -> None:
        """SCENARIO_TOTAL is 64 bytes with the float fields where RESULT_DETAIL has them."""

        expected = [
            ("scenario_id", "<u4", 0),
            ("reserved", "<u4", 4),
            ("policy_count", "<f8", 8),
            *_layout(RESULT_DETAIL_DTYPE)[3:],
        ]

        assert (expected, 64) == (_layout(SCENARIO_TOTAL_DTYPE), SCENARIO_TOTAL_DTYPE.itemsize)

    def test_all_scenarios_marker(self) -> None:
        """ALL_SCENARIOS is the largest uint32, so it never collides with a real scenario."""

        assert np.iinfo(np.uint32).max == ALL_SCENARIOS

    def test_buffer_types_map_to_dtypes(self) -> None:
        """Each BufferType carries its record dtype and maximum record count."""

        expected = {
            "INPUT": (POLICY_DTYPE, 10_000_000),
            "SCENARIO": (SCENARIO_DTYPE, 100_000_000),
            "RESULT": (RESULT_DTYPE, 100_000_000),
            "RESULT_DETAIL": (RESULT_DETAIL_DTYPE, 100_000_000),
        }

        assert expected == {t.name: (t.dtype, t.max_records) for t in BufferType}


class TestBufferManager:
    @settings(max_examples=25, deadline=None)
    @given(
        buffer_type=st.sampled_from(list(BufferType)),
        records=st.integers(0, 5_000),
        shared=st.booleans(),
    )
    def test_every_buffer_is_aligned(
        self, buffer_type: BufferType, records: int, shared: bool
    ) -> None:
        """Any buffer starts on a 16-byte boundary, proven by its address."""

        with BufferManager() as manager:
            info = manager.allocate_buffer(buffer_type, "b", records, shared=shared)

            addresses = (info.address % ALIGNMENT, info.data.ctypes.data % ALIGNMENT)
            size = (info.record_count, info.total_size, info.data.dtype)

        assert (0, 0) == addresses
        assert (records, records * buffer_type.dtype.itemsize, buffer_type.dtype) == size

    def test_max_records_refused(self) -> None:
        """A record count above the type's maximum is refused, naming the buffer and the fix."""

        with BufferManager() as manager, pytest.raises(ConfigurationError) as info:
            manager.allocate_buffer(BufferType.INPUT, "policies", 10_000_001)

        assert "'policies'" in str(info.value) and "chunks" in str(info.value)

    @pytest.mark.parametrize(
        ("dtype", "limit"),
        [
            (POLICY_DTYPE, 10_000_000),
            (RESULT_DTYPE, 100_000_000),
            (RESULT_DETAIL_DTYPE, 100_000_000),
            (POLICY_EXT_DTYPE, 10_000_000),
        ],
    )
    def test_allocate_applies_the_same_maximum(self, dtype: np.dtype[Any], limit: int) -> None:
        """allocate() by dtype refuses what allocate_buffer() refuses, before any memory."""

        with BufferManager() as manager, pytest.raises(ConfigurationError) as info:
            manager.allocate("results", dtype, limit + 1)

        assert "'results'" in str(info.value) and "chunk" in str(info.value)
        assert f"{limit:,}" in str(info.value)

    def test_allocate_with_a_type_applies_its_maximum(self) -> None:
        """An explicit type's maximum applies to allocate() too, whatever the dtype."""

        with BufferManager() as manager, pytest.raises(ConfigurationError):
            manager.allocate("p", np.uint8, 10_000_001, type=BufferType.INPUT)

    def test_max_records_accepted_at_the_limit_for_shared(self) -> None:
        """The maximum itself is allowed (checked on a small type's count, shared, lazily paged)."""

        with BufferManager() as manager:
            info = manager.allocate_buffer(BufferType.INPUT, "p", 10_000_000, shared=True)

            size = info.total_size

        assert 320_000_000 == size

    def test_negative_records_refused(self) -> None:
        """A negative record count is a ConfigurationError."""

        with BufferManager() as manager, pytest.raises(ConfigurationError):
            manager.allocate("x", SCENARIO_DTYPE, -1)

    def test_duplicate_name_refused(self) -> None:
        """Allocating a name twice is refused."""

        with BufferManager() as manager:
            manager.allocate_buffer(BufferType.RESULT, "r", 1)
            with pytest.raises(ConfigurationError) as info:
                manager.allocate_buffer(BufferType.RESULT, "r", 1)

        assert "already exists" in str(info.value)

    def test_unknown_name_lists_known(self) -> None:
        """get_buffer of an unknown name lists the allocated ones."""

        with BufferManager() as manager:
            manager.allocate_buffer(BufferType.RESULT, "results", 1)
            with pytest.raises(ConfigurationError) as info:
                manager.get_buffer("resluts")

        assert "results" in str(info.value)

    def test_totals_and_stats(self) -> None:
        """get_total_allocated and get_buffer_stats report bytes per live buffer."""

        with BufferManager() as manager:
            manager.allocate_buffer(BufferType.INPUT, "p", 10)
            manager.allocate_buffer(BufferType.SCENARIO, "s", 4, shared=True)
            manager.free("p")

            totals = (manager.get_total_allocated(), manager.get_buffer_stats())

        assert (64, {"s": 64}) == totals

    def test_free_unlinks_shared_segment(self) -> None:
        """free() removes a shared buffer's segment from the system."""

        with BufferManager() as manager:
            info = manager.allocate_buffer(BufferType.RESULT, "r", 10, shared=True)
            name = info.ref.shm_name
            existed = _shm_exists(name)
            manager.free("r")

        assert (True, False) == (existed, _shm_exists(name))

    def test_private_buffer_has_no_ref(self) -> None:
        """A private buffer's ref is refused, telling the user to allocate it shared."""

        with BufferManager() as manager:
            info = manager.allocate_buffer(BufferType.RESULT, "r", 10)
            with pytest.raises(ConfigurationError) as raised:
                _ = info.ref

        assert "shared=True" in str(raised.value)


class TestSharedMemory:
    def test_shared_ref_of_a_slice(self) -> None:
        """A contiguous slice of a shared buffer maps to its segment and byte offset."""

        with BufferManager() as manager:
            info = manager.allocate_buffer(BufferType.SCENARIO, "s", 100, shared=True)
            ref = shared_ref_of(info.data[10:20])
            private = shared_ref_of(np.zeros(4, SCENARIO_DTYPE))
            strided = shared_ref_of(info.data[::2])

        assert ref is not None
        assert (info.shm_name, 160, 10) == (ref.shm_name, ref.offset, ref.record_count)
        assert (None, None) == (private, strided)

    def test_attach_in_same_process_shares_memory(self) -> None:
        """attach_shared maps the same bytes: a write through one view shows in the other."""

        with BufferManager() as manager:
            info = manager.allocate_buffer(BufferType.SCENARIO, "s", 8, shared=True)
            view, handle = attach_shared(info.ref)
            view["rate"] = 0.03
            seen = info.data["rate"].copy()
            same_dtype = view.dtype == SCENARIO_DTYPE
            del view
            detach(handle)

        assert np.full(8, 0.03).tolist() == seen.tolist()
        assert same_dtype

    def test_child_process_writes_parent_reads(self) -> None:
        """A spawned child attaches by name and writes; the parent reads the values in place."""

        with BufferManager() as manager:
            info = manager.allocate_buffer(BufferType.RESULT, "r", 1000, shared=True)
            info.data[:] = np.zeros(1, RESULT_DTYPE)
            child = multiprocessing.get_context("spawn").Process(
                target=_child_writes, args=(info.ref,)
            )
            child.start()
            child.join(60)
            npv = info.data["npv"].copy()
            ids = set(info.data["policy_id"].tolist())

        assert 0 == child.exitcode
        assert (np.arange(1000) * 2.5).tolist() == npv.tolist()
        assert {7} == ids

    def test_attach_missing_segment(self) -> None:
        """Attaching to a freed segment says it does not exist."""

        with pytest.raises(ConfigurationError) as info:
            attach_shared(SharedArrayRef("livecalc_no_such_segment", "<f8", 1))

        assert "does not exist" in str(info.value)

    def test_no_leak_after_owner_is_killed(self, tmp_path: Path) -> None:
        """SIGKILLing the owner (after a spawned child attached) still unlinks its segment."""

        script = tmp_path / "owner.py"
        script.write_text(
            textwrap.dedent(
                f"""
                import multiprocessing, sys, time
                sys.path.insert(0, {SRC!r})
                from livecalc.runtime.buffers import (
                    BufferManager, BufferType, attach_shared, detach)

                def attach(ref):
                    data, handle = attach_shared(ref)
                    data["rate"] = 1.0
                    del data
                    detach(handle)

                if __name__ == "__main__":
                    manager = BufferManager()
                    info = manager.allocate_buffer(BufferType.SCENARIO, "s", 1000, shared=True)
                    child = multiprocessing.get_context("spawn").Process(
                        target=attach, args=(info.ref,))
                    child.start()
                    child.join()
                    print(info.shm_name, flush=True)
                    time.sleep(60)
                """
            )
        )
        owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        assert owner.stdout is not None
        name = owner.stdout.readline().strip()
        existed = _shm_exists(name)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        owner.stdout.close()

        gone = _wait_until(lambda: not _shm_exists(name))

        assert (True, True) == (existed, gone)


class _AddressRecorder(ICalcEngine):
    """Remembers the address and memory of the input it was handed (a probe, not a fake)."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def initialize(self, config: Mapping[str, Any], credentials: Any = None) -> None:
        """Nothing to set up."""

    def get_info(self) -> EngineInfo:
        """A probe."""
        return EngineInfo("probe", "1", "probe")

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Keep the input array object it received."""
        assert isinstance(input_buffer, np.ndarray)
        self.seen.append(input_buffer)
        return ExecutionResult(rows_processed=len(input_buffer))

    def dispose(self) -> None:
        """Nothing to free."""

    @property
    def is_initialized(self) -> bool:
        """Always ready."""
        return True


class TestZeroCopyHandOff:
    def test_output_of_one_engine_is_input_of_next(self) -> None:
        """The second engine reads the first engine's output at the same address, no copy."""

        recorder = _AddressRecorder()
        with BufferManager() as manager:
            policies = manager.allocate_buffer(BufferType.INPUT, "policies", 64)
            policies.data["policy_id"] = np.arange(64)
            handoff = manager.allocate_buffer(BufferType.INPUT, "handoff", 64)
            with (
                EngineLifecycleManager(EchoEngine()) as first,
                EngineLifecycleManager(recorder) as second,
            ):
                first.initialize({})
                second.initialize({})
                first.run_chunk(policies.data, handoff.data)
                second.run_chunk(handoff.data, None)
            seen = recorder.seen[0]
            shares = np.shares_memory(seen, handoff.data)
            address = seen.ctypes.data
            ids = seen["policy_id"].tolist()

        assert (True, handoff.address) == (shares, address)
        assert list(range(64)) == ids

    def test_buffers_are_reused_across_chunks(self) -> None:
        """Successive run_chunk calls get views into the same pre-allocated memory."""

        recorder = _AddressRecorder()
        with BufferManager() as manager:
            info = manager.allocate_buffer(BufferType.INPUT, "p", 100)
            with EngineLifecycleManager(recorder) as lifecycle:
                lifecycle.initialize({})
                for start in range(0, 100, 25):
                    lifecycle.run_chunk(info.data[start : start + 25], None)
            addresses = [a.ctypes.data - info.address for a in recorder.seen]
            shared = all(np.shares_memory(a, info.data) for a in recorder.seen)

        assert ([0, 800, 1600, 2400], True) == (addresses, shared)
