"""Seeded fuzz tests of the experiment layer's files, in the manner of ``tests/test_fuzz_files.py``:
an experiment TOML file, an evaluation's ``robustness.json`` and an experiment's ``summary.json``,
each mutated by `hypothesis` (derandomized, no example database) and read by what reads them.

* ``experiment toml``: ``load_plan`` (read, schema, registries, every neuron, mode and cell's
  training settings built). Its seeds are a hand-written file with every table and the shipped
  ``experiments/linear_leak.toml``; a case mutates their bytes, or their parsed tree (values
  replaced by hostile ones: wrong types, NaN, ±inf, 10³⁰, dates, 200-deep arrays, 5,000-digit
  integers; values removed; keys added, per-run training settings among them), written back as
  TOML. Models are not built (``--dry-run`` does that, at the sizes the file asks for).
* ``robustness.json``: read as a report reads it (``find_entries``, ``aggregate``, the table and
  CSV) and as ``evaluate`` shows a reused one (``summary_table``, ``checks_text``).
* ``summary.json``: read back as an experiment does before it runs (``check_out``).

Each case must return or raise a :class:`SpikeshieldError` in one line, allocate at most
``MEMORY_LIMIT`` (tracemalloc's peak) and finish within ``TIME_LIMIT_S`` (``check_case``).
``SPIKESHIELD_FUZZ_CASES`` sets the cases per format (default 100).
"""

from __future__ import annotations

import datetime
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikeshield.analysis.report import aggregate, csv_text, find_entries, markdown, read_summary
from spikeshield.analysis.robustness import checks_text, csv_rows, read_evaluation, summary_table
from spikeshield.experiments.pipeline import EvalSettings, evaluate
from spikeshield.experiments.plan import Plan, load_plan
from spikeshield.experiments.runner import check_out
from tests.experiments.test_plan import TINY
from tests.test_fuzz_files import (
    FUZZ,
    _slots,
    byte_ops,
    check_case,
    mutate_bytes,
    mutate_tree,
    tree_ops,
)

ROOT = Path(__file__).parents[2]

# ------------------------------------------------------------------------------- TOML trees

HUGE = object()
"""Stands for an integer of 5,000 digits (written, never converted here)."""
DEEP: list = []
for _ in range(199):
    DEEP = [DEEP]
