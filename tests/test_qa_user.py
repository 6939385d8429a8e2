"""Regression tests for problems a user met: config files, output paths, console, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import livecalc.pipeline.api
from livecalc.cli.app import app
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.io.parquet import ParquetReader, ParquetWriter, PolicyData
from livecalc.log import ENV_LOG_CONFIG, LoggerConfig, configure_logging, get_logger
from livecalc.pipeline.loading import load_config
from livecalc.runtime.buffers import RESULT_DTYPE
from livecalc.runtime.factory import EngineFactory
from livecalc.testing import EchoEngine, register_testing_engines

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

    def test_duplicate_key_is_refused(self, tmp_path: Path) -> None:
        """A key given twice in one JSON object is an error, not a silent last-one-wins."""
        path = tmp_path / "dup.json"
        path.write_text('{"engines": [], "run": {"chunk_size": 5, "chunk_size": 6}}')

        with pytest.raises(ConfigurationError) as info:
            load_config(path)

        assert "key 'chunk_size' appears twice in one object" in str(info.value)

    def test_folder_as_data_source_is_named(self, tmp_path: Path) -> None:
        """A data source path that is a folder is reported as a folder, not as missing."""
        raw = {
            "data_sources": {"policies": {"path": "."}},
            "engines": [{"id": "a", "type": "esg", "outputs": ["s"]}],
        }

        with pytest.raises(ConfigurationError) as info:
            load_config(raw, base_dir=tmp_path)

        assert f"data_sources.policies.path: '{tmp_path}' is a folder" in str(info.value)

    def test_empty_policy_file_is_bad_input(self, tmp_path: Path) -> None:
        """A policy file with no rows exits 2 naming the source, before anything runs."""
        empty = PolicyData(generate_policies(1, seed=1).records[:0])
        write_policies(tmp_path / "policies.parquet", empty)
        config = _config(tmp_path, [_echo("a", "policies")])

        result = CliRunner().invoke(app, ["run", str(config), "--no-progress"])

        assert 2 == result.exit_code
        assert "data_sources.policies: policy file" in result.stderr
        assert "has no rows" in result.stderr
        assert not (tmp_path / "out").exists()

    def test_guessed_kind_error_suggests_kind(self, tmp_path: Path, policies: Path) -> None:
        """Scenarios under a name without "scenario" are read as policies; the error says
        the kind was guessed and how to state it."""
        raw: dict[str, Any] = {
            "data_sources": {"policies": {"path": "policies.parquet", "kind": "scenarios"}},
            "engines": [{"id": "a", "type": "esg", "outputs": ["s"]}],
        }

        with pytest.raises(ConfigurationError) as stated:
            livecalc.pipeline.api.run(raw, base_dir=tmp_path)
        raw["data_sources"] = {"scenario_file": {"path": "policies.parquet"}}
        with pytest.raises(ConfigurationError) as guessed:
            livecalc.pipeline.api.run(raw, base_dir=tmp_path)

        assert "guessed from the name" not in str(stated.value)
        assert "data_sources.scenario_file: scenario file" in str(guessed.value)
        assert 'add "kind": "policies" to the source)' in str(guessed.value)

    def test_semicolon_csv_says_comma_separated(self, tmp_path: Path) -> None:
        """A semicolon-separated CSV is refused with a hint about the separator."""
        path = tmp_path / "p.csv"
        path.write_text("policy_id;age;gender\n1;30;0\n")

        with pytest.raises(ConfigurationError) as info:
            ParquetReader().read_policies(path)

        assert "CSV files must be comma-separated" in str(info.value)


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
        lines = _stderr_lines(result)
        assert 1 == len(lines)
        assert lines[0].startswith(
            "error: engines[0].config.outerr: unknown key (did you mean 'outer'?); known keys"
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

        livecalc.pipeline.api.run(config).raise_for_status()

        modes = [
            stat.S_IMODE((tmp_path / "out" / n).stat().st_mode)
            for n in ("results.parquet", "summary.json")
        ]
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
                livecalc.pipeline.api.run(config, progress=interrupt)
        finally:
            signal.signal(signal.SIGINT, previous)

        assert len(chunks) < 40
        assert not (tmp_path / "out" / "results.parquet").exists()


class TestValidateEngines:
    def test_validate_reports_engine_config_problems(self, tmp_path: Path) -> None:
        """validate initialises the engines, so their own config errors exit 2 by JSON path."""
        esg = [{"id": n, "type": "esg", "outputs": [f"s{n}"]} for n in ("a", "b")]
        config = _config(tmp_path, esg, data_sources={}, output=None)

        result = CliRunner().invoke(
            app, ["validate", str(config), "--set", "a.outerr=1", "--set", "b.model=x"]
        )

        assert 2 == result.exit_code
        assert "2 engine config problems:" in result.stderr
        assert "engines[0].config.outerr: unknown key" in result.stderr
        assert "engines[1].config.model: 'x' is not a model" in result.stderr

    def test_no_engines_checks_the_file_alone(self, tmp_path: Path) -> None:
        """validate --no-engines leaves the engines' own settings unchecked."""
        config = _config(
            tmp_path,
            [{"id": "esg", "type": "esg", "outputs": ["s"]}],
            data_sources={},
            output=None,
        )

        result = CliRunner().invoke(
            app, ["validate", str(config), "--no-engines", "--set", "esg.outerr=1"]
        )

        assert 0 == result.exit_code


