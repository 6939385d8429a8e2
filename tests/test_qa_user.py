"""Regression tests for problems a user met: config files, output paths, console, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import livecalc.api
from livecalc.cli import app
from livecalc.config import load_config
from livecalc.errors import ConfigurationError
from livecalc.generate import generate_policies, write_policies
from livecalc.log import LoggerConfig, configure_logging, get_logger

PLUGIN = "livecalc.testing:register_testing_engines"


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """Each test ends with the library's default logging (the CLI reconfigures it)."""
    yield
    configure_logging(LoggerConfig(min_level="WARNING"))


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "policies.parquet"
    write_policies(path, generate_policies(200, seed=1))
    return path


def _config(tmp_path: Path, engines: list[dict[str, Any]], **extra: Any) -> Path:
    raw = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": engines,
        "output": {"path": "out/results.parquet", "summary_path": "out/summary.json"},
        "run": {"chunk_size": 50},
        **extra,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _echo(node_id: str, source: str, **kw: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "test_echo", "inputs": [source], "outputs": [f"{node_id}_out"]}


def _stderr_lines(result: Any) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


class TestConfigFile:
    def test_non_utf8_config_is_one_error_line(self, tmp_path: Path) -> None:
        """A config that is not UTF-8 text exits 2 with one line naming the file, no traceback."""
        path = tmp_path / "binary.json"
        path.write_bytes(b"\xff\xfe{")

        result = CliRunner().invoke(app, ["validate", str(path)])

        assert (2, 1) == (result.exit_code, len(_stderr_lines(result)))
        assert "binary.json: not UTF-8 text" in result.stderr

    def test_csv_path_with_default_type_is_read_as_csv(self, tmp_path: Path) -> None:
        """A *.csv data source without "type" is valid: files are read by suffix (config.md)."""
        (tmp_path / "p.csv").write_text("policy_id\n1\n")
        raw = {
            "data_sources": {"policies": {"path": "p.csv"}},
            "engines": [{"id": "a", "type": "esg", "outputs": ["s"]}],
        }

        config = load_config(raw, base_dir=tmp_path)

        assert "p.csv" == config.data_sources["policies"].path


class TestOutputPaths:
    @pytest.mark.parametrize(
        ("key", "value", "fragment"),
        [
            ("output.path", "policies.parquet/r.parquet", "is a file, not a folder"),
            ("output.path", "out", "is a folder, not a file"),
            ("output.summary_path", "out", "is a folder, not a file"),
        ],
    )
    def test_unwritable_output_is_a_config_error(
        self, tmp_path: Path, policies: Path, key: str, value: str, fragment: str
    ) -> None:
        """An output path that cannot be a file fails validation (exit 2), before any work."""
        (tmp_path / "out").mkdir()
        config = _config(tmp_path, [_echo("a", "policies")])

        result = CliRunner().invoke(app, ["run", str(config), "--set", f"{key}={value}"])

        assert 2 == result.exit_code
        assert f"{key}: " in result.stderr and fragment in result.stderr
        assert [] == list((tmp_path / "out").iterdir())


class TestConsole:
    def test_engine_config_error_is_one_line(self, tmp_path: Path, policies: Path) -> None:
        """An engine's config error is one stderr line: no logged traceback, no duplicate."""
        config = _config(tmp_path, [{"id": "esg", "type": "esg", "outputs": ["s"]}])

        result = CliRunner().invoke(app, ["run", str(config), "--set", "esg.outerr=1"])

        assert 2 == result.exit_code
        assert ["error: engines[0].config.outerr: unknown key (did you mean 'outer'?)"] == (
            _stderr_lines(result)
        )

    def test_brackets_in_errors_are_printed(self, tmp_path: Path, policies: Path) -> None:
        """A failure message with [brackets] is printed as text, not eaten as rich markup."""
        node = {**_echo("b", "policies"), "type": "test_fail_n", "config": {"n": 99}}
        config = _config(tmp_path, [node])

        result = CliRunner().invoke(app, ["run", str(config), "--no-progress"])

        assert 1 == result.exit_code
        assert "b failed: [b] engine failed" in result.stderr
        assert "Traceback" not in result.stderr

    def test_text_lines_show_stack_traces_only_at_debug(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A text-mode error line leaves its stack trace out unless the level is DEBUG."""
        seen = []
        for level in ("INFO", "DEBUG"):
            configure_logging(LoggerConfig(min_level=level, enable_json=False))
            try:
                raise ValueError("boom")
            except ValueError:
                get_logger().exception("error")
            seen.append("Traceback" in capsys.readouterr().err)

        assert [False, True] == seen

    def test_console_errors_off_keeps_errors_in_the_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """console_errors=False drops ERROR events from stderr only; warnings still show."""
        log_file = tmp_path / "run.log"
        configure_logging(
            LoggerConfig(enable_file=True, log_file_path=log_file, console_errors=False)
        )

        get_logger().error("error", error_message="bad")
        get_logger().warning("warning", message="slow")

        events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
        logged = [json.loads(line)["event"] for line in log_file.read_text().splitlines()]
        assert (["warning"], ["error", "warning"]) == (events, logged)


class TestSummaryFile:
    def test_summary_has_the_mode_of_the_results(self, tmp_path: Path, policies: Path) -> None:
        """summary.json gets the same permissions as the Parquet file beside it, not 0600."""
        config = _config(tmp_path, [_echo("a", "policies")])

        livecalc.api.run(config).raise_for_status()

        modes = [stat.S_IMODE((tmp_path / "out" / n).stat().st_mode) for n in ("results.parquet", "summary.json")]
        assert modes[0] == modes[1]


class TestInterrupt:
    def test_ctrl_c_stops_running_nodes_and_writes_nothing(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """Ctrl-C stops a chunked node at its next chunk; its output file is not written."""
        node = {**_echo("a", "policies"), "type": "test_sleep", "config": {"seconds": 0.02}}
        config = _config(tmp_path, [node], run={"chunk_size": 5})
        chunks: list[int] = []

        def interrupt(event: str, node_id: str, **info: Any) -> None:
            if event == "chunk_finished":
                chunks.append(info["chunk"])
                if info["chunk"] == 0:
                    os.kill(os.getpid(), signal.SIGINT)

        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with pytest.raises(KeyboardInterrupt):
                livecalc.api.run(config, progress=interrupt)
        finally:
            signal.signal(signal.SIGINT, previous)

        assert len(chunks) < 40
        assert not (tmp_path / "out" / "results.parquet").exists()


class TestLoadConfigErrors:
    def test_unknown_engine_in_set_names_the_ids(self, tmp_path: Path, policies: Path) -> None:
        """--set for an unknown engine id is refused, listing the ids."""
        config = _config(tmp_path, [_echo("a", "policies")])

        with pytest.raises(ConfigurationError) as info:
            load_config(config, overrides=["nosuch.x=1"])

        assert "no engine with id 'nosuch'; ids: a" in str(info.value)
