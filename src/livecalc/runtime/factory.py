"""EngineFactory: creates engines by type name; finds plug-ins through entry points.

Built-in types are registered by import path, so importing livecalc does not import numba
kernels it may not need. Third-party engines publish an entry point in the
``livecalc.engines`` group (``my_engine = "my_pkg.engine:MyEngine"``); the entry point's name
is the type name used in configs. The installed entry points are read once per process (reading
every installed package's metadata takes tens of milliseconds): a plug-in installed while a
process runs is found by the next process.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from livecalc.errors import ConfigurationError
from livecalc.runtime.engine import ICalcEngine, as_engine

__all__ = ["BUILTIN_ALIASES", "ENTRY_POINT_GROUP", "EngineFactory"]

ENTRY_POINT_GROUP = "livecalc.engines"

_BUILTINS = {
    "esg": "livecalc.engines.esg:ESGEngine",
    "projection": "livecalc.engines.projection:ProjectionEngine",
    "solver": "livecalc.engines.solver:SolverEngine",
    "nested": "livecalc.engines.nested:NestedEngine",
    "native": "livecalc.runtime.native:NativeEngine",
}

BUILTIN_ALIASES = {
    "python_esg": "esg",
    "cpp_projection": "projection",
    "python_solver": "solver",
}
"""The seed's engine type names, accepted so configs written for the original keep working."""

EngineCreator = Callable[[], Any]


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@functools.cache
def _installed() -> tuple[EntryPoint, ...]:
    """The installed ``livecalc.engines`` entry points, read once per process."""
    return tuple(entry_points(group=ENTRY_POINT_GROUP))


class EngineFactory:
    """Registry of engine types: ``create_engine("projection")`` returns a fresh engine."""

    def __init__(
        self, discover: bool = True, entry_points_: Iterable[EntryPoint] | None = None
    ) -> None:
        """Args:
        discover: also register the plug-ins of the ``livecalc.engines`` entry-point group.
        entry_points_: plug-ins to register instead of the installed ones (for tests).
        """
        self._creators: dict[str, EngineCreator | str] = dict(_BUILTINS)
        self._aliases: dict[str, str] = dict(BUILTIN_ALIASES)
        self._lock = threading.Lock()
        if entry_points_ is not None:
            self._register_entry_points(entry_points_)
        elif discover:
            self._register_entry_points(_installed())

    def _register_entry_points(self, eps: Iterable[EntryPoint]) -> None:
        for ep in eps:
            if ep.name in _BUILTINS and ep.value == _BUILTINS[ep.name]:
                continue  # our own package's entry points
            self._creators[ep.name] = ep.value

    def register_engine(self, engine_type: str, creator: EngineCreator | str) -> None:
        """Register ``creator`` (a class, zero-argument callable or "module:attr") as a type."""
        if not engine_type or not engine_type.replace("_", "").replace("-", "").isalnum():
            raise ConfigurationError(
                f"engine type {engine_type!r}: use letters, digits, '_' and '-' only"
            )
        with self._lock:
            self._creators[engine_type] = creator
            self._aliases.pop(engine_type, None)

    def canonical_type(self, engine_type: str) -> str:
        """The registered name behind ``engine_type`` (aliases resolved)."""
        return self._aliases.get(engine_type, engine_type)

    def is_registered(self, engine_type: str) -> bool:
        """Whether ``engine_type`` (or its alias) can be created."""
        return self.canonical_type(engine_type) in self._creators

    def list_engine_types(self) -> list[str]:
        """Every registered type name, sorted (aliases not included)."""
        return sorted(self._creators)

    def config_file_keys(self, engine_type: str) -> tuple[str, ...] | None:
        """The file-valued config keys ``engine_type`` declares (``ICalcEngine.config_file_keys``),
        or None when it declares none or cannot be loaded (its creation reports why)."""
        creator = self._creators.get(self.canonical_type(engine_type))
        if isinstance(creator, str):
            try:
                creator = _load(creator)
            except Exception:
                return None
        keys = getattr(creator, "config_file_keys", None)
        if isinstance(keys, tuple | list) and all(isinstance(k, str) for k in keys):
            return tuple(keys)
        return None

    def create_engine(self, engine_type: str) -> ICalcEngine:
        """A new, uninitialised engine of ``engine_type``.

        Raises:
            ConfigurationError: the type is unknown (the message lists the known ones) or its
                plug-in cannot be loaded.
        """
        name = self.canonical_type(engine_type)
        creator = self._creators.get(name)
        if creator is None:
            known = ", ".join(self.list_engine_types())
            close = difflib.get_close_matches(engine_type, [*self._creators, *self._aliases], 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigurationError(
                f"unknown engine type {engine_type!r}{hint}; known types: {known}"
            )
        if isinstance(creator, str):
            try:
                creator = _load(creator)
            except Exception as exc:
                raise ConfigurationError(
                    f"engine type {engine_type!r}: cannot load {creator!r}: {exc}"
                ) from exc
        assert callable(creator)
        return as_engine(creator())
