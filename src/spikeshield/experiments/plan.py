"""The grid of an experiment, read from a TOML file or a preset, validated before anything runs.

A plan is datasets × models × neurons × training modes × seeds, one training budget per dataset
and one evaluation protocol per dataset. Example (see ``experiments/linear_leak.toml``)::

    name = "linear-leak"
    seeds = [0, 1, 2]
    models = ["mlp", "cnn"]

    [neurons.if]
    neuron = "if"
    [neurons.linear-lif]
    neuron = "linear-lif"
    options = { leak = 0.1 }

    [modes.plain]              # optional; default: one mode, plain BPTT ("bptt")
    mode = "bptt"
    train = { time_steps = 8 } # optional: this mode's cells train with other settings
    [modes.at-mppd]            # optional ``neurons``: pair this mode with these neuron labels only
    mode = "at"
    options = { rho = 1.0 }
    neurons = ["linear-lif"]

    [train]
    time_steps = 4             # or a list, [2, 4, 8]: one cell per T (rows "cnn-T2", ...)
    preset = "plif"            # optional: a training preset (spikeshield.training.presets)
    [datasets.mnist]
    train = { epochs = 1, limit_train = 6000 }
    eps = [0.0, 0.05, 0.1, 0.2]

    [evaluate]
    attacks = ["fgsm", "pgd"]
    gradients = ["bptt", "surrogate:atan:2"]
    corruptions = { gaussian = [0.0, 0.2, 0.4] }   # older files: noises = ...
    suites = { reliable = { steps = 20, assg_rounds = 4 } }  # optional: named suites, with their options
    limit = 300
    [evaluate.validation]      # optional: also on held-out training samples, to choose settings
    attacks = ["pgd"]          # (keys override the protocol above; no gradient-masking checks)
    gradients = ["bptt"]

    [[only]]                   # optional: the grid is then only the cells that match one of
    models = ["mlp"]           # these tables (each key a list: datasets, models, neurons,
    [[only]]                   # modes, seeds, time_steps; a key left out matches everything),
    models = ["cnn"]           # e.g. a REDUCED grid that runs the costly model at fewer settings
    seeds = [0]                # (on a T axis, models may name rows as the tables do: "cnn-T2")

A free-text ``budget`` line is accepted (older files have one) but never printed as a fact:
tables state the budget that was recorded in the runs. :func:`shrink` cuts a plan down
(``spikeshield experiment --seeds --models --neurons --limit-train --limit-test --epochs``)
and records what it changed.

Every table is checked on load against its typed class in :mod:`spikeshield.experiments.tables`
(the file's schema: a new key is one field there), every name against its registry, every
neuron, training mode and cell's training settings by building them once; :func:`build_models`
(``--dry-run``, and every ``experiment`` before any work) builds each model too. A mistake is one
:class:`~spikeshield.errors.UsageError` line naming the file and the key, e.g.
``exp.toml: train: 'seed' is set per run, by 'seeds'; it is not a shared setting``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET

from spikeshield.attacks import ATTACKS, CORRUPTIONS, SUITES, build_attack
from spikeshield.attacks.gradient import resolve_gradient
from spikeshield.data import DATASETS
from spikeshield.errors import SpikeshieldError, UsageError
from spikeshield.experiments.tables import (
    GRID_AXES,
    PER_RUN,
    DatasetTable,
    EvaluateTable,
    ExperimentFile,
    Level,
    ModeTable,
    NeuronTable,
    OnlyTable,
    ProtocolTable,
    TrainTable,
    ValidationTable,
    given,
)
from spikeshield.io import read_regular
from spikeshield.models import MODELS
from spikeshield.neurons import NEURONS
from spikeshield.schema import PositiveInt, convert, decode_toml
from spikeshield.training import TrainConfig
from spikeshield.training.modes import DEFAULT_MODE, TRAINING_MODES, build_training_mode
from spikeshield.training.presets import with_preset

EVAL_DEFAULTS: dict[str, Any] = dict(
    attacks=[], gradients=["bptt"], noises={}, steps=10, limit=None, batch_size=256, check_samples=200,
    eps=[], norm="linf", seed=0, suites={},
)  # fmt: skip
SHRINK_FLAGS = ("seeds", "models", "neurons", "limit_train", "limit_test", "epochs")


@dataclass
class DatasetPlan:
    """One dataset's training settings and evaluation protocol (every key filled in)."""

    name: str
    train: dict[str, Any]
    evaluate: dict[str, Any]
    reduced: bool = False
    note: str = ""
    """The file's free-text ``budget`` line: kept in the summary, never shown as a measured fact."""
    time_steps: list[int] | None = None
    """The T axis (``time_steps = [2, 4, 8]``): one cell per T; None when T is one setting."""


