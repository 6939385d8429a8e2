"""The config's operations sections as pydantic models: checks, sla, alerts, run.chunking.

They are validated with the rest of the config (``load_config`` reports every problem at
once); ``livecalc.ops`` evaluates the checks, measures the SLA and sends the alerts.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from livecalc.pipeline.config import PipelineConfig

__all__ = [
    "ALERT_TYPES",
    "MAX_ALERT_SECONDS",
    "AlertConfig",
    "CheckConfig",
    "ChunkingConfig",
    "CommandAlert",
    "SlaConfig",
    "WebhookAlert",
    "operations_problems",
    "parse_bytes",
    "split_comparison",
]

AlertEvent = Literal["failure", "check_failed", "sla_breach", "success"]
ALERT_TYPES = ("webhook", "command")
"""The ``type`` of each kind of alert (the tag of the ``alerts`` entries' union)."""
MAX_ALERT_SECONDS = 86_400.0
"""The longest an alert's ``timeout_seconds`` (or its backoff) may be: a day."""


def _plain_text(value: str) -> str:
    """``value``, when it is text LiveCalc can store, log and pass on: no NUL, no lone
    surrogate (``"\\ud800"`` in JSON is valid there, yet is no character UTF-8 can write)."""
    if "\x00" in value:
        raise ValueError("a NUL character (\\u0000) cannot be used here; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "a lone surrogate (such as \\ud800) is no character; write the text as UTF-8"
        ) from None
    return value


Text = Annotated[str, AfterValidator(_plain_text)]
"""A string of the config's operations sections: no NUL, no lone surrogate."""
Finite = Annotated[float, Field(allow_inf_nan=False)]
"""A number that is not NaN or infinite (JSON has no such numbers; Python's parser takes them)."""

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_COMPARATORS = (">=", "<=", "==", "!=", ">", "<")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_bytes(text: str | int) -> int:
    """``"1GB"``, ``"512MiB"``, ``"2.5 GB"`` or a plain integer as a number of bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size; write it like '1GB', '512MB' or '2GiB'")
    return int(float(match.group(1)) * _UNITS[unit])


def split_comparison(text: str) -> tuple[str, str, str]:
    """``"cte_99_5 > -5e7"`` as (left expression, comparator, right expression)."""
    for op in _COMPARATORS:
        left, found, right = text.partition(op)
        if found and left.strip() and right.strip() and not any(c in right for c in "<>=!"):
            return left.strip(), op, right.strip()
    raise ValueError(
        f"{text!r} is not a comparison; write it like 'cte_99_5 > -5e7' "
        f"(one of {', '.join(_COMPARATORS)})"
    )


class ChunkingConfig(_Model):
    """``run.chunking``: a fixed number of policies per chunk, or a memory budget."""

    strategy: Literal["fixed", "memory"] = "fixed"
    size: int | None = Field(default=None, ge=1, description="fixed: policies per chunk")
    budget: str | int | None = Field(
        default=None, description="memory: peak memory for the run, e.g. '1GB'"
    )

    @model_validator(mode="after")
    def _fits_strategy(self) -> ChunkingConfig:
        if self.strategy == "fixed" and self.budget is not None:
            raise ValueError("'budget' goes with strategy 'memory'; remove it or change strategy")
        if self.strategy == "memory":
            if self.budget is None:
                raise ValueError("strategy 'memory' needs a 'budget', e.g. \"1GB\"")
            if self.size is not None:
                raise ValueError("'size' goes with strategy 'fixed'; remove it")
            if parse_bytes(self.budget) < 1:
                raise ValueError("the memory budget must be at least 1 byte; write it like '1GB'")
        return self

    @property
    def budget_bytes(self) -> int:
        """The memory budget in bytes (0 for the fixed strategy)."""
        return parse_bytes(self.budget) if self.budget is not None else 0


class CheckConfig(_Model):
    """One entry of the config's ``checks`` list: what a good result looks like."""

    kind: Literal["finite", "row_count", "range", "metric", "martingale", "reconcile"]
    name: Text | None = Field(default=None, description="default: kind and what it checks")
    severity: Literal["warn", "error"] = "error"
    description: Text | None = None
    dataset: Text | None = Field(default=None, description="the output or data source checked")
    columns: list[Text] | None = Field(default=None, description="finite: default every column")
    column: Text | None = Field(default=None, description="range, reconcile: the column")
    statistic: Text | None = Field(
        default=None, description="range: a statistic, 'node.key' or 'node.metrics.name'"
    )
    min: Finite | None = None
    max: Finite | None = None
    equals: int | Literal["policies_x_scenarios"] | None = Field(
        default=None, description="row_count: the exact count"
    )
    expr: Text | None = Field(default=None, description="metric: e.g. 'cte_99_5 > -5e7'")
    node: Text | None = Field(default=None, description="metric: the solver node (default: any)")
    z_threshold: Finite = Field(default=4.0, gt=0, description="martingale: largest |z|")
    against: Text | None = Field(default=None, description="reconcile: the other dataset")
    against_column: Text | None = Field(default=None, description="default: 'column'")
    tolerance: Finite = Field(default=1e-9, ge=0, description="reconcile: relative tolerance")

    @field_validator("equals")
    @classmethod
    def _a_count(cls, equals: int | str | None) -> int | str | None:
        if isinstance(equals, int) and not 0 <= equals < 2**63:
            raise ValueError("a row count is from 0 to 2**63 - 1")
        return equals

    @model_validator(mode="after")
    def _has_what_its_kind_needs(self) -> CheckConfig:
        needs: dict[str, tuple[str, ...]] = {
            "finite": ("dataset",),
            "row_count": ("dataset",),
            "martingale": ("dataset",),
            "reconcile": ("dataset", "column", "against"),
            "metric": ("expr",),
        }
        missing = [k for k in needs.get(self.kind, ()) if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.kind} check needs {', '.join(repr(k) for k in missing)}")
        if self.kind == "row_count" and (self.equals, self.min, self.max) == (None, None, None):
            raise ValueError("a row_count check needs 'equals', 'min' or 'max'")
        if self.kind == "range":
            if (self.column is None) == (self.statistic is None):
                raise ValueError(
                    "a range check needs either 'column' (with 'dataset') or 'statistic'"
                )
            if self.column is not None and self.dataset is None:
                raise ValueError("a range check on a column needs 'dataset'")
            if self.min is None and self.max is None:
                raise ValueError("a range check needs 'min', 'max' or both")
        if self.kind == "metric":
            from livecalc.solver.expr import ExpressionError, parse_expression

            assert self.expr is not None
            left, _, right = split_comparison(self.expr)
            try:
                for side in (left, right):
                    parse_expression(side, _AnyName())
                    _finite_constants(side.strip())
            except ExpressionError as exc:
                raise ValueError(str(exc)) from None
        return self

    @property
    def label(self) -> str:
        """The check's name: given, or its kind and what it looks at."""
        if self.name:
            return self.name
        what = self.expr or self.statistic or ".".join(p for p in (self.dataset, self.column) if p)
        return f"{self.kind}:{what}"


def _finite_constants(text: str) -> None:
    """Refuse a number in a metric expression that is no finite float (``1e999``, or 10**400
    written out): it would compare as infinity, or overflow when the check is evaluated."""
    for node in ast.walk(ast.parse(text, mode="eval")):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            try:
                finite = math.isfinite(float(node.value))
            except OverflowError:
                finite = False
            if not finite:
                number = ast.get_source_segment(text, node) or ""
                shown = number if len(number) <= 20 else f"{number[:8]}...({len(number)} digits)"
                raise ValueError(
                    f"{shown} in 'expr' is not a finite number (the largest is about 1.8e308); "
                    "write a finite bound"
                )


class _AnyName(Collection[str]):
    """Every identifier is a metric name when a check is validated (known only after a run)."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.isidentifier()

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class SlaConfig(_Model):
    """The config's ``sla``: the longest a run and each node may take."""

    run_seconds: Finite | None = Field(default=None, gt=0)
    nodes: dict[Text, Annotated[Finite, Field(gt=0)]] = Field(
        default_factory=dict, description="node id: seconds"
    )


def _default_events() -> list[AlertEvent]:
    return ["failure", "check_failed", "sla_breach"]


class WebhookAlert(_Model):
    """POST the alert's JSON to ``url``, with retries, all within ``timeout_seconds``."""

    type: Literal["webhook"]
    url: Text = Field(pattern=r"^https?://", description="http:// or https:// URL")
    on: list[AlertEvent] = Field(default_factory=_default_events)
    timeout_seconds: Finite = Field(
        default=10.0, gt=0, le=MAX_ALERT_SECONDS, description="the whole alert's budget"
    )
    retries: int = Field(default=3, ge=0, le=10)
    backoff_seconds: Finite = Field(
        default=0.5, ge=0, le=MAX_ALERT_SECONDS, description="first wait, then doubled"
    )

    @field_validator("url")
    @classmethod
    def _usable_url(cls, url: str) -> str:
        from urllib.parse import urlsplit

        # The message names what is wrong, never the URL: it may hold a password or token.
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError for a port that is no number 0-65535)
        except ValueError:
            raise ValueError("no valid port; write the URL like https://host:8443/path") from None
        if not parts.hostname:
            raise ValueError("no host; write the URL like https://host/path")
        if any(c.isspace() or not c.isprintable() for c in url):
            raise ValueError("a space or control character; percent-encode it (%20)")
        return url


