"""Running part of a pipeline: the selected nodes, and the datasets they read from files.

``livecalc.run(config, nodes=[...], datasets={name: path})`` runs only ``nodes``. Every dataset
a selected node reads that a node *not* selected produces comes from a file given in
``datasets``: a Parquet file of the producer's record layout (scenarios from an ESG, results
from a projection), checked like any input, or a JSON file for a node's statistics (a solver's
``solution``). A scheduler runs one node per task this way, each task handing its outputs to
the next through the files ``keep_datasets`` writes (``DatasetKeeper``).

A selected engine that re-runs its upstream engine with other parameters (the solver's
optimisation re-runs the projection) gets that engine initialised but not run, a *support*
node: its own inputs come from the data sources and from ``datasets`` too, so the re-runs
value what the whole pipeline would.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.errors import CalcEngineError, ConfigurationError, ExecutionError
from livecalc.io.parquet import ParquetReader, ParquetWriter, record_type_name
from livecalc.log import get_logger
from livecalc.pipeline._config_files import given_path, same_file
from livecalc.pipeline._outputs import DATASET_KEY
from livecalc.pipeline._summary import write_json_atomic
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.graph import EngineGraph
from livecalc.runtime.engine import SupportsEvaluator, SupportsParameters
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.leftovers import temp_path
from livecalc.runtime.records import SCENARIO_DTYPE

__all__ = ["DatasetKeeper", "Selection", "read_dataset", "select"]

_log = get_logger()

_FIX = (
    "run {producer!r} with keep_datasets (CLI --keep-datasets) and give the file it keeps: "
    "datasets={{{name!r}: PATH}} (CLI --dataset {name}=PATH), or select {producer!r} too"
)


@dataclass(frozen=True)
class Selection:
    """The nodes a run runs, the nodes it only initialises, and the datasets read from files."""

    nodes: tuple[str, ...]
    """Selected node ids, in run order."""
    support: tuple[str, ...] = ()
    """Nodes not selected but initialised, for a selected node that re-runs them."""
    files: dict[str, Path] = field(default_factory=dict)
    """Dataset name -> absolute path of each dataset read from a file."""
    producers: dict[str, str] = field(default_factory=dict)
    """Dataset name -> the node (not selected) that produces it."""

    def initialised(self, graph: EngineGraph) -> list[str]:
        """Selected and support nodes, in the graph's run order."""
        wanted = {*self.nodes, *self.support}
        return [n for n in graph.order() if n in wanted]

    def sources(self, config: PipelineConfig) -> list[str]:
        """The data sources the initialised nodes read."""
        read = {name for n in (*self.nodes, *self.support) for name in config.node(n).inputs}
        return [name for name in config.data_sources if name in read]

    def read(self, config: PipelineConfig, factory: EngineFactory) -> Iterator[tuple[str, Any]]:
        """(name, records or statistics) of each dataset file, read and checked."""
        for name, path in self.files.items():
            producer = self.producers[name]
            yield name, read_dataset(name, path, producer, config, factory)
            _log.info("dataset_loaded", dataset=name, path=str(path), producer=producer)

    def horizons(self, datasets: Mapping[str, Any]) -> dict[str, int]:
        """Scenario years of the scenario datasets read from files (for the data check)."""
        found = {}
        for name in self.files:
            value = datasets.get(name)
            if isinstance(value, np.ndarray) and value.dtype == SCENARIO_DTYPE and len(value):
                found[name] = int(value["year"].max())
        return found

    def check_layout(
        self,
        config: PipelineConfig,
        producer: str,
        expected: np.dtype[Any],
        datasets: Mapping[str, Any],
    ) -> None:
        """Refuse a file of a support node's output with another layout than its re-runs
        write (``expected``: its ``output_spec``): they would not compare with it.

        Raises:
            ConfigurationError: naming the dataset, the file and both layouts.
        """
        for name in config.node(producer).outputs[:1]:
            path = self.files.get(name)
            if path is None:
                continue
            value = datasets.get(name)
            if not isinstance(value, np.ndarray):
                raise ConfigurationError(
                    f"datasets[{name!r}]: {path} holds statistics (JSON), but node "
                    f"{producer!r} writes {record_type_name(expected)} records; give the "
                    "Parquet file it kept"
                )
            if value.dtype != expected:
                raise ConfigurationError(
                    f"datasets[{name!r}]: {path} holds {record_type_name(value.dtype)} "
                    f"records, but node {producer!r} writes {record_type_name(expected)} "
                    "records with this config; give the file it kept with this config"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, for the run summary."""
        return {
            "nodes": list(self.nodes),
            "initialised_only": list(self.support),
            "datasets": {name: str(path) for name, path in self.files.items()},
        }


def select(
    config: PipelineConfig,
    graph: EngineGraph,
    factory: EngineFactory,
    nodes: Sequence[str] | None,
    datasets: Mapping[str, str | Path] | None,
) -> Selection | None:
    """Check a node selection and the dataset files it needs; None runs the whole pipeline.

    Raises:
        ConfigurationError: an unknown, repeated or empty selection; a dataset name that is no
            dataset, or one the run itself produces; a needed dataset not given; a given file
            that is not there. Every problem is listed, each with its fix.
    """
    given = dict(datasets or {})
    if nodes is None:
        if given:
            raise ConfigurationError(
                f"datasets {sorted(given)}: files are read only for the inputs of nodes that "
                "are not run; give the nodes to run too (nodes=[...], CLI --node ID)"
            )
        return None
    if isinstance(nodes, str):
        nodes = [nodes]  # a lone id is a selection of one, not of its characters
    order = graph.order()
    ids = ", ".join(n.id for n in config.engines)
    if not nodes:
        raise ConfigurationError(
            f"nodes: the selection is empty; give at least one node id ({ids}), or leave "
            "nodes out to run the whole pipeline"
        )
    problems: list[str] = []
    seen: set[str] = set()
    for i, node_id in enumerate(nodes):
        if node_id in seen:
            problems.append(f"nodes[{i}]: {node_id!r} is selected twice; give each node once")
        elif node_id not in order:
            close = difflib.get_close_matches(str(node_id), order, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"nodes[{i}]: no node {node_id!r}{hint}; the node ids are {ids}")
        seen.add(node_id)
    _raise(problems)
    selected = [n for n in order if n in seen]
    support = _support_nodes(config, graph, factory, selected)
    producers = graph.producers
    needed: dict[str, tuple[str, str]] = {}  # dataset -> (reader, why)
    for node_id in [*selected, *support]:
        for name in config.node(node_id).inputs:
            producer = producers.get(name)
            if producer is None or producer in selected:
                continue
            why = (
                f"selected node {node_id!r}"
                if node_id in selected
                else f"node {node_id!r} (re-run by a selected node's optimisation)"
            )
            needed.setdefault(name, (node_id, why))
    for name in given:
        if name in config.data_sources:
            problems.append(
                f"datasets[{name!r}]: {name!r} is a data source (data_sources.{name}); change "
                "its path in the config instead"
            )
        elif name not in producers:
            known = ", ".join(sorted(producers)) or "none"
            problems.append(
                f"datasets[{name!r}]: no node produces {name!r}; the datasets are {known}"
            )
        elif producers[name] in selected:
            problems.append(
                f"datasets[{name!r}]: {name!r} is produced by selected node "
                f"{producers[name]!r} in this run; leave it out of datasets, or leave "
                f"{producers[name]!r} out of nodes"
            )
    files: dict[str, Path] = {}
    for name, (_reader, why) in needed.items():
        producer = producers[name]
        if name not in given:
            problems.append(
                f"datasets: {name!r}, read by {why}, is produced by node {producer!r}, which "
                "is not selected; " + _FIX.format(producer=producer, name=name)
            )
            continue
        path = given_path(given[name], f"datasets[{name!r}]")
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "not found"
            problems.append(
                f"datasets[{name!r}]: file {what}: {path}; give the file node {producer!r} "
                "kept (keep_datasets, CLI --keep-datasets)"
            )
            continue
        files[name] = path
    problems += _overwritten_datasets(config, graph, selected, files)
    for name, path in files.items():
        problems += kept_file_problems(name, path)
    _raise(problems)
    return Selection(
        nodes=tuple(selected),
        support=tuple(support),
        files=files,
        producers={name: producers[name] for name in files},
    )


def _overwritten_datasets(
    config: PipelineConfig, graph: EngineGraph, selected: list[str], files: Mapping[str, Path]
) -> list[str]:
    """A dataset file that this run would write over (an output of a selected node, or the
    summary): the run would read one file and replace it."""
    targets = [
        (f"output.path (output {name!r} of node {graph.producers[name]!r})", path)
        for name, path in graph.output_paths().items()
        if graph.producers.get(name) in selected
    ]
    if config.output is not None and config.output.summary_path:
        targets.append(("output.summary_path", config.resolve(config.output.summary_path)))
    problems = []
    for name, path in files.items():
        for what, target in targets:
            if same_file(path, target):
                problems.append(
                    f"datasets[{name!r}]: {path} is also {what} of this run, which would "
                    "overwrite the file it reads; give the file a run kept (--keep-datasets) "
                    "or write the output elsewhere"
                )
    return problems


KEPT_SUMS = "SHA256SUMS"
"""The file of a kept-datasets folder listing each kept file's sha256, as ``sha256sum``
writes them (``sha256sum -c SHA256SUMS`` in the folder checks them too)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _kept_sums(folder: Path) -> dict[str, str]:
    """The sha256 of each file named in ``folder``'s SHA256SUMS (none when there is none)."""
    try:
        text = (folder / KEPT_SUMS).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    sums = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        if name:
            sums[name] = digest
    return sums


def kept_file_problems(name: str, path: Path) -> list[str]:
    """A problem when ``path`` is a kept dataset whose bytes changed since the run kept it
    (its folder's SHA256SUMS names it with another sha256): an output rewritten in place, a
    file edited by hand. A file no SHA256SUMS names is not checked."""
    expected = _kept_sums(path.parent).get(path.name)
    if expected is None:
        return []
    try:
        found = _sha256(path)
    except OSError as exc:
        return [f"datasets[{name!r}]: cannot read {path} ({exc.strerror})"]
    if found == expected:
        return []
    return [
        f"datasets[{name!r}]: {path} changed since its run kept it (sha256 {found[:12]}... "
        f"where {KEPT_SUMS} says {expected[:12]}...); run the producing node again to keep "
        "it anew"
    ]


def _raise(problems: list[str]) -> None:
    if len(problems) == 1:
        raise ConfigurationError(problems[0])
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        raise ConfigurationError(f"{len(problems)} problems with the node selection:\n{listed}")


def _support_nodes(
    config: PipelineConfig, graph: EngineGraph, factory: EngineFactory, selected: list[str]
) -> list[str]:
    """Producers not selected that a selected node re-runs: the engine binds an evaluator
    (``SupportsEvaluator``), its config has an ``optimization``, and the producer takes
    parameter overrides (``SupportsParameters``), as the runner's goal-seek picks
    (``_goal_seek.upstream_projection``)."""
    support = []
    for node_id in selected:
        node = config.node(node_id)
        if not node.config.get("optimization") or not _is(factory, node.type, SupportsEvaluator):
            continue
        for name in node.inputs:
            producer = graph.producers.get(name)
            if producer is None or not _is(factory, config.node(producer).type, SupportsParameters):
                continue
            if producer not in selected and producer not in support:
                support.append(producer)
            break  # the runner re-runs the first such producer of the node's inputs only
    return support


def _is(factory: EngineFactory, engine_type: str, protocol: type) -> bool:
    try:
        return isinstance(factory.create_engine(engine_type), protocol)
    except CalcEngineError:
        return False  # an unknown type is reported when the node is initialised


def read_dataset(
    name: str, path: Path, producer: str, config: PipelineConfig, factory: EngineFactory
) -> np.ndarray | dict[str, Any]:
    """A dataset given as a file: records from Parquet, statistics from JSON.

    An ESG's output must hold scenarios; a node's second output (its statistics) must be JSON.

    Raises:
        ConfigurationError: the file is not of the layout the producer writes, or a value is
            bad (the file, column and row named).
    """
    node = config.node(producer)
    statistics = node.outputs.index(name) > 0
    where = f"datasets[{name!r}]"
    esg = factory.canonical_type(node.type) == "esg"
    if path.suffix.lower() == ".json" or statistics:
        if esg and not statistics:
            raise ConfigurationError(
                f"{where}: {path}: {name!r} holds the scenarios ESG node {producer!r} "
                f"writes; give the Parquet file it kept ({name}.parquet)"
            )
        if path.suffix.lower() != ".json":
            raise ConfigurationError(
                f"{where}: {path}: {name!r} holds node {producer!r}'s statistics, kept as "
                "JSON; give the .json file keep_datasets wrote"
            )
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigurationError(f"{where}: {path}: not a readable JSON file ({exc})") from None
        if not isinstance(value, dict):
            raise ConfigurationError(
                f"{where}: {path}: holds a JSON {type(value).__name__}, not the object of "
                f"statistics node {producer!r} writes"
            )
        return value
    reader = ParquetReader()
    try:
        held = reader.read_metadata(path).get(DATASET_KEY)
        if held is not None and held != name:
            raise ConfigurationError(
                f"file {path} holds dataset {held!r}, not {name!r}; give the file of {name!r} "
                f"(runs/RUN_ID/datasets/{name}.parquet of the run of node {producer!r})"
            )
        return reader.read_records(path, SCENARIO_DTYPE if esg else None)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where} (produced by node {producer!r}): {exc}") from None


