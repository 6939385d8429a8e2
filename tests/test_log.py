"""Tests of livecalc.log: the processor chain, masking, run_id and buffer dumps."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from livecalc.assumptions.credentials import AMCredentials
from livecalc.log import (
    LoggerConfig,
    bind_run_id,
    capture_logs,
    configure_logging,
    get_logger,
    log_buffer_content,
    mask_value,
    register_secret,
    run_context,
    scrub_text,
    unbind_run_id,
)

# A syntactically real JWT (header {"alg":"HS256","typ":"JWT"}); its signature is made up.
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0"
    ".c2lnbmF0dXJlX3BhcnRfb2ZfdGhlX3Rva2Vu"
)


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """Each test starts and ends with the default configuration and no run_id."""
    configure_logging(LoggerConfig())
    yield
    unbind_run_id()
    configure_logging(LoggerConfig())


def _file_config(tmp_path: Path, **overrides: Any) -> tuple[LoggerConfig, Path]:
    path = tmp_path / "run.log"
    config = LoggerConfig(enable_console=False, enable_file=True, log_file_path=path, **overrides)
    configure_logging(config)
    return config, path


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestLoggerConfig:
    """LoggerConfig, the seed's logging options."""

    def test_seed_level_spelling_is_accepted(self) -> None:
        """The seed's WARN and lower-case names mean the stdlib levels."""
        assert LoggerConfig(min_level="warn").min_level == "WARNING"  # type: ignore[arg-type]

    def test_file_output_needs_a_path(self) -> None:
        """Enabling the file output without a path is refused, naming both options."""
        with pytest.raises(ValueError, match="log_file_path"):
            LoggerConfig(enable_file=True)