class CommandAlert(_Model):
    """Run a local program with the alert's JSON on its standard input."""

    type: Literal["command"]
    argv: list[Text] = Field(min_length=1)
    on: list[AlertEvent] = Field(default_factory=_default_events)
    timeout_seconds: Finite = Field(default=10.0, gt=0, le=MAX_ALERT_SECONDS)

    @model_validator(mode="after")
    def _has_a_program(self) -> CommandAlert:
        if not self.argv[0]:
            raise ValueError("'argv[0]' is empty; give the program to run")
        return self


AlertConfig = Annotated[WebhookAlert | CommandAlert, Field(discriminator="type")]


def operations_problems(config: PipelineConfig) -> list[str]:
    """Checks and SLA entries that name a dataset or node the config does not have."""
    nodes = [n.id for n in config.engines]
    datasets = [*config.data_sources, *(o for n in config.engines for o in n.outputs)]
    problems = []
    for i, check in enumerate(config.checks):
        for key in ("dataset", "against"):
            name = getattr(check, key)
            if name is not None and name not in datasets:
                problems.append(_unknown(f"checks[{i}].{key}", name, datasets, "dataset"))
        if check.node is not None and check.node not in nodes:
            problems.append(_unknown(f"checks[{i}].node", check.node, nodes, "engine node"))
        if check.statistic is not None and check.statistic.split(".")[0] not in nodes:
            problems.append(
                _unknown(f"checks[{i}].statistic", check.statistic.split(".")[0], nodes, "node")
                + " (write it as 'node.key' or 'node.metrics.name')"
            )
    if config.sla is not None:
        for node_id in config.sla.nodes:
            if node_id not in nodes:
                problems.append(_unknown(f"sla.nodes.{node_id}", node_id, nodes, "engine node"))
    return problems


def _unknown(path: str, name: str, known: Sequence[str], what: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"
    return f"{path}: {name!r} is no {what} of this config{hint}"
