"""``LocalRunContext``: the ``RunContext`` of a run started from the CLI or the Python API."""

from __future__ import annotations

import abc
import json
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

from livecalc.log import get_logger
from livecalc.masking import mask_value, scrub_text

__all__ = ["BaseRunContext", "LocalRunContext", "check_run_id", "new_run_id"]


def new_run_id() -> str:
    """A fresh run id: 12 hex digits."""
    return uuid.uuid4().hex[:12]


class BaseRunContext(abc.ABC):
    """What every ``RunContext`` holds: a checked run id, the attempt (>= 1) and the state.

    A scheduler's adapter subclasses it and writes ``log``; ``log_text`` gives the line to
    write, with every secret LiveCalc knows masked.
    """

    def __init__(
        self, run_id: str, attempt: int = 1, state: MutableMapping[str, Any] | None = None
    ) -> None:
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, not {attempt}")
        self._run_id = check_run_id(run_id)
        self._attempt = attempt
        self._state: MutableMapping[str, Any] = state if state is not None else {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(run_id={self._run_id!r}, attempt={self._attempt})"

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def state(self) -> MutableMapping[str, Any]:
        return self._state

    @abc.abstractmethod
    def log(self, level: str, event: str, **fields: Any) -> None:
        """One log line for the scheduler's log (``log_text`` gives it, masked)."""

    @staticmethod
    def log_text(event: str, fields: Mapping[str, Any]) -> str:
        """``event``, then ``fields`` as JSON (sorted keys), credentials masked."""
        if not fields:
            return event
        masked = {key: mask_value(key, value) for key, value in fields.items()}
        return scrub_text(f"{event} {json.dumps(masked, default=str, sort_keys=True)}")


class LocalRunContext(BaseRunContext):
    """A run with its own id (new unless given), on its first attempt, logging to LiveCalc's
    structured log only (``log`` adds nothing: the runner's own lines are already there)."""

    def __init__(
        self,
        run_id: str | None = None,
        attempt: int = 1,
        state: MutableMapping[str, Any] | None = None,
    ) -> None:
        super().__init__(new_run_id() if run_id is None else run_id, attempt, state)

    def log(self, level: str, event: str, **fields: Any) -> None:
        get_logger().debug("context_log", level=level, message=event, **fields)


_RUN_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def check_run_id(run_id: str) -> str:
    """``run_id`` when it is usable as a folder name (1-128 of ``A-Z a-z 0-9 _ . -``, not
    starting with a dot); ValueError saying what is wrong otherwise."""
    if not (1 <= len(run_id) <= 128) or run_id[0] == "." or not set(run_id) <= _RUN_ID_CHARS:
        # A long id is quoted by its start: the message stays one short line.
        shown = repr(run_id[:40]) + (f"... ({len(run_id)} characters)" if len(run_id) > 40 else "")
        raise ValueError(
            f"run id {shown}: use 1 to 128 letters, digits, '_', '.' or '-', not starting "
            "with '.' (it names the run's checkpoint folder)"
        )
    return run_id