# A syntactically real JWT (header {"alg":"HS256","typ":"JWT"}); its signature is made up.
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0"
    ".c2lnbmF0dXJlX3BhcnRfb2ZfdGhlX3Rva2Vu"
)


class TestTokensInErrors:
    def test_token_pasted_as_a_value_is_masked_in_the_error(self, tmp_path: Path) -> None:
        """A token given where a number belongs is quoted back masked, with --debug too."""
        config = _config(tmp_path, [{"id": "esg", "type": "esg", "outputs": ["s"]}])

        result = CliRunner().invoke(
            app, ["run", str(config), "--debug", "--set", f"run.chunk_size={JWT}"]
        )

        assert 2 == result.exit_code
        assert JWT not in result.stderr and "eyJh...a2Vu" in result.stderr

    def test_token_in_a_node_error_is_masked_in_the_summary_file(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """A failed node whose error quotes a token shows it masked in summary.json."""
        factory = EngineFactory()
        register_testing_engines(factory)
        factory.register_engine("leaky", _LeakyEngine)
        config = _config(tmp_path, [{**_echo("b", "policies"), "type": "leaky"}])

        result = livecalc.pipeline.api.run(config, factory=factory)

        assert "failed" == result.status["b"]
        assert JWT in str(result.nodes["b"].error)
        assert JWT not in (tmp_path / "out" / "summary.json").read_text()


class _LeakyEngine(EchoEngine):
    """Fails every chunk with an error that quotes a token."""

    def run_chunk(self, input_buffer: Any, output_buffer: Any) -> Any:
        """Raise with the token in the message."""
        raise RuntimeError(f"server said: bad token {JWT}")


class TestAmServe:
    def test_port_in_use_is_one_error_line(self, tmp_path: Path) -> None:
        """am serve on a port another socket holds: exit 2 and one line naming the port."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]

            result = CliRunner().invoke(
                app,
                ["am", "serve", "--root", str(tmp_path), "--port", str(port)],
                env={"LIVECALC_AM_SECRET": "s" * 40},
            )

        assert (2, 1) == (result.exit_code, len(_stderr_lines(result)))
        assert f"--port {port}: cannot listen there" in result.stderr


class TestLoadConfigErrors:
    def test_unknown_engine_in_set_names_the_ids(self, tmp_path: Path, policies: Path) -> None:
        """--set for an unknown engine id is refused, listing the ids."""
        config = _config(tmp_path, [_echo("a", "policies")])

        with pytest.raises(ConfigurationError) as info:
            load_config(config, overrides=["nosuch.x=1"])

        assert "no engine with id 'nosuch'; ids: a" in str(info.value)


class TestUnwritablePaths:
    def test_generate_under_a_file_is_one_error_line(self, tmp_path: Path) -> None:
        """generate into a path whose folder is a file: exit 2, one line, no traceback."""
        (tmp_path / "f").write_text("")

        result = CliRunner().invoke(
            app, ["generate", "policies", str(tmp_path / "f" / "p.parquet"), "-n", "5"]
        )

        assert (2, 1) == (result.exit_code, len(_stderr_lines(result)))
        assert "a file is where a folder is needed" in result.stderr

    def test_log_file_under_a_file_is_one_error_line(self, tmp_path: Path) -> None:
        """run --log-file into a path whose folder is a file: exit 2, one line."""
        (tmp_path / "f").write_text("")

        result = CliRunner().invoke(
            app, ["run", str(tmp_path / "c.json"), "--log-file", str(tmp_path / "f" / "log")]
        )

        assert (2, 1) == (result.exit_code, len(_stderr_lines(result)))

    def test_writer_refuses_a_folder_path(self, tmp_path: Path) -> None:
        """ParquetWriter on a folder's path is a ConfigurationError naming it."""
        with pytest.raises(ConfigurationError) as info:
            ParquetWriter(tmp_path, RESULT_DTYPE)

        assert f"cannot write {tmp_path}: it is a folder" in str(info.value)


class TestLibraryLogging:
    def test_import_keeps_the_quiet_default(self) -> None:
        """Importing livecalc (no CLI, no worker environment) logs warnings and up only."""
        env = {k: v for k, v in os.environ.items() if k != ENV_LOG_CONFIG}
        code = "import livecalc, livecalc.log as l; print(l.current_config().min_level)"

        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )

        assert "WARNING" == out.stdout.strip()
