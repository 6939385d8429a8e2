"""The JSON DAG config as pydantic models: the shapes, parsed once.

``livecalc.pipeline.loading.load_config`` reads a file (or takes a dict) and validates it into
these models; past that, nothing reads raw dicts. The graph module works on these models, and
the loader on both, so there is no import cycle.

Relative paths (data sources, outputs) resolve against the config file's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from livecalc.assumptions.ratelimit import AMRateLimit
from livecalc.errors import ConfigurationError
from livecalc.pipeline._config_files import with_absolute_paths, with_declared_paths

if TYPE_CHECKING:
    from livecalc.runtime.factory import EngineFactory
from livecalc.pipeline.operations import AlertConfig, CheckConfig, ChunkingConfig, SlaConfig

__all__ = [
    "DataSource",
    "EngineNode",
    "OutputConfig",
    "PipelineConfig",
    "RayOptions",
    "ReportOptions",
    "RunOptions",
    "config_json_schema",
]

_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def usable_path(text: str) -> str:
    """``text`` when the OS and the Parquet library can open it as a path.

    Raises:
        ValueError: a NUL byte, a lone surrogate (not text), or ``~user`` of no such user.
    """
    if "\x00" in text:
        raise ValueError("a path cannot hold a NUL byte (\\x00); remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "the path is not valid Unicode (it holds a lone surrogate such as \\ud800); "
            "give a path of real characters"
        ) from None
    if text.startswith("~"):
        try:
            Path(text).expanduser()
        except RuntimeError:
            user = text[1:].split("/", 1)[0]
            raise ValueError(
                f"'~{user}' names no user of this machine, so it cannot be expanded; give "
                "the folder itself"
            ) from None
    return text


FilePath = Annotated[str, AfterValidator(usable_path)]
"""A path in the config: refused at validation when no file could ever have it."""


class DataSource(_Model):
    """One entry of "data_sources": a Parquet or CSV file of policies or scenarios."""

    type: Literal["parquet", "csv"] = "parquet"
    path: FilePath = Field(description="file path; relative paths resolve against the config file")
    kind: Literal["policies", "scenarios"] | None = Field(
        default=None,
        description="what the file holds; by default 'scenarios' when the source's name "
        "contains 'scenario', otherwise 'policies'",
    )

    def resolved_kind(self, name: str) -> Literal["policies", "scenarios"]:
        """The record kind of this source, inferred from its name when not given."""
        if self.kind is not None:
            return self.kind
        return "scenarios" if "scenario" in name.lower() else "policies"


class EngineNode(_Model):
    """One entry of the config's "engines" list."""

    id: str = Field(pattern=_ID_PATTERN, description="unique node id")
    type: str = Field(description="engine type (see `livecalc engines`) or a seed alias")
    config: dict[str, Any] = Field(default_factory=dict, description="passed to initialize")
    inputs: list[str] = Field(default_factory=list, description="data source or output names")
    outputs: list[str] = Field(
        default_factory=list,
        description="first: the record output; a second name: the engine's get_outputs()",
    )
    timeout_seconds: float | None = Field(default=None, gt=0, description="per chunk")
    retries: int = Field(default=0, ge=0, le=1, description="1: retry a failed chunk once")
    max_consecutive_errors: int = Field(default=3, ge=1)
    chunk_size: int | None = Field(default=None, ge=1, description="policies per chunk")
    parallelism: int | None = Field(
        default=None,
        ge=1,
        description="engine replicas running this node's chunks at once; default: run.parallelism",
    )


class OutputConfig(_Model):
    """The "output" object: where record outputs are written as Parquet."""

    type: Literal["parquet"] = "parquet"
    path: FilePath = Field(
        description="Parquet file; with several outputs in 'write' it must contain '{name}'"
    )
    write: list[str] | None = Field(
        default=None,
        description="outputs to write; default: the record output of the last engine that "
        "writes records",
    )
    summary_path: FilePath | None = Field(
        default=None, description="JSON file for the run summary and engines' statistics"
    )


class RayOptions(_Model):
    """The "run.ray" object: the Ray cluster the ``ray`` executor joins."""

    address: str | None = Field(
        default=None,
        description="cluster to join ('auto', 'host:port' or 'ray://host:port'); default: "
        "RAY_ADDRESS, else a new Ray started on this machine for the run (never another "
        "cluster found on the machine)",
    )
    runtime_env: dict[str, Any] | None = Field(
        default=None,
        description="Ray runtime_env of the run's workers (working_dir, py_modules, pip, "
        "env_vars, ...): how a cluster's workers get LiveCalc, plug-in engines and files",
    )