@dataclass(frozen=True)
class Cell:
    """One trained model of the grid: (dataset, model, neuron label, training-mode label, seed)."""

    dataset: str
    model: str
    neuron: str
    mode: str
    seed: int
    time_steps: int | None = None
    """T, where the dataset's ``time_steps`` is a list (a grid axis); else None."""


@dataclass
class Plan:
    """A parsed, validated experiment: the grid, its budgets and its evaluation protocol."""

    name: str
    source: str
    claim: str
    seeds: list[int]
    models: list[str]
    model_options: dict[str, dict[str, Any]]
    neurons: dict[str, dict[str, Any]]
    modes: dict[str, dict[str, Any]]
    datasets: list[DatasetPlan]
    source_text: str = field(repr=False, default="")
    only: list[dict[str, list[Any]]] = field(default_factory=list)
    """The file's ``[[only]]`` tables: if any, the grid is the cells that match at least one."""
    selection: dict[str, list[Any]] = field(default_factory=dict)
    """The subset of the grid to run (``datasets``, ``seeds``, ``models``, ``neurons``)."""
    shrunk: dict[str, Any] = field(default_factory=dict)
    """What :func:`shrink` changed (flag name → value), recorded in every output."""

    def selected(self) -> list[Cell]:
        """The cells to train and evaluate now: :meth:`cells` within :attr:`selection`."""
        return [c for c in self.cells() if _matches(c, self.selection, self.model_label(c))]

    def cells(self) -> list[Cell]:
        """Every cell of the grid, selected or not: datasets × models × neurons × modes × seeds,
        within the ``[[only]]`` tables if the file has some."""
        return [
            cell
            for cell in (
                Cell(d.name, m, n, k, s, t)
                for d in self.datasets
                for t in d.time_steps or [None]
                for m in self.models
                for n in self.neurons
                for k in self.modes
                if n in self.modes[k].get("neurons", [n])
                for s in self.seeds
            )
            if not self.only or any(_matches(cell, part) for part in self.only)
        ]

    def axes(self) -> dict[str, list[Any]]:
        """The values of each grid axis (:data:`~.tables.GRID_AXES`; ``time_steps``: those of
        every dataset's T axis)."""
        return {
            "datasets": [d.name for d in self.datasets],
            "models": self.models,
            "neurons": list(self.neurons),
            "modes": list(self.modes),
            "seeds": self.seeds,
            "time_steps": sorted({t for d in self.datasets for t in d.time_steps or []}),
        }

    def dataset(self, name: str) -> DatasetPlan:
        return next(d for d in self.datasets if d.name == name)

    def variant(self, cell: Cell) -> str:
        """The column label of a cell: its neuron label, and its mode label if there are several."""
        return cell.neuron if len(self.modes) == 1 else f"{cell.neuron} / {cell.mode}"

    def model_label(self, cell: Cell) -> str:
        """The row label of a cell's model: its name, with ``-T<steps>`` on a T axis."""
        return cell.model if cell.time_steps is None else f"{cell.model}-T{cell.time_steps}"

    def run_dir(self, out: Path, cell: Cell) -> Path:
        mode = "" if len(self.modes) == 1 and cell.mode == DEFAULT_MODE else f"-{cell.mode}"
        name = f"{self.model_label(cell)}-{cell.neuron}{mode}-s{cell.seed}"
        return Path(out) / "runs" / cell.dataset / name

    def train_config(self, cell: Cell, data_root: str | None = None, device: str = "auto") -> TrainConfig:
        """The training settings of ``cell``: a training preset's (if the file names one), under
        its dataset's shared settings (the keys of a :data:`~.tables.TrainTable`), under the
        per-run ones from the grid (T from a ``time_steps`` axis; ``model_options``: the file's
        for the model, then the ``[train]`` table's, key by key), with its mode's own ``train``
        settings (``[modes.LABEL] train = {...}``) over the dataset's."""
        fields = {**self.dataset(cell.dataset).train, **self.modes[cell.mode].get("train", {})}
        preset = fields.pop("preset", None)
        if cell.time_steps is not None:
            fields["time_steps"] = cell.time_steps
        options = {**self.model_options.get(cell.model, {}), **fields.pop("model_options", {})}
        fields = with_preset(preset, cell.dataset, {"model": cell.model, "model_options": options, **fields})
        neuron, mode = self.neurons[cell.neuron], self.modes[cell.mode]
        return TrainConfig(
            dataset=cell.dataset,
            neuron=neuron["neuron"],
            neuron_options=dict(neuron["options"]),
            mode=mode["mode"],
            mode_options=dict(mode["options"]),
            seed=cell.seed,
            data_root=data_root,
            device=device,
            **fields,
        )

    def fingerprint(self) -> str:
        """A hash of everything that decides the results (not the selection of cells)."""
        body = {k: v for k, v in self.describe().items() if k not in ("source", "shrunk", "selection")}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """The resolved plan as JSON-able data (recorded in the summary)."""
        return {
            "name": self.name,
            "source": self.source,
            "claim": self.claim,
            "seeds": self.seeds,
            "models": self.models,
            "model_options": self.model_options,
            "neurons": self.neurons,
            "modes": self.modes,
            "datasets": [
                {
                    "name": d.name,
                    "train": d.train,
                    # without suites as before suites existed, so older summaries keep their fingerprint
                    "evaluate": {k: v for k, v in d.evaluate.items() if k != "suites" or v},
                    "reduced": d.reduced,
                    "note": d.note,
                    # only where there is a T axis, so older plans keep their fingerprint
                    **({"time_steps": d.time_steps} if d.time_steps is not None else {}),
                }
                for d in self.datasets
            ],
            "selection": self.selection,
            "shrunk": self.shrunk,
            **({"only": self.only} if self.only else {}),  # older plans keep their fingerprint
        }


