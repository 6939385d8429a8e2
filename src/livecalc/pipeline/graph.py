"""The engine graph: who produces each named dataset, the run order, cycles, skipped nodes.

Nodes are the config's engines; an edge runs from the engine that produces a dataset (its
``outputs``) to every engine that lists it in ``inputs``. Data sources are produced by no
engine. ``graphlib`` gives the order and names the cycle when there is one.
"""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from livecalc.pipeline.config import DataSource, EngineNode, PipelineConfig

__all__ = ["EngineGraph", "graph_problems"]


def graph_problems(
    nodes: Sequence[tuple[int, EngineNode]], sources: Mapping[str, DataSource]
) -> list[str]:
    """Every structural problem of the graph, each named by its JSON path with the fix."""
    problems: list[str] = []
    seen_ids: dict[str, int] = {}
    for i, node in nodes:
        if node.id in seen_ids:
            problems.append(
                f"engines[{i}].id: duplicate id {node.id!r} (also engines[{seen_ids[node.id]}]); "
                "give every engine its own id"
            )
        else:
            seen_ids[node.id] = i

    producer: dict[str, str] = {name: f"data_sources.{name}" for name in sources}
    for i, node in nodes:
        for j, name in enumerate(node.outputs):
            if name in producer:
                problems.append(
                    f"engines[{i}].outputs[{j}]: {name!r} is already produced by "
                    f"{producer[name]}; rename one of them"
                )
            else:
                producer[name] = f"engines[{i}] ({node.id!r})"

    for i, node in nodes:
        for j, name in enumerate(node.inputs):
            if name not in producer:
                close = difflib.get_close_matches(name, list(producer), 1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(sorted(producer)) or "none"
                problems.append(
                    f"engines[{i}].inputs[{j}]: {name!r} is produced by no engine and is no "
                    f"data source{hint}; available: {known}"
                )

    index = {n.id: i for i, n in nodes}
    for cycle in _find_cycles([n for _, n in nodes]):
        problems.append(
            f"engines[{index[cycle[0]]}]: cycle {' -> '.join(cycle)}; an engine cannot "
            "depend on its own output: remove one of these inputs"
        )
    return problems


def _edges(nodes: Sequence[EngineNode]) -> dict[str, set[str]]:
    """Predecessors of each node id, through the datasets it reads."""
    producer = {name: n.id for n in nodes for name in n.outputs}
    edges: dict[str, set[str]] = {}
    for n in nodes:
        # setdefault: a duplicate id (reported elsewhere) adds its inputs to the same node.
        edges.setdefault(n.id, set()).update(producer[i] for i in n.inputs if i in producer)
    return edges


def _find_cycles(nodes: Sequence[EngineNode]) -> list[list[str]]:
    """Each cycle once, in data-flow order (producer -> consumer), first node repeated.

    A cycle starts at its node listed first in "engines", so the message is the same on
    every run (graphlib's starting point depends on set order).
    """
    edges = {node: set(preds) for node, preds in _edges(nodes).items()}
    position = {n.id: i for i, n in reversed(list(enumerate(nodes)))}
    cycles = []
    # Each round cuts one edge, so there are at most as many rounds as edges.
    for _ in range(sum(len(p) for p in edges.values()) + 1):
        try:
            graphlib.TopologicalSorter(edges).prepare()
        except graphlib.CycleError as exc:
            # graphlib lists the cycle in data-flow order: each node, then one that reads it.
            found = list(exc.args[1][:-1])
            start = min(range(len(found)), key=lambda k: position.get(found[k], len(nodes)))
            ring = found[start:] + found[:start]
            cycles.append([*ring, ring[0]])
            # Cut one edge of this cycle (ring[1] reads ring[0]) so the next attempt finds
            # another one, if any.
            edges[ring[1 % len(ring)]].discard(ring[0])
            continue
        return cycles
    raise AssertionError(f"cycle search did not end: {cycles}")  # pragma: no cover


@dataclass
class EngineGraph:
    """The validated engine graph of a config, with the questions the runner asks of it."""

    config: PipelineConfig
    predecessors: dict[str, set[str]] = field(init=False)
    producers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.predecessors = _edges(self.config.engines)
        self.producers = {name: n.id for n in self.config.engines for name in n.outputs}

    def order(self) -> list[str]:
        """Node ids in an order where every node comes after those it reads from."""
        return list(graphlib.TopologicalSorter(self.predecessors).static_order())

    def successors(self, node_id: str) -> set[str]:
        """Nodes that read ``node_id``'s outputs directly."""
        return {n for n, preds in self.predecessors.items() if node_id in preds}

    def descendants(self, node_id: str) -> set[str]:
        """Every node downstream of ``node_id``, directly or not."""
        found: set[str] = set()
        todo = [node_id]
        while todo:
            for nxt in self.successors(todo.pop()):
                if nxt not in found:
                    found.add(nxt)
                    todo.append(nxt)
        return found

    def consumers(self, dataset: str) -> list[str]:
        """Nodes that list ``dataset`` among their inputs."""
        return [n.id for n in self.config.engines if dataset in n.inputs]

    def ancestors(self, node_id: str) -> set[str]:
        """Every node upstream of ``node_id``, directly or not."""
        found: set[str] = set()
        todo = [node_id]
        while todo:
            for prev in self.predecessors.get(todo.pop(), ()):
                if prev not in found:
                    found.add(prev)
                    todo.append(prev)
        return found

    def sorter(self, nodes: Sequence[str] | None = None) -> graphlib.TopologicalSorter[str]:
        """A prepared sorter for running ready nodes as their inputs finish.

        With ``nodes``, of those only: a node then waits for every given node upstream of
        it, through nodes not given too (a solver re-running a projection not given waits
        for the ESG that feeds that projection).
        """
        if nodes is None:
            sorter = graphlib.TopologicalSorter(self.predecessors)
            sorter.prepare()
            return sorter
        keep = set(nodes)
        sorter = graphlib.TopologicalSorter({n: self.ancestors(n) & keep for n in keep})
        sorter.prepare()
        return sorter

    def output_paths(self) -> dict[str, Path]:
        """The file each written record output goes to, by dataset name (absolute paths).

        The config's ``output.write`` list, or by default the record output of every node that
        reads a policy data source (the projection), or failing that of the last node that
        has outputs. With several outputs and no ``{name}`` in the path, each file gets
        ``_<name>`` after the path's stem.
        """
        out = self.config.output
        if out is None:
            return {}
        if out.write is not None:
            names = list(out.write)
        else:
            policy_sources = {
                name
                for name, src in self.config.data_sources.items()
                if src.resolved_kind(name) == "policies"
            }
            readers = [
                n
                for n in self.order()
                if policy_sources & set(self.config.node(n).inputs) and self.config.node(n).outputs
            ]
            if not readers:
                readers = [n for n in self.order() if self.config.node(n).outputs][-1:]
            names = [self.config.node(n).outputs[0] for n in readers]
        paths = {}
        for name in names:
            text = out.path.replace("{name}", name)
            if len(names) > 1 and "{name}" not in out.path:
                text = str(Path(text).with_name(f"{Path(text).stem}_{name}.parquet"))
            paths[name] = self.config.resolve(text)
        return paths

    def record_outputs(self) -> Iterator[tuple[str, str]]:
        """(node id, dataset) of each node's first output, in run order."""
        for node_id in self.order():
            node = self.config.node(node_id)
            if node.outputs:
                yield node_id, node.outputs[0]
