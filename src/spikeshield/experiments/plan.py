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

    [train]
    time_steps = 4
    [datasets.mnist]
    train = { epochs = 1, limit_train = 6000 }
    eps = [0.0, 0.05, 0.1, 0.2]

    [evaluate]
    attacks = ["fgsm", "pgd"]
    gradients = ["bptt", "surrogate:atan:2"]
    corruptions = { gaussian = [0.0, 0.2, 0.4] }   # older files: noises = ...
    limit = 300
    [evaluate.validation]      # optional: also on held-out training samples, to choose settings
    attacks = ["pgd"]          # (keys override the protocol above; no gradient-masking checks)
    gradients = ["bptt"]

    [[only]]                   # optional: the grid is then only the cells that match one of
    models = ["mlp"]           # these tables (each key a list: datasets, models, neurons,
    [[only]]                   # modes, seeds; a key left out matches everything), e.g. a
    models = ["cnn"]           # REDUCED grid that runs the costly model at fewer settings
    seeds = [0]

A free-text ``budget`` line is accepted (older files have one) but never printed as a fact:
tables state the budget that was recorded in the runs. :func:`shrink` cuts a plan down
(``spikeshield experiment --seeds --models --neurons --limit-train --limit-test --epochs``)
and records what it changed.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from spikeshield import validate
from spikeshield.attacks import ATTACKS, CORRUPTIONS, build_attack
from spikeshield.attacks.gradient import resolve_gradient
from spikeshield.data import DATASETS
from spikeshield.errors import UsageError
from spikeshield.models import MODELS
from spikeshield.neurons import NEURONS
from spikeshield.training import TrainConfig
from spikeshield.training.modes import DEFAULT_MODE, TRAINING_MODES, build_training_mode

TOP_KEYS = {"name", "description", "claim", "seeds", "models", "model_options", "neurons", "modes", "train",
            "datasets", "evaluate", "only"}  # fmt: skip
GRID_KEYS = ("datasets", "models", "neurons", "modes", "seeds")
"""The axes of the grid, as named in ``[[only]]`` tables and in :attr:`Plan.selection`."""
EVAL_DEFAULTS: dict[str, Any] = dict(
    attacks=[], gradients=["bptt"], noises={}, steps=10, limit=None, batch_size=256, check_samples=200,
    eps=[], norm="linf", seed=0,
)  # fmt: skip
EVAL_KEYS = set(EVAL_DEFAULTS) | {"corruptions", "validation"}
DATASET_KEYS = {"budget", "reduced", "train", "eps", "evaluate"}
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


@dataclass(frozen=True)
class Cell:
    """One trained model of the grid: (dataset, model, neuron label, training-mode label, seed)."""

    dataset: str
    model: str
    neuron: str
    mode: str
    seed: int


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
        return [c for c in self.cells() if _matches(c, self.selection)]

    def cells(self) -> list[Cell]:
        """Every cell of the grid, selected or not: datasets × models × neurons × modes × seeds,
        within the ``[[only]]`` tables if the file has some."""
        return [
            cell
            for cell in (
                Cell(d.name, m, n, k, s)
                for d in self.datasets
                for m in self.models
                for n in self.neurons
                for k in self.modes
                for s in self.seeds
            )
            if not self.only or any(_matches(cell, part) for part in self.only)
        ]

    def axes(self) -> dict[str, list[Any]]:
        """The values of each grid axis (:data:`GRID_KEYS`)."""
        return {
            "datasets": [d.name for d in self.datasets],
            "models": self.models,
            "neurons": list(self.neurons),
            "modes": list(self.modes),
            "seeds": self.seeds,
        }

    def dataset(self, name: str) -> DatasetPlan:
        return next(d for d in self.datasets if d.name == name)

    def variant(self, cell: Cell) -> str:
        """The column label of a cell: its neuron label, and its mode label if there are several."""
        return cell.neuron if len(self.modes) == 1 else f"{cell.neuron} / {cell.mode}"

    def run_dir(self, out: Path, cell: Cell) -> Path:
        mode = "" if len(self.modes) == 1 and cell.mode == DEFAULT_MODE else f"-{cell.mode}"
        return Path(out) / "runs" / cell.dataset / f"{cell.model}-{cell.neuron}{mode}-s{cell.seed}"

    def train_config(self, cell: Cell, data_root: str | None = None, device: str = "auto") -> TrainConfig:
        fields = dict(self.dataset(cell.dataset).train)
        unknown = sorted(set(fields) - set(TrainConfig.__dataclass_fields__))
        if unknown:
            raise UsageError(f"datasets.{cell.dataset}.train: unknown setting(s) {', '.join(unknown)}")
        neuron, mode = self.neurons[cell.neuron], self.modes[cell.mode]
        return TrainConfig(
            dataset=cell.dataset,
            model=cell.model,
            neuron=neuron["neuron"],
            neuron_options=dict(neuron["options"]),
            model_options=dict(self.model_options.get(cell.model, {})),
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
                    "evaluate": d.evaluate,
                    "reduced": d.reduced,
                    "note": d.note,
                }
                for d in self.datasets
            ],
            "selection": self.selection,
            "shrunk": self.shrunk,
            **({"only": self.only} if self.only else {}),  # older plans keep their fingerprint
        }


