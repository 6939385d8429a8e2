"""Seeded mutations of the example pipelines: each case is one (seed, index), replayable.

A case copies one example config and the example data into ``<case>/pipeline/`` and applies
one mutation: a *family* (what is mutated) and a *variant* (how), drawn from
``random.Random(f"{seed}:{index}")``, so the same seed and index always build the same files.
Families take turns (``index`` modulo their number, in an order shuffled by the seed), so a
short run already touches every family. Every mutation runs: a defect the fuzzer finds is
fixed, not skipped.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

EXAMPLES = Path(__file__).parents[2] / "examples"
CONFIG_NAME = "config.json"
POLICIES = "data/policies.parquet"
SCENARIOS = "data/scenarios.parquet"


@dataclass
class Draft:
    """A case being built: the pipeline folder, its config as a dict, and what changed."""

    rng: random.Random
    folder: Path
    config: dict[str, Any]
    text: str | None = None
    overrides: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    run_args: list[str] = field(default_factory=list)  # more `livecalc run` options
    error_in: str = ""  # the config section a refusal (exit 2) must name, when one was mutated

    def note(self, text: str) -> None:
        """Record what the mutation did, for the failure report."""
        self.details.append(text)


@dataclass(frozen=True)
class Family:
    """A kind of mutation with its named variants."""

    name: str
    variants: tuple[str, ...]
    apply: Callable[[Draft, str], None]
    reads_data: bool = False  # True: the config is unchanged and only `run` reads the data
    example: str | None = None  # the example it needs, when not any
    executor: str | None = None  # the executor it needs, when not drawn
    fails_nodes: bool = False  # True: a node is meant to fail at run time (exit 1 is right)


@dataclass(frozen=True)
class Case:
    """One fuzz case: where it came from and what was done to the example."""

    seed: int
    index: int
    family: str
    variant: str
    example: str
    executor: str
    overrides: tuple[str, ...]
    details: tuple[str, ...]
    reads_data: bool
    fails_nodes: bool = False
    run_args: tuple[str, ...] = ()
    error_in: str = ""  # what an exit 2 must name: the config section mutated

    @property
    def kind(self) -> str:
        """``family:variant``: the mutation, as reports name it."""
        return f"{self.family}:{self.variant}"

    @property
    def replay(self) -> str:
        """The command that runs this case alone."""
        return f"LIVECALC_FUZZ_SEED={self.seed} LIVECALC_FUZZ_ONLY={self.index} make fuzz"

    def describe(self) -> str:
        """Seed, mutation and changes, one per line."""
        lines = [
            f"case seed={self.seed} index={self.index} kind={self.kind} "
            f"example={self.example} executor={self.executor}",
            *(f"  mutation: {d}" for d in self.details),
        ]
        if self.overrides:
            lines.append("  overrides: " + " ".join(f"--set {o!r}" for o in self.overrides))
        if self.run_args:
            lines.append("  run options: " + " ".join(repr(a) for a in self.run_args))
        lines.append(f"  replay: {self.replay}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# JSON helpers


def _nodes(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every value below ``obj`` with its path (keys and list indices), depth first."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key != "$schema":
                yield (*path, key), value
                yield from _nodes(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield (*path, i), value
            yield from _nodes(value, (*path, i))


def _parent(config: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        config = config[key]
    return config


def _path_text(path: tuple[Any, ...]) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


class _Pairs(list[tuple[str, Any]]):
    """An object written with its key-value pairs as they are, duplicates included."""


def _dumps(obj: Any) -> str:
    """JSON text; a _Pairs object keeps repeated keys."""
    if isinstance(obj, _Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dumps(v)}" for k, v in obj) + "}"
    if isinstance(obj, dict):
        return _dumps(_Pairs(obj.items()))
    if isinstance(obj, list):
        return "[" + ", ".join(_dumps(v) for v in obj) + "]"
    return json.dumps(obj)  # NaN and Infinity come out as Python's json writes them


def _engines_of(draft: Draft, engine_type: str) -> list[dict[str, Any]]:
    aliases = {"python_esg": "esg", "cpp_projection": "projection", "python_solver": "solver"}
    return [
        e
        for e in draft.config.get("engines", [])
        if aliases.get(e.get("type"), e.get("type")) == engine_type
    ]


# ---------------------------------------------------------------------------------------
# Config mutations

_TYPED_VALUES: dict[str, list[Any]] = {
    "string": ["", "x", "1e3", "NaN", "../../etc/passwd", "é\u0000"],
    "number": [0, -1, 3.5, 1e308, 2**64],
    "bool": [True, False],
    "null": [None],
    "list": [[], [1], ["a", "b"], [{}]],
    "object": [{}, {"a": 1}, {"path": "x"}],
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return {str: "string", list: "list", dict: "object"}[type(value)]


def _wrong_type(draft: Draft, variant: str) -> None:
    nodes = [(p, v) for p, v in _nodes(draft.config) if _json_type(v) != variant]
    path, old = draft.rng.choice(nodes)
    new = draft.rng.choice(_TYPED_VALUES[variant])
    _parent(draft.config, path)[path[-1]] = new
    draft.note(f"{_path_text(path)}: {old!r} -> {new!r}")


_LEVELS = ("top", "engine", "engine_config", "output", "data_source", "run")


def _objects_at(draft: Draft, level: str) -> list[tuple[str, dict[str, Any]]]:
    """The objects at one level of the config, each with its JSON path."""
    c = draft.config
    found: list[tuple[str, Any]] = {
        "top": [("", c)],
        "engine": [(f"engines[{i}]", e) for i, e in enumerate(c.get("engines", []))],
        "engine_config": [
            (f"engines[{i}].config", e.setdefault("config", {}))
            for i, e in enumerate(c.get("engines", []))
        ],
        "output": [("output", c["output"])] if "output" in c else [],
        "data_source": [(f"data_sources.{k}", v) for k, v in c.get("data_sources", {}).items()],
        "run": [("run", c.setdefault("run", {}))],
    }[level]
    return [(p, o) for p, o in found if isinstance(o, dict)] or [("", c)]


def _missing_key(draft: Draft, variant: str) -> None:
    if variant == "engine_inputs":
        # Its own variant: a node without inputs is issue 9 item 14, other keys are not.
        where, obj = draft.rng.choice(_objects_at(draft, "engine"))
        obj.pop("inputs", None)
        draft.note(f"removed {where}.inputs")
        return
    candidates = [(p, o) for p, o in _objects_at(draft, variant) if o]
    where, obj = draft.rng.choice(candidates or [("", draft.config)])
    keys = [k for k in obj if k != "$schema" and not (variant == "engine" and k == "inputs")]
    key = draft.rng.choice(keys or list(obj))
    del obj[key]
    draft.note(f"removed {where or '<top>'}.{key}")


def _duplicate_key(draft: Draft, variant: str) -> None:
    candidates = [(p, o) for p, o in _objects_at(draft, variant) if o]
    where, obj = draft.rng.choice(candidates or [("", draft.config)])
    key = draft.rng.choice(list(obj))
    pairs = _Pairs(obj.items())
    # Half the time the same value twice (harmless-looking), else a different one.
    value = obj[key] if draft.rng.random() < 0.5 else draft.rng.choice(_TYPED_VALUES["number"])
    pairs.insert(draft.rng.randrange(len(pairs) + 1), (key, value))
    # Write the config with a marker object, then put the pairs in its place.
    marker = f"__dup_{draft.rng.randrange(10**9)}__"
    obj.clear()
    obj[marker] = True
    text = _dumps(draft.config)
    draft.text = text.replace(_dumps({marker: True}), _dumps(pairs), 1)
    draft.note(f"{where or '<top>'}: key {key!r} given twice (second value {value!r})")


_MISSPELLINGS = ("outptu", "chunk-size", "Type", "inputs ", "seed2", "compunding", "x")


def _unknown_key(draft: Draft, variant: str) -> None:
    where, obj = draft.rng.choice(_objects_at(draft, variant))
    key = draft.rng.choice(_MISSPELLINGS)
    obj[key] = draft.rng.choice([1, "a", None, {}])
    draft.note(f"added {where or '<top>'}.{key!r} = {obj[key]!r}")


_NUMBERS: dict[str, list[Any]] = {
    "huge": [1e308, 1.7976931348623157e308, 2**63, 2**64, 10**30, 1e18],
    "negative": [-1, -0.5, -1e9, -(2**63)],
    "zero": [0, 0.0, -0.0, 5e-324],
    "fraction": [0.5, 1.5, 2.000001],
    "nan": [math.nan],
    "inf": [math.inf],
    "neg_inf": [-math.inf],
}

_ENGINE_NUMBER_KEYS = {
    "esg": ("outer", "inner", "years", "seed", "a", "sigma", "market_price_of_risk"),
    "projection": (
        "discount_rate",
        "premium_multiplier",
        "mortality_multiplier",
        "lapse_multiplier",
        "expense_multiplier",
        "expenses.inflation",
        "expenses.maintenance",
        "expenses.acquisition",
    ),
    "solver": ("optimization.parameters", "confidence_level"),
}
_RUN_NUMBER_KEYS = ("run.chunk_size", "run.timeout_seconds", "run.max_parallel")


def _number_targets(draft: Draft) -> list[str]:
    """``--set`` targets for a number: the example's engines' numeric keys and run options."""
    targets = list(_RUN_NUMBER_KEYS)
    for engine_type, keys in _ENGINE_NUMBER_KEYS.items():
        for engine in _engines_of(draft, engine_type):
            targets += [f"{engine['id']}.{k}" for k in keys if not k.startswith("optimization")]
    return targets


def _number(draft: Draft, variant: str) -> None:
    value = draft.rng.choice(_NUMBERS[variant])
    leaves = [
        (p, v)
        for p, v in _nodes(draft.config)
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    if leaves and draft.rng.random() < 0.5:
        path, old = draft.rng.choice(leaves)
        _parent(draft.config, path)[path[-1]] = value
        draft.note(f"{_path_text(path)}: {old!r} -> {value!r}")
    else:
        target = draft.rng.choice(_number_targets(draft))
        draft.overrides.append(f"{target}={json.dumps(value)}")
        draft.note(f"--set {target}={json.dumps(value)}")


def _cycle(draft: Draft, variant: str) -> None:
    n = int(variant)
    engines = draft.config.setdefault("engines", [])
    for i in range(n):
        engines.append(
            {
                "id": f"loop{i}",
                "type": "projection",
                "inputs": ["policies", f"loop_out{(i - 1) % n}"],
                "outputs": [f"loop_out{i}"],
            }
        )
    draft.rng.shuffle(engines)
    draft.note(f"added a cycle of {n} engines loop0..loop{n - 1} (engine order shuffled)")


def _output(draft: Draft) -> dict[str, Any]:
    output = draft.config.setdefault("output", {"type": "parquet", "path": "out/results.parquet"})
    if "{name}" in output.get("path", ""):
        output["path"] = output["path"].replace("{name}", "all")
        output.pop("write", None)
    return output


def _path_collision(draft: Draft, variant: str) -> None:
    output = _output(draft)
    sources = draft.config.get("data_sources", {})
    source_paths = [s["path"] for s in sources.values() if isinstance(s, dict) and "path" in s]
    if variant == "output=input" and source_paths:
        output["path"] = draft.rng.choice(source_paths)
    elif variant == "output=config":
        output["path"] = CONFIG_NAME
    elif variant == "summary=output":
        output["summary_path"] = output["path"]
    elif variant == "output=summary":
        output.setdefault("summary_path", "out/summary.json")
        output["path"] = output["summary_path"]
    elif variant == "summary=input" and source_paths:
        output["summary_path"] = draft.rng.choice(source_paths)
    elif variant == "spelled_differently":
        # The same file by another spelling: ./data/../data/policies.parquet
        output["path"] = "./data/../" + (source_paths or [POLICIES])[0]
    else:  # "set_output_path": the issue's own example, through --set
        draft.overrides.append(f"output.path={(source_paths or [POLICIES])[0]}")
    draft.note(f"{variant}: output={output}")


def _path_traversal(draft: Draft, variant: str) -> None:
    sources = draft.config.setdefault(
        "data_sources", {"policies": {"type": "parquet", "path": POLICIES}}
    )
    name = draft.rng.choice(sorted(sources))
    source = sources[name]
    output = _output(draft)
    new = {
        "data_up_and_back": f"../pipeline/{source.get('path', POLICIES)}",
        "data_outside_missing": "../../../nowhere/policies.parquet",
        "data_is_folder": draft.rng.choice(["data", "..", "."]),
        "data_dev_null": "/dev/null",
        "data_is_config": CONFIG_NAME,
        "data_absolute": str((draft.folder / source.get("path", POLICIES)).resolve()),
    }.get(variant)
    if new is not None:
        source["path"] = new
        draft.note(f"data_sources.{name}.path = {new!r}")
        return
    new = {
        "output_up": "../elsewhere/results.parquet",
        "output_deep_new_folder": "a/b/c/../../results.parquet",
        "output_is_folder": "data",
        "output_under_file": f"{POLICIES}/results.parquet",
        "output_absolute": str(draft.folder / "abs" / "results.parquet"),
    }[variant]
    output["path"] = new
    draft.note(f"output.path = {new!r}")


# ---------------------------------------------------------------------------------------
# Data mutations


def _rewrite_table(draft: Draft, rel: str, table: pa.Table) -> None:
    pq.write_table(table, draft.folder / rel)


def _file_mutation(draft: Draft, variant: str, rel: str) -> None:
    path = draft.folder / rel
    data = path.read_bytes()
    rng = draft.rng
    if variant == "truncated":
        cut = rng.randrange(len(data))
        path.write_bytes(data[:cut])
        draft.note(f"{rel}: truncated to {cut} of {len(data)} bytes")
    elif variant == "empty":
        path.write_bytes(b"")
        draft.note(f"{rel}: empty file")
    elif variant == "garbage":
        size = rng.randrange(1, 5000)
        path.write_bytes(bytes(rng.randrange(256) for _ in range(size)))
        draft.note(f"{rel}: {size} random bytes")
    elif variant == "flipped_bytes":
        buf = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(buf))
        draft.note(f"{rel}: a few bits flipped")
    elif variant == "parquet_named_csv":
        path.rename(path.with_suffix(".csv"))
        _point_sources(draft, rel, rel.replace(".parquet", ".csv"))
        draft.note(f"{rel}: Parquet bytes under a .csv name")
    elif variant == "csv_named_parquet":
        pacsv.write_csv(pq.read_table(path), path)
        draft.note(f"{rel}: CSV text under a .parquet name")
    else:
        table = pq.read_table(path)
        columns = table.column_names
        if variant == "missing_column":
            drop = rng.choice(columns)
            table = table.drop_columns([drop])
            draft.note(f"{rel}: column {drop!r} removed")
        elif variant == "renamed_column":
            i = rng.randrange(len(columns))
            names = [*columns]
            names[i] = names[i].upper()
            table = table.rename_columns(names)
            draft.note(f"{rel}: column {columns[i]!r} renamed {names[i]!r}")
        elif variant == "zero_rows":
            table = table.slice(0, 0)
            draft.note(f"{rel}: no rows")
        elif variant == "one_row":
            table = table.slice(0, 1)
            draft.note(f"{rel}: one row")
        elif variant == "shuffled_rows":
            order = list(range(table.num_rows))
            rng.shuffle(order)
            table = table.take(order)
            draft.note(f"{rel}: rows shuffled")
        elif variant == "duplicated_rows":
            i = rng.randrange(table.num_rows)
            table = pa.concat_tables([table, table.slice(i, 1)])
            draft.note(f"{rel}: row {i} repeated at the end")
        elif variant == "column_as_text":
            i = rng.randrange(len(columns))
            table = table.set_column(i, columns[i], table.column(i).cast(pa.string()))
            draft.note(f"{rel}: column {columns[i]!r} stored as text")
        else:  # "all_nulls"
            i = rng.randrange(len(columns))
            typ = table.schema.field(i).type
            table = table.set_column(i, columns[i], pa.nulls(table.num_rows, typ))
            draft.note(f"{rel}: column {columns[i]!r} all nulls")
        _rewrite_table(draft, rel, table)


def _point_sources(draft: Draft, old: str, new: str) -> None:
    for source in draft.config.get("data_sources", {}).values():
        if isinstance(source, dict) and source.get("path") == old:
            source["path"] = new


_FILE_VARIANTS = (
    "truncated",
    "empty",
    "garbage",
    "flipped_bytes",
    "parquet_named_csv",
    "csv_named_parquet",
    "missing_column",
    "renamed_column",
    "zero_rows",
    "one_row",
    "shuffled_rows",
    "duplicated_rows",
    "column_as_text",
    "all_nulls",
)

_BAD_VALUES: dict[str, list[Any]] = {
    "policy_id": [-1, 2**32, 2**64 - 1, 1.5, math.nan, None, "x"],
    "age": [-1, 121, 255, 256, 30.5, math.nan, None, "x"],
    "gender": [-1, 3, 255, 0.5, None],
    "underwriting_class": [-1, 4, 255, 256, None],
    "product_type": [-1, 3, 255, None],
    "term": [0, -1, 121, 1000, 4294967295, 4294967296, 2.5, None],
    "sum_assured": [-1.0, math.nan, math.inf, 1e308, 1e300, None, "1,000"],
    "premium": [-1.0, math.nan, -math.inf, 1e308, 1e300, None],
    "scenario_id": [-1, 4294967295, 2**32, 0.5, None],
    "year": [0, -1, 2, 10**6, None],
    "rate": [-1.0, -2.0, math.nan, math.inf, 1e308, 1e10, None, "x"],
}


def _value_mutation(draft: Draft, rel: str, column: str) -> None:
    path = draft.folder / rel
    table = pq.read_table(path)
    value = draft.rng.choice(_BAD_VALUES[column])
    row = draft.rng.randrange(table.num_rows)
    values = table.column(column).to_pylist()
    values[row] = value
    if isinstance(value, str):
        values = [None if v is None else str(v) for v in values]
        array = pa.array(values, pa.string())
    elif isinstance(value, float) or any(isinstance(v, float) for v in values):
        array = pa.array([None if v is None else float(v) for v in values], pa.float64())
    else:
        # An integer the column's type cannot hold is stored in a wider one, as a user's
        # tool would: 256 in a uint8 column becomes int64, 2**64 - 1 uint64.
        typ = table.schema.field(column).type
        for candidate in (typ, pa.int64(), pa.uint64()):
            try:
                array = pa.array(values, candidate)
                break
            except (pa.ArrowInvalid, OverflowError):
                continue
    table = table.set_column(table.column_names.index(column), column, array)
    _rewrite_table(draft, rel, table)
    draft.note(f"{rel}: column {column!r}, row {row}: {value!r} (stored as {array.type})")


_CSV_VARIANTS = {
    "text": "abc",
    "empty": "",
    "nan": "nan",
    "inf": "inf",
    "negative": "-5",
    "fraction": "0.5",
    "huge": "1e400",
    "quote": '"',
    "extra_field": "1,2",
    "unchanged": None,
}


def _csv(draft: Draft, variant: str) -> None:
    rel = draft.rng.choice(
        [r for r in (POLICIES, SCENARIOS) if (draft.folder / r).exists() and _uses(draft, r)]
    )
    table = pq.read_table(draft.folder / rel)
    new_rel = rel.replace(".parquet", ".csv")
    lines = _csv_text(table).splitlines()
    cell = _CSV_VARIANTS[variant]
    detail = f"{new_rel}: written as CSV"
    if cell is not None:
        row = draft.rng.randrange(1, len(lines))
        col = draft.rng.randrange(table.num_columns)
        fields = lines[row].split(",")
        fields[col] = cell
        lines[row] = ",".join(fields)
        detail += f", line {row + 1} column {table.column_names[col]!r} = {cell!r}"
    (draft.folder / new_rel).write_text("\n".join(lines) + "\n")
    (draft.folder / rel).unlink()
    _point_sources(draft, rel, new_rel)
    draft.note(detail)


def _csv_text(table: pa.Table) -> str:
    rows = [",".join(table.column_names)]
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    for values in zip(*columns, strict=True):
        rows.append(",".join(repr(v) if isinstance(v, float) else str(v) for v in values))
    return "\n".join(rows)


def _uses(draft: Draft, rel: str) -> bool:
    return any(
        isinstance(s, dict) and s.get("path") == rel
        for s in draft.config.get("data_sources", {}).values()
    )


def _override(draft: Draft, variant: str) -> None:
    ids = [e.get("id") for e in draft.config.get("engines", [])]
    engine = draft.rng.choice(ids)
    value = {
        "no_equals": f"{engine}.seed",
        "unknown_engine": "nosuchengine.x=1",
        "unknown_key": f"{engine}.nosuchkey=1",
        "bad_json": f"{engine}.output={{not json",
        "deep_path": f"{engine}.a.b.c.d=1",
        "through_a_value": f"{engine}.output.sub=1",
        "empty": "",
        "run_unknown": "run.nosuch=1",
        "output_null": "output.path=null",
        "executor_unknown": "run.executor=threads",
        "equals_only": "=",
    }[variant]
    draft.overrides.append(value)
    draft.note(f"--set {value!r}")


def _graph(draft: Draft, variant: str) -> None:
    engines = draft.config.setdefault("engines", [])
    i = draft.rng.randrange(len(engines))
    node = engines[i]
    if variant == "empty_inputs":
        node["inputs"] = []
    elif variant == "drop_an_input" and node.get("inputs"):
        node["inputs"].pop(draft.rng.randrange(len(node["inputs"])))
    elif variant == "rename_output" and node.get("outputs"):
        node["outputs"][0] += "_renamed"
    elif variant == "duplicate_output":
        other = engines[(i + 1) % len(engines)]
        node["outputs"] = list(other.get("outputs", ["x"]))
    elif variant == "duplicate_id":
        node["id"] = engines[(i + 1) % len(engines)]["id"]
    elif variant == "no_engines":
        engines.clear()
    elif variant == "unused_source":
        draft.config.setdefault("data_sources", {})["extra"] = {"path": POLICIES}
    elif variant == "three_outputs":
        node["outputs"] = [*node.get("outputs", []), "more", "most"]
    else:  # "input_twice"
        node["inputs"] = [*node.get("inputs", []), *node.get("inputs", [])[:1]]
    draft.note(f"{variant}: engines[{i}] (id {node.get('id')!r}) is now {node}")


_FAILING_NODES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # variant -> (engine type, its config, node keys); executor forced by the family
    "crash_segfault": ("test_crash", {"kind": "segfault"}, {}),
    "crash_abort": ("test_crash", {"kind": "abort"}, {}),
    "fail_once_retried": ("test_fail_n", {"n": 1}, {"retries": 1}),
    "fail_always": ("test_fail_n", {"n": 10**6}, {}),
    "fail_result": ("test_fail_n", {"n": 10**6, "mode": "result"}, {}),
    "sleep_past_timeout": ("test_sleep", {"seconds": 30}, {"timeout_seconds": 1}),
    "spin_past_timeout": ("test_spin", {}, {"timeout_seconds": 1}),
    "echo": ("test_echo", {}, {}),
}


def _failing_node(draft: Draft, variant: str) -> None:
    engine_type, config, keys = _FAILING_NODES[variant]
    draft.config.setdefault("plugins", []).append("livecalc.testing:register_testing_engines")
    sources = sorted(draft.config.get("data_sources", {}))
    node = {
        "id": "fault",
        "type": engine_type,
        "config": config,
        "inputs": [draft.rng.choice(sources)] if sources else [],
        "outputs": ["fault_out"],
        **keys,
    }
    draft.config.setdefault("engines", []).insert(draft.rng.randrange(2), node)
    output = draft.config.get("output")
    if isinstance(output, dict) and draft.rng.random() < 0.5:
        # Also ask for the node's output: a failed node must leave no file of its own.
        output["path"] = "out/{name}.parquet"
        output["write"] = ["fault_out"]
    draft.note(f"added node {node}")


# Values for run.chunking and the checkpoint options: valid, edge, huge, non-finite, typed
# wrongly. JSON NaN and Infinity come out as Python's json writes them.
_RUN_OPTIONS: dict[str, tuple[str, list[Any]]] = {
    "memory_budget": (
        "chunking",
        [{"strategy": "memory", "budget": b} for b in
         ("0", "1", "-5", "0.5", "1e3", "1GB", "512MiB", "9" * 30 + "TB", "abc", "", 0, -1,
          1, 2**70, 1.5, True, None, math.inf)],
    ),
    "fixed_size": (
        "chunking",
        [{"strategy": "fixed", "size": s} for s in (0, -1, 1, 7, 1.5, "3", 2**63, None, True)],
    ),
    "chunking_shape": (
        "chunking",
        [{"strategy": "fixed", "size": 5, "budget": "1GB"}, {"strategy": "memory"},
         {"strategy": "memory", "budget": "1GB", "size": 3}, {"strategy": "bogus"}, {}, [],
         "1GB", None, {"strategy": "fixed"}],
    ),
    "checkpoint": ("checkpoint", [True, False, "yes", None, 0, 1, []]),
    "checkpoint_chunks": ("checkpoint_chunks", ["all", "auto", "none", "", 1, None, ["all"]]),
    "checkpoint_max_overhead": (
        "checkpoint_max_overhead", [0, -1, 1e-12, 0.5, 1, 1e308, math.inf, math.nan, "x", None]
    ),
    "checkpoint_min_chunk_seconds": (
        "checkpoint_min_chunk_seconds", [0, -1, 1e-9, 2.5, 1e308, math.inf, math.nan, "1", None]
    ),
}  # fmt: skip


def _run_options(draft: Draft, variant: str) -> None:
    key, values = _RUN_OPTIONS[variant]
    run = draft.config.setdefault("run", {})
    value = draft.rng.choice(values)
    run[key] = value
    if draft.rng.random() < 0.5:
        run["chunk_size"] = draft.rng.choice([1, 16, 64])  # several chunks, so parts are kept
    draft.note(f"run.{key} = {value!r}, run.chunk_size = {run.get('chunk_size')!r}")


def _producers(draft: Draft) -> dict[str, str]:
    return {
        out: e.get("id")
        for e in draft.config.get("engines", [])
        for out in e.get("outputs", [])[:1]
    }


def _selection(draft: Draft, variant: str) -> None:
    """`--node`, `--dataset` and `--keep-datasets` combinations on an unchanged config."""
    engines = draft.config.get("engines", [])
    ids = [e.get("id") for e in engines]
    producers = _producers(draft)
    fed = [e for e in engines if any(i in producers for i in e.get("inputs", []))]
    rng = draft.rng
    args: list[str] = []
    paths = [
        "pipeline/" + SCENARIOS,
        "pipeline/" + POLICIES,
        "pipeline/" + CONFIG_NAME,
        "pipeline/nosuch.parquet",
        "pipeline/data",
        "~nonexistentuser/x.parquet",
        "pipeline/out/results.parquet",
        "",
    ]
    if variant == "node":
        args = ["--node", rng.choice([*ids, "nosuch", ""])]
        if rng.random() < 0.3:
            args += ["--node", rng.choice(ids)]  # maybe the same node twice
    elif variant == "node_and_dataset":
        node = rng.choice(fed or engines)
        needed = [i for i in node.get("inputs", []) if i in producers] or ["scenarios"]
        name = rng.choice([*needed, "nosuch", "policies", "results"])
        args = ["--node", node.get("id"), "--dataset", f"{name}={rng.choice(paths)}"]
    elif variant == "dataset_without_node":
        args = ["--dataset", f"{rng.choice([*producers, 'x'])}={rng.choice(paths)}"]
    elif variant == "malformed_dataset":
        node = rng.choice(ids)
        args = ["--node", node, "--dataset", rng.choice(["noequals", "=x", "a=", "==", "a=b=c"])]
    elif variant == "keep_datasets":
        args = ["--keep-datasets"]
        if rng.random() < 0.5:
            args += ["--node", rng.choice(ids)]
    else:  # "keep_and_dataset": a downstream node given a file, keeping its own
        node = rng.choice(fed or engines)
        needed = [i for i in node.get("inputs", []) if i in producers] or ["scenarios"]
        args = ["--node", node.get("id"), "--keep-datasets"]
        args += ["--dataset", f"{needed[0]}={rng.choice(paths[:2])}"]
    draft.run_args.extend(args)
    draft.note(f"run options: {args}")


# ---------------------------------------------------------------------------------------
# The operations sections: checks, sla, alerts

FUZZ_SECRET = "fuzz-Secr3t-0f-the-h00k"
"""The password and token of every webhook URL the fuzzer writes: no output may show it."""
_HOOK = f"http://fuzz:{FUZZ_SECRET}@127.0.0.1:9/hook?token={FUZZ_SECRET}"  # port 9: none listens

_OPS_VALUES: list[Any] = [
    *(0, -1, 0.5, 5e-324, 86_400, 86_401, 1e308, 2**63, 2**64, 10**30),
    *(math.nan, math.inf, -math.inf),
    *("", "x", "a\x00b", "\ud800", "x\udfff y", "é", "1e999", "x" * 5000),
    *(None, True, [], {}, ["x"], {"a": 1}),
]
_URL_VALUES = [
    _HOOK.replace("http://", "ftp://"),
    _HOOK + "\x00",
    _HOOK + "\ud800",
    _HOOK.replace(":9/", ":99999/"),
    _HOOK.replace(":9/", ":x/"),
    _HOOK.replace("127.0.0.1:9", ""),
    _HOOK.replace("/hook", "/ho ok"),
    "https://",
]
_CHECK_KEYS = (
    *("kind", "name", "severity", "description", "dataset", "columns", "column", "statistic"),
    *("min", "max", "equals", "expr", "node", "z_threshold", "against", "tolerance"),
)
_ALERT_KEYS = ("type", "url", "argv", "on", "timeout_seconds", "retries", "backoff_seconds")


def _ops_sections(draft: Draft) -> dict[str, Any]:
    """Valid checks, sla and alerts for the example: the start of every mutation."""
    engines = draft.config["engines"]
    first = engines[0]["outputs"][0]
    return {
        "checks": [
            {"kind": "row_count", "dataset": "policies", "min": 1},
            {"kind": "range", "dataset": "policies", "column": "age", "min": 0, "max": 120},
            {"kind": "finite", "dataset": first, "severity": "warn"},
            {"kind": "metric", "expr": "x >= -1e300", "severity": "warn"},
        ],
        "sla": {"run_seconds": 600, "nodes": {engines[0]["id"]: 300}},
        "alerts": [
            {
                "type": "webhook",
                "url": _HOOK,
                "on": ["failure", "check_failed", "sla_breach", "success"],
                "timeout_seconds": 2,
                "retries": 1,
                "backoff_seconds": 0.1,
            },
            {"type": "command", "argv": ["true"], "on": ["success"], "timeout_seconds": 5},
        ],
    }


def _ops(draft: Draft, variant: str) -> None:
    """One of the operations sections with one value replaced (``valid``: none), the others
    as they are; the error must name the section, never the webhook's secret."""
    rng = draft.rng
    sections = _ops_sections(draft)
    draft.config.update(sections)
    if variant == "valid":
        alert = sections["alerts"][0]
        alert["timeout_seconds"] = rng.choice([0.01, 0.5, 2, 86_400])
        alert["backoff_seconds"] = rng.choice([0, 0.01, 1e-300])
        sections["sla"]["run_seconds"] = rng.choice([1e-9, 1, 1e300])
        sections["checks"][0]["min"] = rng.choice([0, -1e308, 1e308])
        draft.note(f"valid sections {json.dumps(sections, default=str)}")
        return
    value = rng.choice(_OPS_VALUES)
    if variant == "checks":
        i = rng.randrange(len(sections["checks"]))
        key = rng.choice(_CHECK_KEYS)
        sections["checks"][i][key] = value
        where = f"checks[{i}].{key}"
    elif variant == "sla":
        key = rng.choice(("run_seconds", "nodes", "node_seconds", "node_id"))
        nodes = sections["sla"]["nodes"]
        if key == "node_seconds":
            nodes[next(iter(nodes))] = value
        elif key == "node_id":
            nodes[str(value) if not isinstance(value, str) else value] = 60
        else:
            sections["sla"][key] = value
        where = f"sla.{key}"
    else:
        # Mostly the webhook, and its url and type twice as often: a refusal that quotes the
        # alert whole would show the URL's secret.
        i = rng.choice((0, 0, 1))
        key = rng.choice((*_ALERT_KEYS, "url", "type"))
        if key == "url":
            value = rng.choice(_URL_VALUES)
        elif key == "argv" and rng.random() < 0.5:
            value = [value]
        sections["alerts"][i][key] = value
        where = f"alerts[{i}].{key}"
    shown = repr(value) if len(repr(value)) < 80 else repr(value)[:80] + "..."
    draft.note(f"{where} = {shown}")
    draft.error_in = variant