class TestJsonLines:
    """The JSON rendering of events."""

    def test_event_is_one_json_line_with_seed_fields_first(self, tmp_path: Path) -> None:
        """A line holds timestamp, level and event first, then the event's fields."""
        _, path = _file_config(tmp_path)

        get_logger(engine_id="proj_1").info("engine_init", engine_type="projection")

        (line,) = _lines(path)
        assert list(line) == ["timestamp", "level", "event", "engine_id", "engine_type"]
        assert (line["level"], line["event"], line["engine_id"]) == (
            "INFO",
            "engine_init",
            "proj_1",
        )

    def test_events_below_min_level_are_dropped(self, tmp_path: Path) -> None:
        """With min_level WARNING, debug and info events are not written."""
        _, path = _file_config(tmp_path, min_level="WARNING")
        log = get_logger()

        log.debug("state_transition")
        log.info("execution_start")
        log.warning("warning", message="slow")
        log.error("error", error_message="boom")

        assert [line["event"] for line in _lines(path)] == ["warning", "error"]

    def test_logger_bound_before_configure_follows_it(self, tmp_path: Path) -> None:
        """A logger bound before configure_logging writes with the new configuration."""
        early = get_logger(engine_id="early")
        _, path = _file_config(tmp_path)

        early.info("execution_complete", rows_processed=3)

        assert _lines(path)[0]["engine_id"] == "early"

    def test_the_hosts_structlog_configuration_is_left_alone(self, tmp_path: Path) -> None:
        """A host program's structlog configuration (Airflow's task log, a web service) is
        neither changed by LiveCalc's logging nor reaches LiveCalc's lines: they are still
        masked and written where LiveCalc's config says, the host's go to the host."""
        saved = structlog.get_config()
        host_lines: list[str] = []
        structlog.configure(
            processors=[structlog.processors.KeyValueRenderer()],
            logger_factory=lambda *_: _ListLogger(host_lines),
            cache_logger_on_first_use=False,
        )
        try:
            host = structlog.get_config()
            _, path = _file_config(tmp_path)
            get_logger().info("chunk_finished", am_token=JWT)
            structlog.get_logger().info("host_event", answer=42)

            assert host == structlog.get_config()
            assert ["eyJh...a2Vu"] == [line["am_token"] for line in _lines(path)]
            assert ["answer=42 event='host_event'"] == host_lines
        finally:
            structlog.configure(**saved)

    def test_capture_logs_catches_livecalc_events(self) -> None:
        """livecalc.log.capture_logs: LiveCalc's events as dicts, nothing written; after the
        block the chain is back."""
        with capture_logs() as entries:
            get_logger(engine_id="e1").warning("chunk_retry", attempt=2)

        assert [
            {"engine_id": "e1", "attempt": 2, "event": "chunk_retry", "log_level": "warning"}
        ] == entries

    def test_exception_becomes_stack_trace(self, tmp_path: Path) -> None:
        """log.exception records the traceback text in stack_trace."""
        _, path = _file_config(tmp_path)

        try:
            raise RuntimeError("solver did not converge")
        except RuntimeError:
            get_logger().exception("error", error_message="solver did not converge")

        line = _lines(path)[0]
        assert (line["level"], "RuntimeError" in line["stack_trace"]) == ("ERROR", True)

    def test_numpy_scalars_stay_numbers(self, tmp_path: Path) -> None:
        """numpy integers and floats are written as JSON numbers."""
        _, path = _file_config(tmp_path)

        get_logger().info("execution_complete", rows_processed=np.int64(5), npv=np.float32(0.5))

        line = _lines(path)[0]
        assert (line["rows_processed"], line["npv"]) == (5, 0.5)

    def test_console_writes_to_stderr(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The console output is stderr, never stdout."""
        configure_logging(LoggerConfig(enable_console=True))

        get_logger().info("execution_start")

        captured = capsys.readouterr()
        assert (captured.out, json.loads(captured.err)["event"]) == ("", "execution_start")

    def test_text_mode_is_one_readable_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """In text mode a line reads: time, level, event, then key=value fields."""
        configure_logging(LoggerConfig(enable_json=False))

        get_logger().warning("warning", message="slow")

        fields = capsys.readouterr().err.split()
        assert fields[1:] == ["WARNING", "warning", "message=slow"]


class TestMasking:
    """Masking of credentials in log lines."""

    @pytest.mark.parametrize(
        "key",
        ["token", "am_token", "password", "client_secret", "Authorization", "api_key", "X-Api-Key"],
    )
    def test_credential_like_fields_are_masked(self, key: str) -> None:
        """Every credential-like field shows a character or two of each end only."""
        assert mask_value(key, "very_long_secret_token_12345") == "v...5"

    def test_short_secret_becomes_stars(self) -> None:
        """A short secret is shown as ***."""
        assert mask_value("password", "hunter2") == "***"

    def test_bearer_header_keeps_its_scheme(self) -> None:
        """An Authorization header value keeps 'Bearer' and masks the token."""
        assert mask_value("authorization", f"Bearer {JWT}") == "Bearer eyJh...a2Vu"

    def test_nested_and_secretstr_values_are_masked(self) -> None:
        """Dicts, lists and SecretStr values are masked wherever they sit."""
        value = {"credentials": {"am_token": JWT}, "items": [SecretStr("abcdefghijklmnopqrst")]}

        assert mask_value("context", value) == {
            "credentials": {"am_token": "eyJh...a2Vu"},
            "items": ["a...t"],
        }

    def test_jwt_inside_other_text_is_masked(self) -> None:
        """A JWT inside an ordinary message is masked in place."""
        assert scrub_text(f"could not use {JWT} here") == "could not use eyJh...a2Vu here"

    def test_registered_secret_is_masked_anywhere(self, tmp_path: Path) -> None:
        """A registered non-JWT token is masked even inside an object's repr."""
        register_secret("opaque-token-0123456789")
        _, path = _file_config(tmp_path)

        get_logger().info("engine_init", detail=Exception("bad opaque-token-0123456789"))

        text = path.read_text()
        assert ("o...9" in text, "opaque-token-0123456789" in text) == (True, False)

    def test_credentials_object_never_shows_the_token(self, tmp_path: Path) -> None:
        """Logging an AMCredentials object writes its masked repr."""
        _, path = _file_config(tmp_path)
        creds = AMCredentials(am_url="http://am", am_token=SecretStr(JWT))

        get_logger().info("engine_init", credentials=creds, config={"am_token": JWT})

        assert JWT not in path.read_text()

    def test_token_in_exception_stack_trace_is_masked(self, tmp_path: Path) -> None:
        """A token quoted in an exception message is masked in the stack trace."""
        _, path = _file_config(tmp_path)

        try:
            raise ValueError(f"rejected {JWT}")
        except ValueError:
            get_logger().exception("error")

        text = path.read_text()
        assert (JWT in text, "eyJh...a2Vu" in text) == (False, True)

    @settings(max_examples=25, deadline=None)
    @given(token=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1))
    def test_secret_fields_show_at_most_an_eighth(self, token: str) -> None:
        """For any secret, a secret field shows at most 1/8 of it, split between its ends."""
        masked = mask_value("am_token", token)
        shown = len(masked) - 3

        assert shown <= len(token) / 8
        assert masked == "***" or masked == f"{token[: shown // 2]}...{token[-(shown // 2) :]}"

    @settings(max_examples=25, deadline=None)
    @given(
        secret=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=12, max_size=40),
        key=st.sampled_from(["am_token", "password", "client_secret", "Authorization", "apiKey"]),
        depth=st.integers(min_value=0, max_value=3),
    )
    def test_secret_never_reaches_the_line(
        self, tmp_path_factory: pytest.TempPathFactory, secret: str, key: str, depth: int
    ) -> None:
        """A secret under a credential-like key, nested at any depth, is absent from the line."""
        value: Any = {key: secret}
        for _ in range(depth):
            value = {"context": [value]}
        _, path = _file_config(tmp_path_factory.mktemp("log"))

        get_logger().info("engine_init", config=value)

        assert secret not in path.read_text(encoding="utf-8")