def _matches(cell: Cell, part: dict[str, list[Any]]) -> bool:
    """Whether ``cell`` lies within ``part`` ({grid axis: allowed values}; a missing axis: any)."""
    return all(getattr(cell, key[:-1]) in values for key, values in part.items())


# ---------------------------------------------------------------------------- reading
def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _known(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise UsageError(f"{where}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}")


def _name_list(raw: dict[str, Any], key: str, registry: Any, where: str) -> list[str]:
    value = raw[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key} must be a non-empty list of names")
    for name in value:
        registry.get(name)
    return list(value)


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(validate.is_int(s) and s >= 0 for s in value):
        raise UsageError(f"{where}: seeds must be a non-empty list of integers >= 0")
    return list(value)


def _variants(raw: Any, kind: str, registry: Any, default: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``[neurons.LABEL]`` / ``[modes.LABEL]`` tables → {label: {kind: name, options: {...}}}."""
    if raw is None:
        return default
    out = {}
    for label, spec in _table(raw, f"{kind}s").items():
        spec = _table(spec, f"{kind}s.{label}")
        _known(spec, {kind, "options"}, f"{kind}s.{label}")
        name = spec.get(kind, label)
        registry.get(name)
        out[label] = {
            kind: name,
            "options": dict(_table(spec.get("options", {}), f"{kind}s.{label}.options")),
        }
    if not out:
        raise UsageError(f"{kind}s: at least one {kind} is needed")
    return out


def _check_protocol(ev: dict[str, Any], where: str) -> None:
    """Every name and number of one evaluation protocol, named by its key when wrong."""
    for key in ("batch_size", "check_samples", "steps"):
        validate.positive_int(f"{where}.{key}", ev[key])
    validate.non_negative_int(f"{where}.seed", ev["seed"])
    if ev["limit"] is not None:
        validate.positive_int(f"{where}.limit", ev["limit"])
    _numbers(ev["eps"], f"{where}.eps")
    for noise, levels in _table(ev["noises"], f"{where}.corruptions").items():
        CORRUPTIONS.get(noise)
        _numbers(levels, f"{where}.corruptions.{noise}")
    for gradient in ev["gradients"]:
        resolve_gradient(gradient)
    for attack in ev["attacks"]:
        ATTACKS.get(attack)
        if attack == "transfer":
            raise UsageError(
                f"{where}: the transfer attack needs a source model, which experiment files cannot name "
                "yet; run 'spikeshield evaluate --attack transfer' on the runs instead"
            )
        build_attack(attack, strict=False, eps=0.0, norm=ev["norm"], steps=ev["steps"])
    if ev["attacks"] and not ev["eps"]:
        raise UsageError(f"{where}: attacks need eps values (key 'eps')")


def _numbers(values: Any, where: str) -> None:
    if not isinstance(values, list) or not all(validate.is_finite_number(v) and v >= 0 for v in values):
        raise UsageError(f"{where} must be a list of finite numbers >= 0, got {values!r}")


def _protocol_table(value: Any, where: str) -> dict[str, Any]:
    """An ``[evaluate]`` table; ``corruptions`` is the field's word for what older files call ``noises``."""
    table = dict(_table(value, where))
    if "corruptions" in table:
        if "noises" in table:
            raise UsageError(f"{where}: give 'corruptions' or its old name 'noises', not both")
        table["noises"] = table.pop("corruptions")
    _known(table, EVAL_KEYS, where)
    return table


def _validation(protocol: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``validation`` protocol: run on the training samples a run did not train on (to choose
    settings without the test set); its keys override the dataset's protocol."""
    table = _protocol_table(protocol["validation"], where)
    if "validation" in table:
        raise UsageError(f"{where}: a validation protocol cannot have its own validation")
    merged = {**{k: v for k, v in protocol.items() if k != "validation"}, **table}
    _check_protocol(merged, where)
    return merged


def _dataset_plans(raw: dict[str, Any]) -> list[DatasetPlan]:
    base_eval = _protocol_table(raw.get("evaluate", {}), "evaluate")
    base_train = _table(raw.get("train", {}), "train")
    plans = []
    for name, spec in _table(raw["datasets"], "datasets").items():
        where = f"datasets.{name}"
        spec = _table(spec, where)
        _known(spec, DATASET_KEYS, where)
        DATASETS.get(name)
        ev = {**EVAL_DEFAULTS, **base_eval, **_protocol_table(spec.get("evaluate", {}), f"{where}.evaluate")}
        if "eps" in spec:
            ev["eps"] = spec["eps"]
        _check_protocol(ev, where)
        train = {**base_train, **_table(spec.get("train", {}), f"{where}.train")}
        if "validation" in ev:
            if train.get("limit_train") is None:
                raise UsageError(
                    f"{where}: a validation protocol needs train.limit_train (it runs on the training "
                    "samples outside that subset)"
                )
            ev["validation"] = _validation(ev, f"{where}.evaluate.validation")
        plans.append(
            DatasetPlan(name, train, ev, bool(spec.get("reduced", False)), str(spec.get("budget", "")))
        )
    if not plans:
        raise UsageError("datasets: at least one dataset is needed")
    return plans


def parse_plan(raw: dict[str, Any], source: str, text: str = "") -> Plan:
    """A :class:`Plan` from the TOML data ``raw``; every name, number and training setting is checked."""
    _known(raw, TOP_KEYS, source)
    for key in ("name", "seeds", "models", "neurons", "datasets"):
        if key not in raw:
            raise UsageError(f"{source}: missing required key '{key}'")
    plan = Plan(
        name=str(raw["name"]),
        source=source,
        claim=str(raw.get("claim", "")),
        seeds=_seeds(raw["seeds"], source),
        models=_name_list(raw, "models", MODELS, source),
        model_options={k: _table(v, f"model_options.{k}") for k, v in raw.get("model_options", {}).items()},
        neurons=_variants(raw["neurons"], "neuron", NEURONS, {}),
        modes=_variants(
            raw.get("modes"), "mode", TRAINING_MODES, {DEFAULT_MODE: {"mode": DEFAULT_MODE, "options": {}}}
        ),
        datasets=_dataset_plans(raw),
        source_text=text,
    )
    plan.only = _only(raw.get("only"), plan.axes(), source)
    check_plan(plan)
    return plan


def _only(raw: Any, axes: dict[str, list[Any]], source: str) -> list[dict[str, list[Any]]]:
    """The ``[[only]]`` tables, each {grid axis: a non-empty list of that axis's values}."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw or not all(isinstance(t, dict) for t in raw):
        raise UsageError(f"{source}: only must be a list of tables ([[only]], keys {', '.join(GRID_KEYS)})")
    parts = []
    for i, table in enumerate(raw):
        where = f"only[{i}]"
        _known(table, set(GRID_KEYS), where)
        if not table:
            raise UsageError(f"{where}: empty; name at least one of {', '.join(GRID_KEYS)}")
        part = {}
        for key, values in table.items():
            if not isinstance(values, list) or not values:
                raise UsageError(f"{where}.{key} must be a non-empty list")
            part[key] = _subset(values, axes[key], f"{where}.{key}", source)
        parts.append(part)
    return parts


def check_plan(plan: Plan) -> None:
    """Build every neuron, mode and cell's training config once: errors before any work, naming the key."""
    from spikeshield.neurons import build_neuron

    for kind, variants, build in (
        ("neurons", plan.neurons, lambda spec: build_neuron(spec["neuron"], **spec["options"])),
        ("modes", plan.modes, lambda spec: build_training_mode(spec["mode"], spec["options"])),
    ):
        for label, spec in variants.items():
            try:
                build(spec)
            except (UsageError, TypeError, ValueError) as exc:
                raise UsageError(f"{kind}.{label}.options: {exc}") from None
    for cell in plan.cells():
        plan.train_config(cell)


def load_plan(path: str | Path) -> Plan:
    """Read and check an experiment file (``.toml``)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"experiment file {path} not found")
    if path.suffix.lower() != ".toml":
        raise UsageError(f"{path}: experiment files are TOML (.toml)")
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    return parse_plan(raw, str(path), text)


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
    cells to run (the grid stays the file's, so the summary can still show every finished cell);
    ``limit_train`` (training samples), ``limit_test`` (the training's test accuracy and the
    evaluation subset) and ``epochs`` change the settings of every cell. Unset flags (None)
    change nothing; what was set is recorded in :attr:`Plan.shrunk`."""
    unknown = sorted(set(flags) - {*SHRINK_FLAGS, "datasets"})
    if unknown:
        raise UsageError(f"cannot shrink by {', '.join(unknown)}")
    given = {k: v for k, v in flags.items() if v is not None}
    have = {k: v for k, v in plan.axes().items() if k != "modes"}
    selection = {**plan.selection}
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
