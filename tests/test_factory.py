"""EngineFactory: registration, creation, aliases, unknown types and entry-point plug-ins."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from livecalc.errors import ConfigurationError
from livecalc.runtime.factory import BUILTIN_ALIASES, ENTRY_POINT_GROUP, EngineFactory
from livecalc.testing import (
    TESTING_ENGINE_TYPES,
    EchoEngine,
    SleepEngine,
    register_testing_engines,
)


def _entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


class TestEngineFactory:
    def test_builtins_are_registered(self) -> None:
        """esg, projection and solver are known without any plug-in."""

        factory = EngineFactory(discover=False)

        assert {"esg", "projection", "solver"} <= set(factory.list_engine_types())

    def test_seed_aliases_resolve(self) -> None:
        """The seed's type names are accepted as aliases and not listed as types."""

        factory = EngineFactory(discover=False)

        assert {"python_esg": "esg", "cpp_projection": "projection", "python_solver": "solver"} == (
            BUILTIN_ALIASES
        )
        assert all(factory.is_registered(alias) for alias in BUILTIN_ALIASES)
        assert "projection" == factory.canonical_type("cpp_projection")

    def test_register_class_and_create(self) -> None:
        """A registered class creates a fresh, uninitialised engine on every call."""

        factory = EngineFactory(discover=False)
        factory.register_engine("echo", EchoEngine)
        first, second = factory.create_engine("echo"), factory.create_engine("echo")

        assert (True, True) == (isinstance(first, EchoEngine), first is not second)
        assert (False, True) == (first.is_initialized, factory.is_registered("echo"))

    def test_register_import_path(self) -> None:
        """A "module:attr" string is imported only when the engine is created."""

        factory = EngineFactory(discover=False)
        factory.register_engine("sleepy", "livecalc.testing:SleepEngine")

        assert isinstance(factory.create_engine("sleepy"), SleepEngine)

    def test_register_callable(self) -> None:
        """A zero-argument callable works as a creator."""

        factory = EngineFactory(discover=False)
        factory.register_engine("made", lambda: EchoEngine())

        assert isinstance(factory.create_engine("made"), EchoEngine)

    def test_invalid_type_name_refused(self) -> None:
        """Type names are letters, digits, '_' and '-'."""

        factory = EngineFactory(discover=False)
        with pytest.raises(ConfigurationError) as info:
            factory.register_engine("my engine!", EchoEngine)

        assert "'my engine!'" in str(info.value)

    def test_unknown_type_lists_known_ones(self) -> None:
        """An unknown type says which types exist and suggests the closest one."""

        factory = EngineFactory(discover=False)
        with pytest.raises(ConfigurationError) as info:
            factory.create_engine("projecton")

        message = str(info.value)
        assert "'projecton'" in message and "did you mean 'projection'" in message
        assert f"known types: {', '.join(factory.list_engine_types())}" in message

    def test_unloadable_plugin_names_its_target(self) -> None:
        """A registered import path that fails to load is a ConfigurationError naming it."""

        factory = EngineFactory(discover=False)
        factory.register_engine("broken", "no_such_module_xyz:Engine")
        with pytest.raises(ConfigurationError) as info:
            factory.create_engine("broken")

        assert "no_such_module_xyz:Engine" in str(info.value)

    def test_entry_points_register_plugins(self) -> None:
        """Entry points of the livecalc.engines group become types named after them."""

        builtins = EngineFactory(discover=False).list_engine_types()
        factory = EngineFactory(
            entry_points_=[
                _entry_point("third_party_echo", "livecalc.testing:EchoEngine"),
                _entry_point("esg", "livecalc.engines.esg:ESGEngine"),  # our own: skipped
            ]
        )

        assert sorted([*builtins, "third_party_echo"]) == factory.list_engine_types()
        assert isinstance(factory.create_engine("third_party_echo"), EchoEngine)

    def test_registering_a_builtin_alias_name_overrides_the_alias(self) -> None:
        """Registering under an alias's name makes it a type of its own."""

        factory = EngineFactory(discover=False)
        factory.register_engine("python_esg", EchoEngine)

        assert isinstance(factory.create_engine("python_esg"), EchoEngine)

    def test_installed_entry_points_are_discovered(self) -> None:
        """discover=True reads the installed livecalc.engines group (our built-ins at least)."""

        factory = EngineFactory()

        assert {"esg", "projection", "solver"} <= set(factory.list_engine_types())

    def test_installed_entry_points_are_read_once_per_process(self) -> None:
        """A process's second EngineFactory reads no package metadata (the first one read
        every installed package's entry_points.txt), and knows the same types."""
        code = (
            "import sys\n"
            "from livecalc.runtime.factory import EngineFactory\n"
            "reads = []\n"
            "def hook(event, args):\n"
            "    if event == 'open' and str(args[0]).endswith('entry_points.txt'):\n"
            "        reads.append(args[0])\n"
            "sys.addaudithook(hook)\n"
            "first = EngineFactory().list_engine_types(); n = len(reads)\n"
            "second = EngineFactory().list_engine_types()\n"
            "print(n > 0, len(reads) - n, first == second)\n"
        )

        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )

        assert "True 0 True" == done.stdout.strip(), done.stderr

    def test_register_testing_engines(self) -> None:
        """register_testing_engines adds every fake under its test_* name."""

        factory = EngineFactory(discover=False)
        register_testing_engines(factory)

        created = {name: type(factory.create_engine(name)) for name in TESTING_ENGINE_TYPES}

        assert TESTING_ENGINE_TYPES == created
