"""Reading a config file: huge, endless and non-regular files are refused before being read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from livecalc.errors import ConfigurationError
from livecalc.pipeline._config_files import MAX_CONFIG_BYTES, read_config_json

LIVECALC = str(Path(sys.executable).with_name("livecalc"))


def _validate(path: str) -> subprocess.CompletedProcess[str]:
    """``livecalc validate PATH`` as a user runs it (a hang fails the test at the timeout)."""
    return subprocess.run(
        [LIVECALC, "validate", path], capture_output=True, text=True, timeout=60, check=False
    )


class TestConfigSize:
    """A config is at most MAX_CONFIG_BYTES (16 MiB)."""

    def test_dev_zero_is_refused_at_once(self) -> None:
        """validate /dev/zero exits 2 with one line saying it is not a regular file."""
        done = _validate("/dev/zero")

        assert 2 == done.returncode
        assert "/dev/zero: not a regular file" in done.stderr
        assert "Traceback" not in done.stderr

    def test_fifo_is_refused_without_waiting_for_a_writer(self, tmp_path: Path) -> None:
        """A named pipe is refused at once (opening it for reading would block)."""
        fifo = tmp_path / "config.json"
        os.mkfifo(fifo)

        done = _validate(str(fifo))

        assert 2 == done.returncode
        assert "not a regular file" in done.stderr

    def test_folder_is_refused(self, tmp_path: Path) -> None:
        """A folder given as the config is named as a folder."""
        with pytest.raises(ConfigurationError, match="is a folder"):
            read_config_json(tmp_path)

    def test_file_over_the_limit_is_refused_with_the_fix(self, tmp_path: Path) -> None:
        """A 17 MiB (sparse) file is refused naming the limit and where data belongs."""
        big = tmp_path / "big.json"
        with big.open("wb") as f:
            f.truncate(MAX_CONFIG_BYTES + 2**20)

        with pytest.raises(ConfigurationError) as info:
            read_config_json(big)

        assert "16 MiB" in str(info.value) and "Parquet or CSV" in str(info.value)

    def test_file_at_the_limit_is_read(self, tmp_path: Path) -> None:
        """A config of exactly MAX_CONFIG_BYTES (padded with spaces) is read."""
        text = '{"engines": []}'
        path = tmp_path / "padded.json"
        path.write_text(text + " " * (MAX_CONFIG_BYTES - len(text)))

        assert {"engines": []} == read_config_json(path)