def _matches(cell: Cell, part: dict[str, list[Any]], row: str | None = None) -> bool:
    """Whether ``cell`` lies within ``part`` ({grid axis: allowed values}; a missing axis: any);
    ``models`` may also name the cell's ``row`` (:meth:`Plan.model_label`, ``mlp-T2``)."""
    return all(
        getattr(cell, GRID_AXES[key]) in values or (key == "models" and row in values)
        for key, values in part.items()
    )


# ---------------------------------------------------------------------------- reading
MAX_FILE_BYTES = 1 << 20
"""The largest experiment file read (real ones are a few kB)."""
S = TypeVar("S", bound=msgspec.Struct)
BUILD_ERRORS = (SpikeshieldError, TypeError, ValueError, RuntimeError, ArithmeticError, LookupError,
                AttributeError, MemoryError)  # fmt: skip
"""What a registry, a constructor or a builder given a bad name or bad options raises."""


@contextmanager
def _naming(source: str, at: str) -> Iterator[None]:
    """An error of the block (a registry's, a builder's) as one :class:`UsageError` line naming
    the file and the key."""
    try:
        yield
    except BUILD_ERRORS as exc:
        raise UsageError(f"{source}: {at}: {_line(exc)}") from None


def _line(exc: BaseException) -> str:
    """An exception as one short line (a builder's message may span many: torch's C++ traces)."""
    lines = str(exc).strip().splitlines() or [""]
    text = lines[0][:300] + (" …" if len(lines) > 1 or len(lines[0]) > 300 else "")
    return text if isinstance(exc, SpikeshieldError) else f"{type(exc).__name__}: {text}"