class RunOptions(_Model):
    """The "run" object: options for the whole run (CLI flags override them)."""

    chunk_size: int = Field(default=10_000, ge=1, description="policies per chunk")
    executor: Literal["local", "processes", "ray"] = "local"
    max_parallel: int = Field(default=2, ge=1, description="nodes run at the same time")
    timeout_seconds: float | None = Field(default=None, gt=0, description="per chunk default")
    parallelism: int | None = Field(
        default=None,
        ge=1,
        description="engine replicas per chunked node; default: the CPUs of this machine "
        "(processes), of the cluster (ray), 1 (local)",
    )
    replica_retries: int = Field(
        default=3,
        ge=0,
        description="times a chunk whose replica died (worker killed, Ray node lost) is re-run",
    )
    ray: RayOptions = Field(default_factory=RayOptions)
    chunking: ChunkingConfig | None = Field(
        default=None,
        description='{"strategy": "fixed", "size": N} or {"strategy": "memory", "budget": "1GB"}',
    )
    checkpoint: bool = Field(
        default=True, description="keep each finished chunk under $LIVECALC_HOME for resume"
    )
    checkpoint_chunks: Literal["auto", "all"] = Field(
        default="auto",
        description="auto: keep a chunk when writing it costs at most checkpoint_max_overhead "
        "of the time it took to compute; all: keep every chunk",
    )
    checkpoint_max_overhead: float = Field(
        default=0.05,
        gt=0,
        description="largest share of a chunk's compute time its checkpoint may cost (auto)",
    )
    checkpoint_min_chunk_seconds: float | None = Field(
        default=None,
        ge=0,
        description="a fixed rule instead of the write cost (auto): keep the chunks computed "
        "in at least this many seconds (0: every chunk)",
    )
    am_rate_limit: AMRateLimit | None = Field(
        default=None,
        description='{"requests_per_second": 20, "burst": 10, "max_retries": 5}: pacing of '
        "requests to the Assumptions Manager, and retries of its 429/503 answers",
    )


class ReportOptions(_Model):
    """``report``: how the HTML run report writes this pipeline's results."""

    title: str | None = Field(
        default=None, max_length=200, description="the report's heading (default: the file's name)"
    )
    currency: str | None = Field(
        default=None,
        max_length=12,
        description="the unit of money on the report's axes and tables, e.g. 'EUR' (default: none)",
    )
    move_threshold: float = Field(
        default=0.05,
        gt=0,
        le=1000,
        description="compared with another run, moves larger than this (relative) are highlighted",
    )


class PipelineConfig(_Model):
    """A whole pipeline: data sources, engine nodes, output and run options."""

    plugins: list[str] = Field(
        default_factory=list,
        description="'module:function' callables run as function(factory) before validation, "
        "to register engine types without an installed entry point",
    )
    data_sources: dict[str, DataSource] = Field(default_factory=dict)
    engines: list[EngineNode] = Field(min_length=1)
    output: OutputConfig | None = None
    run: RunOptions = Field(default_factory=RunOptions)
    checks: list[CheckConfig] = Field(default_factory=list, description="declared checks")
    sla: SlaConfig | None = None
    alerts: list[AlertConfig] = Field(default_factory=list)
    report: ReportOptions | None = None
    base_dir: str = Field(
        default=".", description="folder relative paths resolve against (set by load_config)"
    )

    def resolve(self, path: str) -> Path:
        """``path`` made absolute against the config's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def engine_config(self, node_id: str, factory: EngineFactory | None = None) -> dict[str, Any]:
        """A node's engine config with its relative file paths made absolute.

        Relative paths in a config resolve against the config file's folder; engines cannot
        know that folder, so the runner rewrites them. Which keys hold paths, the engine type
        declares (``ICalcEngine.config_file_keys``, read through ``factory``; by default the
        built-in types): exactly those are resolved, at any depth. For an engine that declares
        none, the string values of keys named ``file``, ``path``, ``library`` or ending in
        ``_table``, ``_file`` or ``_path`` are rewritten when such a file exists there.
        ``am://`` references and absolute paths are left as they are.
        """
        from livecalc.runtime.factory import EngineFactory

        node = self.node(node_id)
        factory = factory if factory is not None else EngineFactory(discover=False)
        keys = factory.config_file_keys(node.type)
        base = Path(self.base_dir)
        if keys is not None:
            declared: dict[str, Any] = with_declared_paths(node.config, base, keys)
            return declared
        resolved: dict[str, Any] = with_absolute_paths(node.config, base)
        return resolved

    def uses_assumptions_manager(self) -> bool:
        """Whether any engine config refers to a table as ``am://...``."""
        return "am://" in json.dumps([n.config for n in self.engines], default=str)

    def node(self, node_id: str) -> EngineNode:
        """The engine node called ``node_id``."""
        for n in self.engines:
            if n.id == node_id:
                return n
        raise ConfigurationError(f"no engine node {node_id!r}")

    def node_index(self, node_id: str) -> int:
        """The position of ``node_id`` in "engines" (for JSON paths)."""
        for i, n in enumerate(self.engines):
            if n.id == node_id:
                return i
        raise ConfigurationError(f"no engine node {node_id!r}")


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, for editors (``base_dir`` is internal)."""
    schema = PipelineConfig.model_json_schema()
    schema["properties"].pop("base_dir", None)
    # Editors find the schema through this key; load_config ignores it.
    schema["properties"]["$schema"] = {"type": "string", "description": "this schema's path"}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "LiveCalc pipeline config"
    return schema
