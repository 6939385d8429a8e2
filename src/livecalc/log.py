"""structlog setup: the one place logging is configured.

Every module logs through ``get_logger(**bound)``, and every event goes through one processor
chain that the loggers carry themselves - structlog's global configuration is the host
program's and is never touched - re-pointed by ``configure_logging(LoggerConfig(...))``:

1. context variables (``run_id`` bound once per run with ``bind_run_id`` / ``run_context``);
2. level filtering (``min_level``) and the ``buffer_dump`` gate (DEBUG and enabled only);
3. ``timestamp`` (UTC, ISO 8601) and ``level`` (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``);
4. an exception becomes a ``stack_trace`` field;
5. masking: every credential-like field (``token``, ``am_token``, ``password``, ``secret``,
   ``authorization``, ``api_key``, ...) shows at most 1/8 of the secret (``eyJh...x9Qk`` for
   a JWT, ``***`` under 16 characters), and any JWT-looking text, ``Bearer`` value or
   registered secret inside any
   other value is masked the same way;
6. rendering as one JSON line (``timestamp``, ``level``, ``event``, then the fields) or a text
   line, written to stderr and/or a file, each line flushed.

The chain is fixed once and reads the current configuration on every event, so loggers bound
before ``configure_logging`` (at import time, in an engine's ``__init__``) follow it too.
Spawned worker processes take the configuration and the run_id from the environment
(``LIVECALC_LOG_CONFIG``, ``LIVECALC_RUN_ID``), so their lines join the run's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import traceback
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

import structlog
from pydantic import BaseModel, ConfigDict, field_validator

if TYPE_CHECKING:
    import numpy as np

from livecalc.masking import mask_value, register_secret, scrub_text

__all__ = [
    "LoggerConfig",
    "bind_run_id",
    "buffer_dump_enabled",
    "capture_logs",
    "configure_logging",
    "current_config",
    "get_logger",
    "log_buffer_content",
    "mask_value",
    "register_secret",
    "run_context",
    "scrub_text",
    "unbind_run_id",
]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
ENV_LOG_CONFIG = "LIVECALC_LOG_CONFIG"
"""Set by ``configure_logging``: the configuration a spawned worker process applies."""
ENV_RUN_ID = "LIVECALC_RUN_ID"
"""Set while a run_id is bound: the id a worker process started meanwhile binds."""
_LEVEL_NUMBERS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
# structlog passes the method name; the seed spells WARN, the stdlib WARNING.
_METHOD_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "msg": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
    "fatal": "CRITICAL",
}

_FIRST_KEYS = ("timestamp", "level", "event", "run_id")


class LoggerConfig(BaseModel):
    """The seed's ``LoggerConfig``: level, outputs, format and buffer dumps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_level: LogLevel = "INFO"
    enable_console: bool = True
    enable_file: bool = False
    log_file_path: Path | None = None
    enable_json: bool = True
    enable_buffer_dump: bool = False
    max_buffer_dump_bytes: int = 1024
    # Not in the seed: the CLI reports every failure itself, once, so its plain console
    # leaves ERROR events to the file / JSON outputs instead of printing them twice.
    console_errors: bool = True

    @field_validator("min_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        # Accept the seed's spelling ("WARN") and any case.
        if isinstance(value, str):
            value = value.upper()
            return "WARNING" if value == "WARN" else value
        return value

    def model_post_init(self, __context: Any) -> None:
        """Refuse a file output without a path, and a negative dump limit."""
        if self.enable_file and self.log_file_path is None:
            raise ValueError("LoggerConfig.enable_file is set but log_file_path is not: set both")
        if self.max_buffer_dump_bytes < 0:
            raise ValueError("LoggerConfig.max_buffer_dump_bytes must be >= 0")


class _State:
    """The live configuration the fixed processor chain reads on every event."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Until configure_logging is called (the CLI does; a notebook may not), only warnings
        # and errors reach stderr: a library used from Python stays quiet by default.
        self.config = LoggerConfig(min_level="WARNING")
        self.file: TextIO | None = None


_STATE = _State()


def _filter_level(_: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Set ``level`` and drop events under ``min_level`` (and gated buffer dumps)."""
    level = _METHOD_LEVELS.get(method_name, method_name.upper())
    config = _STATE.config
    if _LEVEL_NUMBERS.get(level, 20) < _LEVEL_NUMBERS[config.min_level]:
        raise structlog.DropEvent
    if event_dict.get("event") == "buffer_dump" and not buffer_dump_enabled():
        raise structlog.DropEvent
    event_dict["level"] = level
    event_dict["timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds")
    return event_dict


def _stack_trace(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Turn ``exc_info`` (or ``log.exception``) into a ``stack_trace`` text field."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        event_dict["stack_trace"] = "".join(traceback.format_exception(*exc_info))
    return event_dict


def _mask(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Mask every credential-like field and every secret-looking text."""
    return {key: mask_value(key, value) for key, value in event_dict.items()}


def _ordered(event_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's field order: timestamp, level, event, run_id, then the rest."""
    ordered = {key: event_dict[key] for key in _FIRST_KEYS if key in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if k not in ordered)
    return ordered


def _render(_: Any, __: str, event_dict: dict[str, Any]) -> str:
    """One JSON line, or one text line with any stack trace below it."""
    fields = _ordered(event_dict)
    if _STATE.config.enable_json:
        line = json.dumps(fields, default=str, ensure_ascii=False, separators=(",", ":"))
    else:
        stack = fields.pop("stack_trace", None)
        # Text lines are for people: a traceback only when they asked for DEBUG.
        if _STATE.config.min_level != "DEBUG":
            stack = None
        head = (
            f"{fields.pop('timestamp', '')} {fields.pop('level', ''):<7} {fields.pop('event', '')}"
        )
        rest = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{head} {rest}".rstrip() + (f"\n{str(stack).rstrip()}" if stack else "")
    # Last line of defence: a secret inside a repr or a key we did not recognise.
    return scrub_text(line)


class _Sink:
    """The logger structlog calls: writes each rendered line to stderr and/or the file."""

    def msg(self, line: str, *, is_error: bool = False) -> None:
        """Write one rendered event to the configured outputs."""
        with _STATE.lock:
            config = _STATE.config
            if config.enable_console and (config.console_errors or not is_error):
                # Looked up per line so pytest's capture and redirected stderr see it.
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
            if _STATE.file is not None:
                _STATE.file.write(line + "\n")
                _STATE.file.flush()

    def error(self, line: str) -> None:
        """Write one rendered ERROR (or CRITICAL) event."""
        self.msg(line, is_error=True)

    debug = info = warning = warn = log = msg
    critical = exception = fatal = error


_SINK = _Sink()
_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    _filter_level,
    _stack_trace,
    _mask,
    _render,
]


_WRAPPER = structlog.make_filtering_bound_logger(0)
"""No level in the wrapper: it would be frozen into loggers bound earlier (``_filter_level``
reads the level in force on every event)."""


def configure_logging(config: LoggerConfig | None = None) -> LoggerConfig:
    """Apply ``config`` (the defaults when None) to every LiveCalc logger; returns it."""
    config = config or LoggerConfig()
    new_file: TextIO | None = None
    if config.enable_file and config.log_file_path is not None:
        config.log_file_path.parent.mkdir(parents=True, exist_ok=True)
        new_file = config.log_file_path.open("a", encoding="utf-8")
    with _STATE.lock:
        old_file, _STATE.file, _STATE.config = _STATE.file, new_file, config
    if old_file is not None:
        old_file.close()
    # Worker processes are spawned, not forked: they inherit the environment, not this
    # module's state, and configure themselves from it when they import this module.
    path = config.log_file_path
    inherited = config.model_copy(update={"log_file_path": path.resolve() if path else None})
    os.environ[ENV_LOG_CONFIG] = inherited.model_dump_json()
    return config


def current_config() -> LoggerConfig:
    """The configuration in force (to hand to a worker process, which starts unconfigured)."""
    return _STATE.config


def get_logger(**initial: Any) -> Any:
    """A structlog logger with ``initial`` key-values bound."""
    # The processor list itself, not a copy: configure_logging and capture_logs change it in
    # place, and every logger bound before follows.
    logger = structlog.wrap_logger(
        _SINK,
        processors=_PROCESSORS,
        wrapper_class=_WRAPPER,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    return logger.bind(**initial)


@contextlib.contextmanager
def capture_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every LiveCalc event logged in this process inside the block, as dicts (``event``,
    ``log_level`` and the fields), instead of being written: ``structlog.testing.capture_logs``
    for LiveCalc's own chain, which structlog's global configuration does not reach."""
    from structlog.testing import LogCapture

    capture = LogCapture()
    with _STATE.lock:
        saved = list(_PROCESSORS)
        _PROCESSORS[:] = [structlog.contextvars.merge_contextvars, capture]
    try:
        yield capture.entries
    finally:
        with _STATE.lock:
            _PROCESSORS[:] = saved


def bind_run_id(run_id: str | None = None) -> str:
    """Bind ``run_id`` (a new short id when None) to every later line of this context.

    The id also goes to ``LIVECALC_RUN_ID``, so worker processes started from now on bind it.
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    structlog.contextvars.bind_contextvars(run_id=run_id)
    os.environ[ENV_RUN_ID] = run_id
    return run_id


def unbind_run_id() -> None:
    """Stop adding ``run_id`` to log lines of this context."""
    structlog.contextvars.unbind_contextvars("run_id")
    os.environ.pop(ENV_RUN_ID, None)


@contextlib.contextmanager
def run_context(run_id: str | None = None, **bound: Any) -> Iterator[str]:
    """Bind ``run_id`` (and ``bound``) for the lines logged inside the block; yields the id.

    Worker processes started inside the block bind the same ``run_id`` (through
    ``LIVECALC_RUN_ID``); the previous value is restored on the way out.
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    previous = os.environ.get(ENV_RUN_ID)
    os.environ[ENV_RUN_ID] = run_id
    try:
        with structlog.contextvars.bound_contextvars(run_id=run_id, **bound):
            yield run_id
    finally:
        if previous is None:
            os.environ.pop(ENV_RUN_ID, None)
        else:
            os.environ[ENV_RUN_ID] = previous


def buffer_dump_enabled() -> bool:
    """Whether ``buffer_dump`` events are written (enabled and ``min_level`` DEBUG)."""
    config = _STATE.config
    return config.enable_buffer_dump and config.min_level == "DEBUG"


def log_buffer_content(name: str, data: np.ndarray | bytes | memoryview, **context: Any) -> None:
    """Log the seed's ``buffer_dump`` event: the first bytes of a buffer as hex, at DEBUG.

    Nothing is computed when dumps are off, so callers need not check first.
    """
    if not buffer_dump_enabled():
        return
    limit = _STATE.config.max_buffer_dump_bytes
    import numpy as np

    if isinstance(data, np.ndarray):
        size = data.nbytes
        # Only the records that hold the first `limit` bytes are made contiguous, never
        # the whole (possibly gigabyte) buffer.
        head_records = -(-limit // data.itemsize) if data.itemsize else 0
        dumped = np.ascontiguousarray(data.reshape(-1)[:head_records]).tobytes()[:limit]
    else:
        raw = memoryview(data).cast("B")
        size, dumped = raw.nbytes, raw[:limit].tobytes()
    get_logger(**context).debug(
        "buffer_dump",
        buffer_name=name,
        buffer_size=size,
        dumped_bytes=len(dumped),
        hex_data=dumped.hex(),
        truncated=size > limit,
    )


def _inherit_from_environment() -> None:
    """In a worker process: the parent's configuration and run_id, from the environment."""
    text = os.environ.get(ENV_LOG_CONFIG)
    config = None
    if text:
        try:
            config = LoggerConfig.model_validate_json(text)
        except ValueError:
            config = None  # written by another LiveCalc version: keep the defaults
    # Not a configured worker: the quiet library default (warnings and errors), as
    # docs/logging.md promises a notebook calling livecalc.run(...).
    if config is not None:
        configure_logging(config)
    if os.environ.get(ENV_RUN_ID):
        structlog.contextvars.bind_contextvars(run_id=os.environ[ENV_RUN_ID])


_inherit_from_environment()