def _read(value: Any, table: type[S], source: str, at: str) -> S:
    """One table of the file checked against its class in :mod:`.tables`: an unknown key is named
    with the allowed ones (a per-run training setting with where it belongs), then every type."""
    value = convert(value, dict[str, Any], source, error=UsageError, at=at)
    allowed = table.__struct_fields__
    unknown = sorted(set(value) - set(allowed))
    where = f"{source}: {at}: " if at else f"{source}: "
    if unknown and table is TrainTable and unknown[0] in PER_RUN:
        key = unknown[0]
        raise UsageError(f"{where}'{key}' is set per run, by {PER_RUN[key]}; it is not a shared setting")
    home = _home(table, unknown[0]) if unknown else None
    if home:
        raise UsageError(f"{where}unknown key {unknown[0]!r} here; {home}")
    if unknown:
        raise UsageError(f"{where}unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    return convert(value, table, source, error=UsageError, at=at)


def _home(table: type[msgspec.Struct], key: str) -> str | None:
    """Where ``key``, unknown in ``table``, belongs when it is a key of a table that ``table``
    holds (``time_steps`` at the top level: a ``[train]`` setting); else None (also for a key
    that is one of ``table``'s in the singular: ``seed`` for ``seeds``)."""
    if f"{key}s" in table.__struct_fields__:
        return None
    for kind, words in ((TrainTable, "train"), (EvaluateTable, "evaluate")):
        if key in kind.__struct_fields__:
            setting = "a training" if words == "train" else "an evaluation"
            if table is ExperimentFile:
                return f"it is {setting} setting: put it under [{words}]"
            if table is DatasetTable:
                return (
                    f"it is {setting} setting: put it in this dataset's {words} = {{ ... }}, or under "
                    f"[{words}] for every dataset"
                )
    return None


MODE_FIXED = {"model_options", "preset", *SHRINK_FLAGS}
"""Training settings a ``[modes.LABEL] train`` table may not set: the model's options, the
preset, and the budget flags of :func:`shrink`, which act per dataset (per-run settings are
refused by the schema)."""


def _names(names: list[str], registry: Any, source: str, at: str) -> list[str]:
    """Registered names, each once."""
    for i, name in enumerate(names):
        with _naming(source, f"{at}[{i}]"):
            registry.get(name)
        if name in names[:i]:
            raise UsageError(f"{source}: {at}[{i}]: {name!r} is listed twice")
    return list(names)


def _variants(raw: dict[str, Any], table: type[S], kind: str, registry: Any, source: str) -> dict[str, Any]:
    """``[neurons.LABEL]`` / ``[modes.LABEL]`` tables → ``{label: {kind: name, options: {...}, ...}}``.
    A mode may also carry ``train = {...}``: training settings of its cells that differ from the
    dataset's (e.g. ``time_steps``, to compare BPTT at several T in one grid)."""
    out = {}
    for label, spec in raw.items():
        entry = given(_read(spec, table, source, f"{kind}s.{label}"))
        entry[kind] = entry.get(kind, label)
        with _naming(source, f"{kind}s.{label}.{kind}"):
            registry.get(entry[kind])
        if "train" in entry:  # a mode's own training settings (e.g. time_steps)
            at = f"{kind}s.{label}.train"
            entry["train"] = given(_read(entry["train"], TrainTable, source, at))
            fixed = sorted(set(entry["train"]) & MODE_FIXED)
            if fixed:
                raise UsageError(f"{source}: {at}: {', '.join(fixed)} cannot be set per mode")
        out[label] = entry
    return out


def _model_options(top: ExperimentFile, source: str) -> dict[str, dict[str, Any]]:
    """``[model_options.MODEL]``: a table of options per model of the grid."""
    out = {}
    for model, options in top.model_options.items():
        at = f"model_options.{model}"
        if model not in top.models:
            raise UsageError(f"{source}: {at}: {model!r} is not one of the models ({', '.join(top.models)})")
        out[model] = convert(options, dict[str, Any], source, error=UsageError, at=at)
    return out


def _protocol(
    raw: dict[str, Any], source: str, at: str, kind: type[ProtocolTable] = EvaluateTable
) -> dict[str, Any]:
    """The given keys of an evaluate table (or its ``validation`` table, read the same way), every
    name checked; ``corruptions`` is the field's word for what older files call ``noises``
    (stored as ``noises``)."""
    table = given(_read(raw, kind, source, at))
    if "validation" in table:
        table["validation"] = _protocol(table["validation"], source, f"{at}.validation", ValidationTable)
    if "corruptions" in table and "noises" in table:
        raise UsageError(f"{source}: {at}: give 'corruptions' or its old name 'noises', not both")
    key = "corruptions" if "corruptions" in table else "noises"
    if key in table:
        levels = table.pop(key).items()
        table["noises"] = {
            n: convert(v, list[Level], source, error=UsageError, at=f"{at}.{key}.{n}") for n, v in levels
        }
        _names(list(table["noises"]), CORRUPTIONS, source, f"{at}.{key}")
    for i, gradient in enumerate(table.get("gradients", [])):
        with _naming(source, f"{at}.gradients[{i}]"):
            resolve_gradient(gradient)
    _names(table.get("attacks", []), ATTACKS, source, f"{at}.attacks")
    for suite, options in table.get("suites", {}).items():
        _suite_options(suite, options, source, f"{at}.suites.{suite}")
    if "transfer" in table.get("attacks", []):
        raise UsageError(
            f"{source}: {at}.attacks: the transfer attack needs a source model, which experiment files "
            "cannot name yet; run 'spikeshield evaluate --attack transfer' on the runs instead"
        )
    return table


def _suite_options(suite: str, options: dict[str, Any], source: str, at: str) -> None:
    """A ``suites`` entry: a registered suite, and only the options it takes, each a ``PositiveInt``."""
    from spikeshield.experiments.pipeline import suite_options, suite_search_options

    with _naming(source, at):
        SUITES.get(suite)
    takes = suite_options(suite) + suite_search_options(suite)
    for key, value in options.items():
        if key not in takes:
            allowed = f"it takes {', '.join(takes)}" if takes else "it takes no options"
            raise UsageError(f"{source}: {at}: unknown option {key!r} ({allowed}; it fixes the others)")
        convert(value, PositiveInt, source, error=UsageError, at=f"{at}.{key}")


def _check_protocol(ev: dict[str, Any], source: str, at: str) -> None:
    """What the keys of one dataset's whole protocol say together: attacks need ε, and each
    attack takes the norm and steps."""
    from spikeshield.experiments.pipeline import suite_settings

    if (ev["attacks"] or ev["suites"]) and not ev["eps"]:
        raise UsageError(f"{source}: {at}: attacks and suites need eps values (key 'eps')")
    for attack in ev["attacks"]:
        with _naming(source, f"{at}: attack {attack}"):
            build_attack(attack, strict=False, eps=0.0, norm=ev["norm"], steps=ev["steps"])
    for suite in ev["suites"]:  # each suite's evaluation settings, built once
        with _naming(source, f"{at}.suites.{suite}"):
            suite_settings(ev, suite)


def _validation(ev: dict[str, Any], train: dict[str, Any], source: str, at: str) -> dict[str, Any]:
    """The dataset's ``validation`` protocol, filled in: run on the training samples a run did not
    train on (to choose settings without the test set); its keys override the dataset's protocol."""
    if train.get("limit_train") is None:
        raise UsageError(
            f"{source}: {at}: a validation protocol needs train.limit_train (it runs on the training "
            "samples outside that subset)"
        )
    merged = {**{k: v for k, v in ev.items() if k != "validation"}, **ev["validation"]}
    _check_protocol(merged, source, f"{at}.evaluate.validation")
    return merged


def _dataset_plans(top: ExperimentFile, source: str) -> list[DatasetPlan]:
    shared_eval = _protocol(top.evaluate, source, "evaluate")
    shared_train = given(_read(top.train, TrainTable, source, "train"))
    plans = []
    for name, spec in top.datasets.items():
        at = f"datasets.{name}"
        with _naming(source, at):
            DATASETS.get(name)
        table = _read(spec, DatasetTable, source, at)
        ev = {**EVAL_DEFAULTS, **shared_eval, **_protocol(table.evaluate, source, f"{at}.evaluate")}
        if table.eps is not UNSET:
            ev["eps"] = table.eps
        _check_protocol(ev, source, at)
        train = {**shared_train, **given(_read(table.train, TrainTable, source, f"{at}.train"))}
        if "validation" in ev:
            ev["validation"] = _validation(ev, train, source, at)
        steps = _time_steps_axis(train, f"{source}: {at}.train")
        plans.append(DatasetPlan(name, train, ev, table.reduced, table.budget, steps))
    return plans


def _time_steps_axis(train: dict[str, Any], where: str) -> list[int] | None:
    """Take a list-valued ``time_steps`` out of ``train``: the dataset's T axis (else None).
    The schema (:data:`~.tables.TrainTable`) has checked its type: a non-empty list of T >= 1."""
    steps = train.get("time_steps")
    if not isinstance(steps, list):
        return None
    if len(set(steps)) < len(steps):
        raise UsageError(f"{where}: time_steps must list distinct values, got {steps!r}")
    del train["time_steps"]
    return list(steps)


def parse_plan(raw: dict[str, Any], source: str, text: str = "") -> Plan:
    """A :class:`Plan` from the TOML data ``raw``: every table checked against its class in
    :mod:`.tables`, every name against its registry, every neuron, mode and cell's training
    settings built once (:func:`check_plan`). Raises :class:`UsageError` naming ``source`` and the key."""
    _not_sampling(raw, source)
    top = _read(raw, ExperimentFile, source, "")
    modes = {DEFAULT_MODE: {"mode": DEFAULT_MODE, "options": {}}}  # the default: plain BPTT
    if top.modes is not UNSET:
        modes = _variants(top.modes, ModeTable, "mode", TRAINING_MODES, source)
    plan = Plan(
        name=top.name,
        source=source,
        claim=top.claim,
        seeds=_unique(top.seeds, source, "seeds"),
        models=_names(top.models, MODELS, source, "models"),
        model_options=_model_options(top, source),
        neurons=_variants(top.neurons, NeuronTable, "neuron", NEURONS, source),
        modes=modes,
        datasets=_dataset_plans(top, source),
        source_text=text,
    )
    _check_pairings(plan)
    plan.only = _only(top, plan.axes(), source)
    check_plan(plan)
    return plan


SAMPLING_KEYS = ("masks", "rates", "events")
"""Top-level keys of a sampling experiment (:mod:`spikeshield.sampling.experiment`), none of ours."""


def _not_sampling(raw: Any, source: str) -> None:
    """A sampling experiment file is named as one, with the command that runs it."""
    if isinstance(raw, dict) and "neurons" not in raw and any(k in raw for k in SAMPLING_KEYS):
        raise UsageError(
            f"{source} is a sampling experiment (it has {next(k for k in SAMPLING_KEYS if k in raw)!r}); "
            f"run it with 'spikeshield sample experiment {source} --out DIR'"
        )


def _unique(values: list[Any], source: str, at: str) -> list[Any]:
    for i, value in enumerate(values):
        if value in values[:i]:
            raise UsageError(f"{source}: {at}[{i}]: {value!r} is listed twice")
    return list(values)


def _check_pairings(plan: Plan) -> None:
    """A mode's ``neurons`` (its type checked by the schema) must name neuron labels of the plan."""
    for label, spec in plan.modes.items():
        unknown = [n for n in spec.get("neurons", []) if n not in plan.neurons]
        if unknown:
            raise UsageError(
                f"{plan.source}: modes.{label}.neurons: {', '.join(unknown)} not among the neuron "
                f"labels ({', '.join(plan.neurons)})"
            )


def _only(top: ExperimentFile, axes: dict[str, list[Any]], source: str) -> list[dict[str, list[Any]]]:
    """The ``[[only]]`` tables (:class:`~.tables.OnlyTable`), each {grid axis: some of its values}."""
    if top.only is UNSET:
        return []
    parts = []
    for i, raw in enumerate(top.only):
        at = f"only[{i}]"
        part = given(_read(raw, OnlyTable, source, at))
        if not part:
            raise UsageError(f"{source}: {at}: empty; name at least one of {', '.join(GRID_AXES)}")
        parts += [
            {key: _subset(values, axes[key], f"{at}.{key}", source) for key, values in piece.items()}
            for piece in _row_labels(part, axes, source, at)
        ]
    return parts


def _row_labels(
    part: dict[str, list[Any]], axes: dict[str, list[Any]], source: str, at: str
) -> list[dict[str, list[Any]]]:
    """An ``[[only]]`` table whose ``models`` names rows of a T axis as the tables do (``mlp-T2``:
    :meth:`Plan.model_label`) as tables of plain names: one with the plain model names, and one
    ``{models = [mlp], time_steps = [2]}`` per row label (other keys kept)."""
    if not axes["time_steps"] or "models" not in part:
        return [part]
    rows = {f"{m}-T{t}": (m, t) for m in axes["models"] for t in axes["time_steps"]}
    unknown = [m for m in part["models"] if m not in axes["models"] and m not in rows]
    if unknown:
        raise UsageError(
            f"{source}: {at}.models {' '.join(unknown)}: not in the grid (models: "
            f"{', '.join(axes['models'])}; rows of the T axis: {', '.join(rows)})"
        )
    named = [m for m in part["models"] if m in rows]
    if named and "time_steps" in part:
        raise UsageError(
            f"{source}: {at}: models names rows of the T axis ({', '.join(named)}) and time_steps is "
            "given too; give T in one of them"
        )
    labelled = [rows[m] for m in named]
    plain = [m for m in part["models"] if m in axes["models"]]
    return ([{**part, "models": plain}] if plain else []) + [
        {**part, "models": [m], "time_steps": [t]} for m, t in labelled
    ]


def check_plan(plan: Plan) -> None:
    """Build every training mode, every cell's training config and every neuron (at its cell's
    T) once: errors before any work, naming the key. (Models: :func:`build_models`.)"""
    from spikeshield.neurons import neuron_factory

    for label, spec in plan.modes.items():
        with _naming(plan.source, f"modes.{label}.options"):
            build_training_mode(spec["mode"], spec["options"])
    checked = set()
    for cell in plan.cells():
        with _naming(plan.source, f"training settings of {cell.dataset}"):
            config = plan.train_config(cell)
        if (cell.neuron, config.time_steps) not in checked:
            with _naming(plan.source, f"neurons.{cell.neuron}.options"):
                neuron_factory(config.neuron, time_steps=config.time_steps, **config.neuron_options)
            checked.add((cell.neuron, config.time_steps))


def build_models(plan: Plan, cells: Sequence[Cell] | None = None) -> int:
    """Build the model of every distinct (dataset, model, neuron) among ``cells`` (default: the
    selected ones) once on the CPU, and drop it: model and neuron options that fail only when a
    run is built fail now, naming the cell (``spikeshield experiment`` calls it before any work,
    ``--dry-run`` too). Returns how many models were built.

    Raises:
        UsageError: ``"<file>: building cell <dataset> / <model> / <neuron>: <problem>"``.
    """
    from spikeshield.training.trainer import build_model_for

    built = set()
    for cell in plan.selected() if cells is None else cells:
        key = (cell.dataset, plan.model_label(cell), cell.neuron)
        if key not in built:
            with _naming(plan.source, f"building cell {' / '.join(key)}"):
                build_model_for(plan.train_config(cell, device="cpu"))
            built.add(key)
    return len(built)


def read_toml(path: str | Path) -> tuple[Any, str]:
    """The data and text of an experiment file (``.toml``), read within bounds; shared by the
    experiment readers (:func:`load_plan`, the sampling experiment).

    Raises:
        UsageError: one line naming the file: missing, not a regular file, larger than
            :data:`MAX_FILE_BYTES`, not UTF-8 TOML or nested too deeply.
    """
    path = Path(path)
    if path.suffix.lower() != ".toml":
        raise UsageError(f"{path}: experiment files are TOML (.toml)")
    raw = read_regular(path, "experiment file", max_bytes=MAX_FILE_BYTES, error=UsageError)
    return decode_toml(raw, Any, str(path), error=UsageError), raw.decode("utf-8")


def load_plan(path: str | Path) -> Plan:
    """Read and check an experiment file (``.toml``; see :func:`parse_plan`).

    Raises:
        UsageError: one line naming the file (and the key): as :func:`read_toml`, or a bad key
            or value.
    """
    data, text = read_toml(path)
    return parse_plan(data, str(path), text)


def preset_data(name: str) -> tuple[dict[str, Any], str]:
    """The TOML data and text of a preset shipped in the package (``experiments/presets/NAME.toml``)."""
    text = resources.files("spikeshield.experiments").joinpath("presets", f"{name}.toml").read_text()
    return tomllib.loads(text), text


# ---------------------------------------------------------------------------- shrinking
def _subset(asked: list[Any], have: list[Any], flag: str, source: str) -> list[Any]:
    missing = [a for a in asked if a not in have]
    if missing:
        shown = ", ".join(str(h) for h in have)
        raise UsageError(f"{flag} {' '.join(map(str, missing))}: not in {source} (it has: {shown})")
    return [h for h in have if h in asked]


def shrink(plan: Plan, **flags: Any) -> Plan:
    """A cheaper plan. ``seeds`` / ``models`` / ``neurons`` / ``datasets`` select a subset of the
    cells to run (the grid stays the file's, so the summary can still show every finished cell;
    on a T axis ``models`` may name rows, ``mlp-T2``);
    ``limit_train`` (training samples), ``limit_test`` (the training's test accuracy and the
    evaluation subset) and ``epochs`` change the settings of every cell. Unset flags (None)
    change nothing; what was set is recorded in :attr:`Plan.shrunk`."""
    unknown = sorted(set(flags) - {*SHRINK_FLAGS, "datasets"})
    if unknown:
        raise UsageError(f"cannot shrink by {', '.join(unknown)}")
    given = {k: v for k, v in flags.items() if v is not None}
    have = {k: v for k, v in plan.axes().items() if k not in ("modes", "time_steps")}
    selection = {**plan.selection}
    # --models may name the rows of a T axis as the tables and --dry-run show them (mlp-T2)
    rows = dict.fromkeys(plan.model_label(c) for c in plan.cells() if c.time_steps is not None)
    have["models"] = [*have["models"], *rows]
    for key, grid in have.items():
        if key in given:
            flag = "--dataset" if key == "datasets" else f"--{key}"
            selection[key] = _subset(list(given[key]), grid, flag, plan.source)
    train = {k: given[k] for k in ("limit_train", "limit_test", "epochs") if k in given}
    datasets = [
        replace(d, train={**d.train, **train}, evaluate=_limited(d.evaluate, given.get("limit_test")))
        for d in plan.datasets
    ]
    out = replace(plan, datasets=datasets, selection=selection, shrunk={**plan.shrunk, **given})
    check_plan(out)
    return out


def _limited(protocol: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """``protocol`` (and its validation protocol) cut to ``limit`` samples; None changes nothing."""
    if limit is None:
        return protocol
    out = {**protocol, "limit": limit}
    if out.get("validation"):
        out["validation"] = {**out["validation"], "limit": limit}
    return out


def quick_plan(
    *,
    dataset: str | None = None,
    model: str | None = None,
    neurons: list[str] | None = None,
    epochs: int | None = None,
    time_steps: int | None = None,
    seeds: int | None = None,
    sigmas: list[float] | None = None,
    surrogate: str | None = None,
    attacks: list[str] | None = None,
    eps: list[float] | None = None,
    steps: int | None = None,
) -> Plan:
    """The ``quick`` preset (``spikeshield run``) with its flags applied; None keeps the preset's value.

    ``seeds`` is a count (seeds 0 … N-1); ``surrogate`` goes to every neuron that takes one."""
    raw, text = preset_data("quick")
    if seeds is not None:
        raw["seeds"] = list(range(seeds)) if seeds >= 1 else []
    if model is not None:
        raw["models"] = [model]
    if neurons is not None:
        raw["neurons"] = {n: {"neuron": n} for n in neurons}
    if surrogate is not None or neurons is not None:
        chosen = surrogate or "sigmoid:4"
        for spec in raw["neurons"].values():
            spec["options"] = {"surrogate": chosen} if _takes_surrogate(spec["neuron"], chosen) else {}
    changes = {"epochs": epochs, "time_steps": time_steps}
    raw["train"].update({k: v for k, v in changes.items() if v is not None})
    if dataset is not None:
        raw["datasets"] = {dataset: next(iter(raw["datasets"].values()))}
    evaluate = {"attacks": attacks, "eps": eps, "steps": steps}
    raw["evaluate"].update(
        {k: list(v) if isinstance(v, list) else v for k, v in evaluate.items() if v is not None}
    )
    if sigmas is not None:
        raw["evaluate"]["corruptions"] = {"gaussian": list(sigmas)}
    return parse_plan(raw, "the quick preset (spikeshield run)", text)


def _takes_surrogate(neuron: str, surrogate: str) -> bool:
    """Whether ``neuron`` accepts a ``surrogate`` option in its default configuration
    (``noisy-if``, for one, uses its noise density unless told otherwise)."""
    from spikeshield.neurons import build_neuron

    try:
        build_neuron(neuron, surrogate=surrogate)
    except (UsageError, TypeError):
        return False
    return True
