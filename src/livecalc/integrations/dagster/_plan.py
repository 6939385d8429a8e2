"""How one pipeline config maps onto Dagster: asset keys, steps, and where each check goes.

Plain Python (no dagster import), so the mapping reads and tests on its own:

- every data source is an external asset ``[pipeline, source]``;
- every dataset an engine produces is an asset ``[pipeline, node_id, output]``;
- every engine node is one step (one ``multi_asset``) producing its outputs;
- every declared check goes on an asset of the step whose LiveCalc run evaluates it
  (``livecalc.ops.kept.check_owner``): the dataset it names (a ``reconcile`` across two
  nodes: the later node's dataset); a check that names no dataset (``metric``, a ``range``
  over a statistic) on the first output of the node whose statistics it reads (``node``,
  the statistic's node, else the last node that has outputs); a check of data sources only
  on the source's external asset.

Dagster names (asset key parts, op, check and job names) allow only ``A-Z a-z 0-9 _``; other
characters become ``_``, and two names that would then collide are a ConfigurationError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from livecalc.errors import ConfigurationError
from livecalc.ops.kept import check_owner
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.graph import EngineGraph
from livecalc.pipeline.operations import CheckConfig

__all__ = ["CheckTarget", "PipelinePlan", "Step", "dagster_name"]

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def dagster_name(text: str) -> str:
    """``text`` as a Dagster name: other characters than ``A-Z a-z 0-9 _`` become ``_``."""
    name = _NOT_NAME.sub("_", text)
    return f"_{name}" if not name or name[0].isdigit() else name


@dataclass(frozen=True)
class CheckTarget:
    """One declared check as a Dagster asset check."""

    index: int
    """Position in the config's ``checks`` list (LiveCalc evaluates them in this order)."""
    label: str
    """LiveCalc's name for it (``CheckResult.name``)."""
    name: str
    """The Dagster check name: the label as a Dagster name, unique on its asset."""
    dataset: str
    """The dataset whose asset carries the check."""
    severity: str
    description: str


@dataclass(frozen=True)
class Step:
    """One ``multi_asset``: the engine node it runs and the datasets that node produces."""

    name: str
    node: str
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    """Datasets the step's nodes read: data sources and other steps' outputs."""
    upstream: tuple[str, ...]
    """Every dataset of the steps upstream (inputs of inputs too: a solver that re-runs the
    projection reads the projection's inputs), which the step's run reads from files."""
    checks: tuple[CheckTarget, ...]


@dataclass(frozen=True)
class PipelinePlan:
    """A validated config and its Dagster shape."""

    name: str
    config_path: Path
    config: PipelineConfig
    steps: tuple[Step, ...]
    source_checks: tuple[CheckTarget, ...]
    """Checks on data sources (external assets: checked on their own, not by a step)."""
    keys: dict[str, tuple[str, ...]]
    """Asset key path of every dataset, data sources included."""
    producers: dict[str, str]
    """The node that produces each produced dataset."""

    @classmethod
    def of(cls, config: PipelineConfig, config_path: Path, name: str) -> PipelinePlan:
        """The plan of ``config``: one step per engine node, in run order."""
        graph = EngineGraph(config)
        order = graph.order()
        keys: dict[str, tuple[str, ...]] = {}
        problems: list[str] = []
        for source in config.data_sources:
            keys[source] = (name, dagster_name(source))
        for i, node in enumerate(config.engines):
            if not node.outputs:
                problems.append(
                    f"engines[{i}] ({node.id!r}): has no outputs, so Dagster has no asset for "
                    "it; name its output in 'outputs'"
                )
            for output in node.outputs:
                keys[output] = (name, dagster_name(node.id), dagster_name(output))
        seen: dict[tuple[str, ...], str] = {}
        for dataset, key in keys.items():
            if key in seen:
                problems.append(
                    f"datasets {seen[key]!r} and {dataset!r} both become the Dagster asset "
                    f"{'/'.join(key)}; rename one (Dagster names allow A-Z a-z 0-9 _)"
                )
            seen.setdefault(key, dataset)
        step_names = [dagster_name(f"{name}__{node_id}") for node_id in order]
        if len(set(step_names)) < len(step_names):
            problems.append(
                f"node ids {order} give the same Dagster op name twice; rename one (Dagster "
                "names allow A-Z a-z 0-9 _)"
            )
        if problems:
            raise ConfigurationError(f"{config_path}: " + "; ".join(problems))
        producers = {out: node.id for node in config.engines for out in node.outputs}
        targets = _check_targets(config.checks, config, order, producers, config_path)
        steps = []
        for node_id, step_name in zip(order, step_names, strict=True):
            node = config.node(node_id)
            ancestors = _ancestors(graph, node_id)
            steps.append(
                Step(
                    name=step_name,
                    node=node_id,
                    outputs=tuple(node.outputs),
                    inputs=tuple(node.inputs),
                    upstream=tuple(
                        out for n in order if n in ancestors for out in config.node(n).outputs
                    ),
                    checks=tuple(t for t in targets if producers.get(t.dataset) == node_id),
                )
            )
        return cls(
            name=name,
            config_path=config_path,
            config=config,
            steps=tuple(steps),
            source_checks=tuple(t for t in targets if t.dataset in config.data_sources),
            keys=keys,
            producers=producers,
        )

    def step_of(self, dataset: str) -> Step:
        """The step that produces ``dataset``."""
        return next(s for s in self.steps if dataset in s.outputs)


def _ancestors(graph: EngineGraph, node_id: str) -> set[str]:
    found: set[str] = set()
    todo = [node_id]
    while todo:
        for pred in graph.predecessors.get(todo.pop(), set()):
            if pred not in found:
                found.add(pred)
                todo.append(pred)
    return found


def _check_targets(
    checks: list[CheckConfig],
    config: PipelineConfig,
    order: list[str],
    producers: dict[str, str],
    config_path: Path,
) -> list[CheckTarget]:
    targets: list[CheckTarget] = []
    used: set[tuple[str, str]] = set()
    for i, check in enumerate(checks):
        # The step of the node whose LiveCalc run evaluates the check carries it, so Dagster
        # shows the verdict that run recorded (one run, one verdict).
        owner = check_owner(config, check, order)
        named = [d for d in (check.dataset, check.against) if d is not None]
        owned = [d for d in named if producers.get(d) == owner]
        if named and not any(d in producers for d in named):
            dataset = named[0]  # data sources only: the external asset's check
        elif owned:
            dataset = owned[0]
        elif config.node(owner).outputs:
            dataset = config.node(owner).outputs[0]
        else:
            raise ConfigurationError(
                f"{config_path}: checks[{i}] ({check.label!r}) reads the statistics of "
                f"node {owner!r}, which has no outputs for a Dagster asset to carry the "
                "check; give the node an output or the check a 'node' that has one"
            )
        base = dagster_name(check.label)
        name, n = base, 1
        while (dataset, name) in used:
            n += 1
            name = f"{base}_{n}"
        used.add((dataset, name))
        targets.append(
            CheckTarget(
                index=i,
                label=check.label,
                name=name,
                dataset=dataset,
                severity=check.severity,
                description=check.description or f"LiveCalc {check.kind} check {check.label!r}",
            )
        )
    return targets
