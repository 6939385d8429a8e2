"""Loading a config: read, override, validate, and report every problem at once.

``load_config`` reads a file (or takes a dict), applies ``--set`` overrides, validates the
shapes with pydantic (``livecalc.pipeline.config``) and the meaning with the engine graph
(``livecalc.pipeline.graph``: known engine types, unique ids, no cycles, every input produced,
no output produced twice, data files present), and raises one ``ConfigurationError`` listing
every problem by JSON path with its fix.

Relative paths (data sources, outputs) resolve against the config file's folder.
"""

from __future__ import annotations

import difflib
import graphlib
import importlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from livecalc.errors import ConfigurationError
from livecalc.masking import redact_urls, scrub_text
from livecalc.pipeline._config_files import (
    apply_overrides,
    given_path,
    parse_override,
    read_config_json,
    same_file,
    unwritable,
)
from livecalc.pipeline.config import DataSource, EngineNode, PipelineConfig
from livecalc.pipeline.graph import EngineGraph, graph_problems
from livecalc.pipeline.operations import ALERT_TYPES, operations_problems
from livecalc.runtime.factory import BUILTIN_ALIASES, EngineFactory

__all__ = ["apply_overrides", "format_problems", "given_path", "load_config", "parse_override"]


def format_problems(problems: Sequence[str]) -> str:
    """One message listing every problem, one per line, with no secret of a URL or token
    and no character a terminal or log file cannot take."""
    problems = [printable(redact_urls(scrub_text(p))) for p in problems]
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems in the config:\n" + "\n".join(f"  {p}" for p in problems)