# ---------------------------------------------------------------------------------------
# The catalogue


FAMILIES: tuple[Family, ...] = (
    Family("wrong_type", tuple(_TYPED_VALUES), _wrong_type),
    Family("missing_key", (*_LEVELS, "engine_inputs"), _missing_key),
    Family("duplicate_key", _LEVELS, _duplicate_key),
    Family("unknown_key", _LEVELS, _unknown_key),
    Family("number", tuple(_NUMBERS), _number),
    Family("cycle", ("1", "2", "3", "4", "5"), _cycle),
    Family(
        "path_collision",
        (
            "output=input",
            "output=config",
            "summary=output",
            "output=summary",
            "summary=input",
            "spelled_differently",
            "set_output_path",
        ),
        _path_collision,
    ),
    Family(
        "path_traversal",
        (
            "data_up_and_back",
            "data_outside_missing",
            "data_is_folder",
            "data_dev_null",
            "data_is_config",
            "data_absolute",
            "output_up",
            "output_deep_new_folder",
            "output_is_folder",
            "output_under_file",
            "output_absolute",
        ),
        _path_traversal,
    ),
    Family(
        "policy_file",
        _FILE_VARIANTS,
        lambda d, v: _file_mutation(d, v, POLICIES),
        reads_data=True,
    ),
    Family(
        "policy_value",
        (
            "policy_id",
            "age",
            "gender",
            "underwriting_class",
            "product_type",
            "term",
            "sum_assured",
            "premium",
        ),
        lambda d, v: _value_mutation(d, POLICIES, v),
        reads_data=True,
    ),
    Family("csv", tuple(_CSV_VARIANTS), _csv, reads_data=True),
    Family(
        "scenario_file",
        _FILE_VARIANTS,
        lambda d, v: _file_mutation(d, v, SCENARIOS),
        reads_data=True,
        example="dag_config_projection_only.json",
    ),
    Family(
        "scenario_value",
        ("scenario_id", "year", "rate"),
        lambda d, v: _value_mutation(d, SCENARIOS, v),
        reads_data=True,
        example="dag_config_projection_only.json",
    ),
    Family(
        "override",
        (
            "no_equals",
            "unknown_engine",
            "unknown_key",
            "bad_json",
            "deep_path",
            "through_a_value",
            "empty",
            "run_unknown",
            "output_null",
            "executor_unknown",
            "equals_only",
        ),
        _override,
    ),
    Family(
        "graph",
        (
            "empty_inputs",
            "drop_an_input",
            "rename_output",
            "duplicate_output",
            "duplicate_id",
            "no_engines",
            "unused_source",
            "three_outputs",
            "input_twice",
        ),
        _graph,
    ),
    Family("run_options", tuple(_RUN_OPTIONS), _run_options),
    Family(
        "selection",
        (
            "node",
            "node_and_dataset",
            "dataset_without_node",
            "malformed_dataset",
            "keep_datasets",
            "keep_and_dataset",
        ),
        _selection,
    ),
    # Crashes and timeouts need process isolation: inline they stop the orchestrator itself.
    Family(
        "failing_node",
        tuple(_FAILING_NODES),
        _failing_node,
        executor="processes",
        fails_nodes=True,
    ),
    # A declared check may fail (exit 1 is right); a config alert is sent at the run's end.
    Family("ops_sections", ("checks", "sla", "alerts", "valid"), _ops, fails_nodes=True),
)