class TestRunId:
    """run_id binding through context variables."""

    def test_run_context_binds_every_line_and_unbinds(self, tmp_path: Path) -> None:
        """Lines inside run_context carry its run_id; lines after it carry none."""
        _, path = _file_config(tmp_path)
        log = get_logger()

        with run_context("run-42"):
            log.info("execution_start")
            log.info("execution_complete")
        log.info("after")

        assert [line.get("run_id") for line in _lines(path)] == ["run-42", "run-42", None]

    def test_worker_process_inherits_configuration_and_run_id(self, tmp_path: Path) -> None:
        """A process started inside a run logs to the same file with the same run_id."""
        _, path = _file_config(tmp_path)
        code = "from livecalc.log import get_logger; get_logger().info('worker_event')"

        with run_context("run-7"):
            subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

        assert [("worker_event", "run-7")] == [(e["event"], e["run_id"]) for e in _lines(path)]

    def test_bind_run_id_makes_a_new_id(self) -> None:
        """Without an argument, bind_run_id binds and returns a fresh 12-character id."""
        first, second = bind_run_id(), bind_run_id()

        assert (len(first), first != second) == (12, True)


class TestBufferDump:
    """The seed's buffer_dump debugging event."""

    def test_dump_is_off_by_default(self, tmp_path: Path) -> None:
        """Without enable_buffer_dump, nothing is logged even at DEBUG."""
        _, path = _file_config(tmp_path, min_level="DEBUG")

        log_buffer_content("input", np.arange(4, dtype=np.uint8))
        get_logger().debug("buffer_dump", hex_data="00")

        assert path.read_text() == ""

    def test_dump_needs_debug_level(self, tmp_path: Path) -> None:
        """Enabled dumps are still dropped when min_level is above DEBUG."""
        _, path = _file_config(tmp_path, enable_buffer_dump=True)

        log_buffer_content("input", np.arange(4, dtype=np.uint8))

        assert path.read_text() == ""

    def test_dump_is_truncated_hex(self, tmp_path: Path) -> None:
        """At DEBUG with dumps on, the first max_buffer_dump_bytes bytes are logged as hex."""
        _, path = _file_config(
            tmp_path, min_level="DEBUG", enable_buffer_dump=True, max_buffer_dump_bytes=6
        )

        log_buffer_content("input", np.arange(4, dtype=np.uint32), engine_id="esg")

        line = _lines(path)[0]
        assert {k: line[k] for k in list(line)[2:]} == {
            "event": "buffer_dump",
            "engine_id": "esg",
            "buffer_name": "input",
            "buffer_size": 16,
            "dumped_bytes": 6,
            "hex_data": "000000000100",
            "truncated": True,
        }

    def test_bytes_are_dumped_whole_under_the_limit(self, tmp_path: Path) -> None:
        """A short bytes buffer is dumped completely and not marked truncated."""
        _, path = _file_config(tmp_path, min_level="DEBUG", enable_buffer_dump=True)

        log_buffer_content("raw", b"\x01\xff")

        line = _lines(path)[0]
        assert (line["hex_data"], line["truncated"]) == ("01ff", False)


class _ListLogger:
    """A host's structlog logger: keeps each rendered line."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def msg(self, line: str) -> None:
        self.lines.append(line)

    info = warning = error = debug = msg