def printable(text: str) -> str:
    """``text`` on one line: control characters, lone surrogates and other characters that
    are not printable written as Python escapes (``\\x00``, ``\\ud800``, ``\\n``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _json_path(loc: Sequence[int | str]) -> str:
    if len(loc) > 2 and loc[0] == "alerts" and loc[2] in ALERT_TYPES:
        # pydantic names the tagged union's branch (alerts[0].webhook.url): no JSON level.
        loc = [*loc[:2], *loc[3:]]
    out = ""
    for part in loc:
        if part == "[key]":
            continue  # pydantic's mark of an error in a dict's key, said after the path
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_SHOWN_INPUT_CHARS = 200
"""The most of a bad value a problem quotes (a long expression or list is cut)."""


def _shown(value: Any) -> str:
    """A bad value as a problem quotes it: secrets of its URLs and tokens masked, cut short."""
    text = scrub_text(repr(_redacted(value)))
    if len(text) > _SHOWN_INPUT_CHARS:
        text = text[:_SHOWN_INPUT_CHARS] + f"... ({len(text)} characters)"
    return text


def _redacted(value: Any) -> Any:
    """``value`` with each string's URLs redacted (a URL running to the string's end)."""
    if isinstance(value, str):
        return redact_urls(value, whole=True)
    if isinstance(value, Mapping):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def _pydantic_problems(exc: ValidationError, prefix: Sequence[int | str] = ()) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = [*prefix, *err["loc"]]
        path = _json_path(loc)
        if loc and loc[-1] == "[key]":
            path += " (the key)"
        kind = err["type"]
        if kind == "extra_forbidden":
            problems.append(f"{path}: unknown key; remove it or check its spelling")
        elif kind == "missing":
            problems.append(f"{path}: required key is missing; add it")
        elif kind == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            problems.append(f"{path}: {_shown(err['input'])} is not allowed; use one of {expected}")
        else:
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{path}: {message} (got {_shown(err['input'])})")
    return problems


def load_config(
    source: str | Path | Mapping[str, Any] | PipelineConfig,
    overrides: Sequence[str] = (),
    factory: EngineFactory | None = None,
    base_dir: str | Path | None = None,
    check_files: bool = True,
) -> PipelineConfig:
    """Parse and validate a pipeline config; raise one ConfigurationError listing every problem.

    Args:
        source: a config file path, its parsed JSON, or an already-validated config.
        overrides: ``engine.key=value`` strings (the CLI's ``--set``).
        factory: resolves engine types (default: a discovering ``EngineFactory``).
        base_dir: folder for relative paths of a dict config (default: the current folder).
        check_files: also check that data source files exist.
    """
    config_file: Path | None = None
    if isinstance(source, PipelineConfig):
        # Validated again (cheap), so its plugins register with this factory too.
        raw: dict[str, Any] = source.model_dump(exclude={"base_dir"})
        folder = Path(source.base_dir)
    elif isinstance(source, Mapping):
        raw = dict(source)
        folder = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        path = Path(source)
        raw = read_config_json(path)
        config_file = path
        folder = path.resolve().parent
    raw = apply_overrides(raw, overrides)
    raw.pop("$schema", None)  # editors' schema pointer
    raw["base_dir"] = str(Path(base_dir).resolve() if base_dir is not None else folder.resolve())
    _check_folder_name(raw["base_dir"], config_file)

    problems: list[str] = []
    config: PipelineConfig | None = None
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
    nodes = _valid_nodes(raw) if config is None else list(enumerate(config.engines))
    sources = _valid_sources(raw) if config is None else dict(config.data_sources)
    factory = factory if factory is not None else EngineFactory()
    problems.extend(_plugin_problems(raw.get("plugins"), factory))
    problems.extend(_type_problems(nodes, factory))
    problems.extend(graph_problems(nodes, sources))
    problems.extend(_required_input_problems(nodes, sources, factory))
    problems.extend(_uri_problems(sources, raw.get("output")))
    if check_files:
        local = {name: src for name, src in sources.items() if not _URI.match(src.path)}
        problems.extend(_file_problems(local, Path(raw["base_dir"])))
    if config is not None:
        problems.extend(_output_problems(config, nodes, sources))
        problems.extend(_collision_problems(config, config_file, factory))
        problems.extend(operations_problems(config))
        if check_files:
            problems.extend(_output_path_problems(config))
    reported = {p.split(": ", 1)[0] for p in problems}
    problems += [p for p in _not_text(raw) if p.split(": ", 1)[0] not in reported]
    if problems:
        raise ConfigurationError(format_problems(problems))
    assert config is not None
    return config


def _check_folder_name(base_dir: str, config_file: Path | None) -> None:
    """Refuse a config folder whose name is not UTF-8 (Python holds such bytes as lone
    surrogates): the Parquet library, the run store and JSON cannot take its paths."""
    try:
        base_dir.encode("utf-8")
    except UnicodeEncodeError:
        where = ascii(str(config_file)) if config_file is not None else "the config"
        raise ConfigurationError(
            f"{where}: the folder {base_dir!a} has a name that is not UTF-8, which "
            "the Parquet files and the run store cannot name; rename the folder or move the "
            "config and its data"
        ) from None


_OWN_TEXT_CHECKS = ("checks", "sla", "alerts", "base_dir")
"""Top-level keys whose models refuse text that is not Unicode themselves, at its path."""


def _not_text(value: Any, path: str = "") -> Iterator[str]:
    """A problem for every key or string of the config that holds a lone surrogate (JSON's
    ``"\\ud800"``): no file, store or log can hold it as text. The path is written with
    such characters escaped (``\\ud800``), so the message can be printed."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not path and key in _OWN_TEXT_CHECKS:
                continue
            shown = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
            where = f"{path}.{shown}" if path else shown
            if isinstance(key, str) and not _is_text(key):
                yield f"{where}: the key is not valid Unicode (a lone surrogate); fix it"
            yield from _not_text(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _not_text(item, f"{path}[{i}]")
    elif isinstance(value, str) and not _is_text(value):
        yield (
            f"{path}: {value!a} is not valid Unicode (it holds a lone surrogate such as "
            "\\ud800); give real characters"
        )


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid_nodes(raw: Mapping[str, Any]) -> list[tuple[int, EngineNode]]:
    # The whole config failed validation: still check the graph with the well-typed parts of
    # every node (id, type, inputs, outputs), so one run of `validate` reports everything.
    engines = raw.get("engines")
    nodes = []
    for i, item in enumerate(engines if isinstance(engines, list) else []):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        inputs, outputs = (
            [v for v in item[key] if isinstance(v, str)] if isinstance(item.get(key), list) else []
            for key in ("inputs", "outputs")
        )
        node_type = item.get("type")
        node = EngineNode.model_construct(
            id=item["id"],
            type=node_type if isinstance(node_type, str) else "",
            inputs=inputs,
            outputs=outputs,
        )
        nodes.append((i, node))
    return nodes


def _valid_sources(raw: Mapping[str, Any]) -> dict[str, DataSource]:
    found = raw.get("data_sources")
    sources = {}
    for name, item in (found if isinstance(found, dict) else {}).items():
        try:
            sources[name] = DataSource.model_validate(item)
        except ValidationError:
            continue
    return sources


def _plugin_problems(plugins: Any, factory: EngineFactory) -> list[str]:
    """Run each plugin's registration function; the problems of those that fail."""
    problems = []
    for i, ref in enumerate(plugins if isinstance(plugins, list) else []):
        if not isinstance(ref, str):
            continue  # reported by the shape check
        module, _, attr = ref.partition(":")
        try:
            register = getattr(importlib.import_module(module), attr)
            register(factory)
        except Exception as exc:
            problems.append(
                f"plugins[{i}]: {ref!r} failed ({type(exc).__name__}: {exc}); give "
                "'module:function' where function(factory) registers engine types"
            )
    return problems


def _type_problems(nodes: Sequence[tuple[int, EngineNode]], factory: EngineFactory) -> list[str]:
    problems = []
    for i, node in nodes:
        if node.type and not factory.is_registered(node.type):
            types = factory.list_engine_types()
            close = difflib.get_close_matches(node.type, [*types, *BUILTIN_ALIASES], 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            aliases = ", ".join(f"{a} = {t}" for a, t in BUILTIN_ALIASES.items())
            problems.append(
                f"engines[{i}].type: unknown engine type {node.type!r}{hint}; known types: "
                f"{', '.join(types)} (aliases: {aliases})"
            )
    return problems


# What each built-in engine type writes, and the input the ones that read need.
_PRODUCES = {"esg": "scenarios", "projection": "results", "solver": "statistics"}
_NEEDS = {
    "projection": ("policies", "policy records (a data source of policies)"),
    "solver": ("results", "projection results (RESULT, RESULT_DETAIL or SCENARIO_TOTAL records)"),
}


def _required_input_problems(
    nodes: Sequence[tuple[int, EngineNode]],
    sources: Mapping[str, DataSource],
    factory: EngineFactory,
) -> list[str]:
    """Built-in engines none of whose inputs can give what they need (a solver with none)."""
    kinds: dict[str, str | None] = {n: s.resolved_kind(n) for n, s in sources.items()}
    for _, node in nodes:
        for name in node.outputs[:1]:
            # A plug-in's output may be anything (None): it is given the benefit of the doubt.
            kinds.setdefault(name, _PRODUCES.get(factory.canonical_type(node.type)))
    problems = []
    for i, node in nodes:
        need = _NEEDS.get(factory.canonical_type(node.type))
        if need is None:
            continue
        kind, what = need
        # An input nothing produces is reported already; it may be meant to give this.
        if any(name not in kinds or kinds[name] in (kind, None) for name in node.inputs):
            continue
        offers = [name for name, k in kinds.items() if k in (kind, None)]
        hint = f"add one of {', '.join(map(repr, offers))}" if offers else "add one"
        problems.append(
            f"engines[{i}].inputs: the {factory.canonical_type(node.type)} {node.id!r} needs "
            f"{what} and none of its inputs {list(node.inputs)} gives them; {hint}"
        )
    return problems


_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
"""A path that is a URI (``s3://bucket/key``): a scheme, then ``://``."""


def _uri_problems(sources: Mapping[str, DataSource], output: Any) -> list[str]:
    """Data source and output paths given as URIs: refused, never read or written as a local
    folder named after the scheme (``s3://b/k`` used to become ``./s3:/b/k``)."""
    named = [(f"data_sources.{name}.path", src.path) for name, src in sources.items()]
    if isinstance(output, Mapping):
        named += [
            (f"output.{key}", output[key])
            for key in ("path", "summary_path")
            if isinstance(output.get(key), str)
        ]
    problems = []
    for where, text in named:
        found = _URI.match(text)
        if found:
            problems.append(
                f"{where}: {text!r} is a {found.group(1)}:// URI; data sources and outputs "
                "are files on this machine's file systems (object storage is not supported "
                "here yet): give a local path, or mount the bucket and give its mounted path"
            )
    return problems


def _file_problems(sources: Mapping[str, DataSource], base: Path) -> list[str]:
    problems = []
    for name, src in sources.items():
        p = Path(src.path).expanduser()
        p = p if p.is_absolute() else base / p
        # The reader goes by suffix, so a *.csv path is CSV whatever the (default) type, as
        # docs/config.md says; only "csv" on another suffix would be read as something else.
        if src.type == "csv" and p.suffix.lower() != ".csv":
            problems.append(
                f"data_sources.{name}.type: {src.type!r} does not match the file name "
                f"{p.name!r}; files are read by suffix: name CSV files *.csv, Parquet files "
                "anything else"
            )
        if p.is_dir():
            problems.append(
                f"data_sources.{name}.path: {str(p)!r} is a folder; give the data file's path"
            )
        elif not p.is_file():
            problems.append(
                f"data_sources.{name}.path: file {str(p)!r} does not exist; check the path "
                "(relative paths resolve against the config file's folder)"
            )
    return problems


def _output_problems(
    config: PipelineConfig,
    nodes: Sequence[tuple[int, EngineNode]],
    sources: Mapping[str, DataSource],
) -> list[str]:
    out = config.output
    if out is None or out.write is None:
        return []
    problems = []
    produced = [name for _, n in nodes for name in n.outputs[:1]]
    for j, name in enumerate(out.write):
        if name not in produced:
            close = difflib.get_close_matches(name, produced, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"output.write[{j}]: {name!r} is not an engine's record output{hint}; "
                f"record outputs: {', '.join(produced) or 'none'}"
            )
    if len(out.write) > 1 and "{name}" not in out.path:
        problems.append(
            "output.path: several outputs are written; put '{name}' in the path "
            "(e.g. out/{name}.parquet)"
        )
    return problems


def _output_path_problems(config: PipelineConfig) -> list[str]:
    # Found now, not after the whole run has computed its results and cannot write them.
    out = config.output
    if out is None:
        return []
    names = out.write or [n.outputs[0] for n in config.engines if n.outputs]
    candidates = [("output.path", out.path.replace("{name}", name)) for name in names or ["x"]]
    if out.summary_path:
        candidates.append(("output.summary_path", out.summary_path))
    problems: list[str] = []
    for key, text in dict.fromkeys(candidates):
        if _URI.match(text):
            continue  # refused as a URI (_uri_problems)
        problem = unwritable(config.resolve(text))
        if problem:
            problems.append(f"{key}: {problem}; choose another path")
    return list(dict.fromkeys(problems))


def _collision_problems(
    config: PipelineConfig, config_file: Path | None, factory: EngineFactory
) -> list[str]:
    """Output files that are an input file (the config's own included) or another output,
    compared resolved (links, ``..``)."""
    out = config.output
    if out is None:
        return []
    try:
        written = EngineGraph(config).output_paths()
    except graphlib.CycleError:
        return []  # reported as a cycle
    inputs = [
        (f"the file of data_sources.{name}", config.resolve(src.path))
        for name, src in config.data_sources.items()
    ]
    if config_file is not None:
        inputs.append(("the config file itself", config_file))
    for i, node in enumerate(config.engines):
        found = _config_files(f"engines[{i}].config", config.engine_config(node.id, factory))
        inputs.extend((f"the file of {where}", path) for where, path in found)
    targets = [(f"output.path (output {name!r})", path) for name, path in written.items()]
    if out.summary_path:
        targets.append(("output.summary_path", config.resolve(out.summary_path)))
    problems = []
    for k, (key, path) in enumerate(targets):
        for other_key, other in inputs:
            if same_file(path, other):
                problems.append(
                    f"{key}: {str(path)!r} is {other_key}; writing there would "
                    "replace that input: choose another path"
                )
        for other_key, other in targets[:k]:
            if same_file(path, other):
                problems.append(
                    f"{key}: {str(path)!r} is also written by {other_key}; one would "
                    "overwrite the other: choose another path"
                )
    return problems


def _config_files(where: str, value: Any) -> list[tuple[str, Path]]:
    """(JSON path, file) of every existing file an engine config names by absolute path."""
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _config_files(f"{where}.{k}", v)]
    if isinstance(value, list):
        return [f for j, v in enumerate(value) for f in _config_files(f"{where}[{j}]", v)]
    if isinstance(value, str) and "://" not in value and os.path.isabs(value):
        path = Path(value)
        if path.is_file():
            return [(where, path)]
    return []