EXAMPLE_CONFIGS = tuple(sorted(p.name for p in EXAMPLES.glob("dag_config_*.json")))
PROCESSES_SHARE = 0.1  # of cases run with --executor processes (slower: worker start-up)


def draw(seed: int, index: int) -> tuple[Family, str, str, str, random.Random]:
    """The family, variant, example and executor of a case, and its generator."""
    order = list(FAMILIES)
    random.Random(seed).shuffle(order)
    family = order[index % len(order)]
    rng = random.Random(f"{seed}:{index}")
    variant = rng.choice(family.variants)
    example = family.example or rng.choice(EXAMPLE_CONFIGS)
    executor = "processes" if rng.random() < PROCESSES_SHARE else "local"
    executor = family.executor or executor
    return family, variant, example, executor, rng


def build(seed: int, index: int, case_dir: Path) -> Case:
    """Write the case's pipeline into ``case_dir / "pipeline"`` and describe it."""
    family, variant, example, executor, rng = draw(seed, index)
    folder = case_dir / "pipeline"
    folder.mkdir(parents=True)
    shutil.copytree(EXAMPLES / "data", folder / "data")
    config = json.loads((EXAMPLES / example).read_text())
    config.pop("$schema", None)
    # Outputs go to out/ in the case (the examples write to output/<example>/).
    output = config.get("output", {})
    for key in ("path", "summary_path"):
        if key in output:
            output[key] = "out/" + output[key].rsplit("/", 1)[-1]
    draft = Draft(rng, folder, config)
    family.apply(draft, variant)
    text = draft.text if draft.text is not None else _dumps(draft.config)
    (folder / CONFIG_NAME).write_text(text)
    return Case(
        seed=seed,
        index=index,
        family=family.name,
        variant=variant,
        example=example,
        executor=executor,
        overrides=tuple(draft.overrides),
        details=tuple(draft.details),
        reads_data=family.reads_data,
        fails_nodes=family.fails_nodes,
        run_args=tuple(draft.run_args),
        error_in=draft.error_in,
    )