TOML_VALUES: list[Any] = [True, -1, 0, 1, 2**31, 2**63 - 1, 2**64, 10**30, 1.5, -0.5, math.nan, math.inf]
TOML_VALUES += [-math.inf, "x", "", "if", [], {}, [1], [0.1, "a"], {"a": 1}, {"neuron": "if"}, DEEP, HUGE]
TOML_VALUES += [datetime.date(1979, 5, 27), datetime.datetime(1979, 5, 27, 7, 32)]
KEYS = ["seed", "neuron", "model", "device", "x", "eps", "options", "mode", "noises", "corruptions", "train"]
toml_ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "delete", "add"]),
        st.integers(0, 1 << 16),
        st.integers(0, len(TOML_VALUES) - 1),
        st.sampled_from(KEYS),
    ),
    min_size=1,
    max_size=3,
)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (tables inline, so any tree is one line per top-level key)."""
    if value is HUGE:
        return "7" * 5000
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (ASCII here)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(tree: dict[str, Any]) -> bytes:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in tree.items()).encode()


def copy_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: copy_tree(v) for k, v in value.items()}
    return [copy_tree(v) for v in value] if isinstance(value, list) else value


def mutate_toml(tree: dict[str, Any], ops: list[tuple[str, int, int, str]]) -> bytes:
    tree = copy_tree(tree)
    for kind, where, what, key in ops:
        slots = _slots(tree)
        node, slot = slots[where % len(slots)] if slots else (tree, None)
        value = copy_tree(TOML_VALUES[what])
        if kind == "add":
            target = node[slot] if slot is not None and isinstance(node[slot], dict) else tree
            target[key] = value
        elif kind == "delete" and slot is not None:
            del node[slot]
        elif slot is not None:
            node[slot] = value
    return toml_text(tree)


# ------------------------------------------------------------------------------- formats

RICH = (
    TINY.replace("[train]", '[modes.plain]\nmode = "bptt"\n[train]')
    .replace("epochs = 1", 'epochs = 1\nlr = 0.003\naugment = ["flip"]')
    .replace("[evaluate]", "train = { limit_train = 64 }\n[datasets.digits.evaluate]\nseed = 1\n[evaluate]")
)


@dataclass(repr=False)
class Format:
    file: str
    read: Callable[[Path], Any]
    seeds: list[bytes]
    trees: list[Any]
    encode: Callable[[Any, Any], bytes]
    """A tree and the ops drawn for it → the mutated file."""


def read_plan(path: Path) -> Any:
    return load_plan(path)


def read_robustness(path: Path) -> Any:
    """What reads a ``robustness.json``: the report, and ``evaluate`` showing a reused one."""
    result = read_evaluation(path)
    summary_table(result)
    checks_text(result)
    csv_rows(result)
    entries, notes = find_entries([path.parent])
    summary = aggregate(entries, title="fuzz", notes=notes)
    return markdown(summary) + csv_text(summary)


def summary_reader(plan: Plan) -> Callable[[Path], Any]:
    def read(path: Path) -> Any:
        read_summary(path)
        check_out(plan, path.parent, [], "cpu")

    return read


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class Seeds(dict):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing case
        return "<seed files>"


@pytest.fixture(scope="module")
def formats(trained_run, tmp_path_factory) -> dict[str, Format]:
    import tomllib

    folder = tmp_path_factory.mktemp("fuzz-plan-seeds")
    found = Seeds()
    texts = [RICH.encode(), (ROOT / "experiments" / "linear_leak.toml").read_bytes()]
    found["experiment toml"] = Format(
        "exp.toml", read_plan, texts, [tomllib.loads(t.decode()) for t in texts], mutate_toml
    )
    run = Path(shutil.copytree(trained_run, folder / "run"))
    small = EvalSettings(
        attacks=("fgsm", "pgd"), eps=(0.0, 0.1), attack_options={"steps": 2}, noises={"gaussian": (0.0, 0.2)},
        limit=16, check_samples=16,
    )  # fmt: skip
    result = json.loads(json.dumps(evaluate(run, small, device="cpu", log=lambda _m: None).result))
    tree_json = lambda tree, ops: mutate_tree(tree, ops).encode()  # noqa: E731
    found["robustness.json"] = Format(
        "robustness.json", read_robustness, [json.dumps(result).encode()], [result], tree_json
    )
    entries, notes = find_entries([run])
    plan = load_plan(_write(folder / "plan.toml", TINY.encode()))
    summary = aggregate(entries, title="fuzz", notes=notes, plan_fingerprint=plan.fingerprint())
    summary = json.loads(json.dumps(summary))
    found["summary.json"] = Format(
        "summary.json", summary_reader(plan), [json.dumps(summary).encode()], [summary], tree_json
    )
    return found


FORMAT_NAMES = ["experiment toml", "robustness.json", "summary.json"]


def test_every_seed_reads_cleanly(formats, tmp_path):
    """The fuzzing starts from files the readers accept, and the TOML writer here round-trips."""
    assert sorted(formats) == sorted(FORMAT_NAMES)
    for name, fmt in formats.items():
        for i, seed in enumerate(fmt.seeds):
            fmt.read(_write(tmp_path / name / str(i) / fmt.file, seed))
    toml = formats["experiment toml"]
    for i, tree in enumerate(toml.trees):
        plan = load_plan(_write(tmp_path / "written" / str(i) / "exp.toml", toml_text(tree)))
        assert plan.cells()


@pytest.mark.parametrize("name", FORMAT_NAMES)
@FUZZ
@given(
    layer=st.sampled_from(["bytes", "tree", "tree"]), which=st.integers(0, 1), ops=byte_ops, data=st.data()
)
def test_fuzz(formats, tmp_path, name, layer, which, ops, data):
    fmt = formats[name]
    which %= len(fmt.seeds)
    if layer == "tree":
        changes = data.draw(toml_ops if name == "experiment toml" else tree_ops)
        raw = fmt.encode(fmt.trees[which], changes)
    else:
        raw = mutate_bytes(fmt.seeds[which], ops)
    check_case(fmt.read, _write(tmp_path / name.replace(" ", "_") / fmt.file, raw), name)


def test_the_toml_mutations_reach_every_value_and_write_toml():
    import tomllib

    tree = {"a": [1, {"b": 2}]}
    assert tomllib.loads(mutate_toml(tree, [("set", 3, TOML_VALUES.index(1.5), "x")]).decode()) == {
        "a": [1, {"b": 1.5}]
    }
    assert tomllib.loads(mutate_toml(tree, [("add", 2, 0, "seed")]).decode()) == {
        "a": [1, {"b": 2, "seed": True}]
    }
    assert tomllib.loads(mutate_toml(tree, [("delete", 0, 0, "x")]).decode()) == {}
    assert "7" * 5000 in mutate_toml(tree, [("set", 1, TOML_VALUES.index(HUGE), "x")]).decode()