class DatasetKeeper:
    """Writes each dataset a run produces to a stable file in one folder (``keep_datasets``).

    Records go to ``NAME.parquet`` (with the run's key-value metadata, and an ESG's description
    as the normal writer keeps it), statistics to ``NAME.json``; a dataset already written to
    its output file is copied (not linked: a rewrite of the output in place must not change
    the kept file). Each file appears atomically, and ``SHA256SUMS`` in the folder lists the
    sha256 of each; a run reading a kept file (``datasets``) refuses one whose bytes changed.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: dict[str, Path] = {}
        self._taken: dict[str, Path] = {}
        self._sums: dict[str, str] = {}
        # Nodes finish on several threads at once: file names are handed out one at a time.
        self._lock = threading.Lock()

    def _target(self, name: str, suffix: str) -> Path:
        """The file for ``name``: its characters past [A-Za-z0-9_.-] become ``_``, and a
        name that comes out like another's gets ``-2``, ``-3``..."""
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "dataset"
        with self._lock:
            taken = {p for n, p in self._taken.items() if n != name}
            path, k = self.folder / f"{stem}{suffix}", 2
            while path in taken:
                path, k = self.folder / f"{stem}-{k}{suffix}", k + 1
            self._taken[name] = path
        return path

    def keep(self, name: str, value: Any, metadata: Mapping[str, str]) -> None:
        """Write one dataset: records, statistics (a mapping) or a written file's path.

        Raises:
            ExecutionError: the file cannot be written (the folder, disk full...).
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if isinstance(value, np.ndarray):
                path = self._target(name, ".parquet")
                with ParquetWriter(path, value.dtype, {**metadata, DATASET_KEY: name}) as writer:
                    writer.write_chunk(value)
            elif isinstance(value, Path):
                path = self._target(name, value.suffix or ".parquet")
                _link_or_copy(value, path)
            elif isinstance(value, Mapping):
                path = self._target(name, ".json")
                write_json_atomic(path, dict(value))
            else:
                return
            digest = _sha256(path)
            with self._lock:
                self._sums[path.name] = digest
                sums = "".join(f"{d}  {n}\n" for n, d in sorted(self._sums.items()))
                _write_text_atomic(self.folder / KEPT_SUMS, sums)
        except (OSError, ConfigurationError, ExecutionError) as exc:
            raise ExecutionError(
                f"keep_datasets: cannot write dataset {name!r} to {self.folder} ({exc}); "
                "free disk space or choose another keep_datasets folder"
            ) from exc
        self.paths[name] = path


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` holding ``source``'s bytes: a copy (never a hard link, which an in-place
    rewrite of the output, a ``cp`` or a redirect, would change too), atomically.
    ``shutil.copyfile`` copies in the kernel (``copy_file_range``, ``sendfile``), which
    shares the blocks on a filesystem that can (a reflink on XFS, Btrfs)."""
    tmp = temp_path(target)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = temp_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
