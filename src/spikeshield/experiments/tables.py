"""The schema of an experiment file: one typed table (a ``msgspec.Struct``) per TOML table.

:func:`spikeshield.experiments.plan.load_plan` checks every table of a file against its class
here before anything else looks at it, so a wrong key, type or bound is one line naming the file
and the key (``exp.toml: datasets.mnist.eps[0]: expected `float` >= 0.0``) instead of an
exception where the value is first used. Names (neurons, models, attacks, ...) are checked
against their registries by the reader, options by building what they configure.

Adding a key to a table is one field here, with its type and default (``UNSET``: not given,
so a shared table's value or the default applies); the reader passes the given keys on
(:func:`given`). A table that holds labelled tables (``[neurons.LABEL]``) is typed
``dict[str, Any]`` and each entry is read with its own class, so an error names the label.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal, get_type_hints

import msgspec
from msgspec import UNSET, UnsetType

from spikeshield.attacks import NORMS
from spikeshield.schema import NonNegativeFloat, NonNegativeInt, PositiveInt
from spikeshield.training import TrainConfig

Level = Annotated[int, msgspec.Meta(ge=0, le=2**53)] | NonNegativeFloat
"""An ε or a corruption level: a finite number >= 0, kept as written (``0`` stays an integer)."""
NonEmpty = msgspec.Meta(min_length=1)
Norm = Literal[NORMS]  # type: ignore[valid-type]


class Table(msgspec.Struct, forbid_unknown_fields=True):
    """A table of an experiment file: every key typed, no other key allowed."""


def given(table: msgspec.Struct) -> dict[str, Any]:
    """The keys of ``table`` that the file gave (those not ``UNSET``), as a dict."""
    return {k: v for k, v in msgspec.structs.asdict(table).items() if v is not UNSET}


class NeuronTable(Table):
    """``[neurons.LABEL]``: a registered neuron (default: the label) and its options."""

    neuron: str | UnsetType = UNSET
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class ModeTable(Table):
    """``[modes.LABEL]``: a registered training mode (default: the label) and its options."""

    mode: str | UnsetType = UNSET
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    train: dict[str, Any] | UnsetType = UNSET
    """A :data:`TrainTable`: this mode's cells' own training settings, over the dataset's."""
    neurons: Annotated[list[str], NonEmpty] | UnsetType = UNSET
    """Pair this mode with these neuron labels only (default: every neuron)."""


class ProtocolTable(Table):
    """The keys of an evaluation protocol (see :class:`EvaluateTable`)."""

    attacks: list[str] | UnsetType = UNSET
    gradients: list[str] | UnsetType = UNSET
    corruptions: dict[str, Any] | UnsetType = UNSET
    """``{corruption: levels}``; each list of levels is read as ``list[Level]``."""
    noises: dict[str, Any] | UnsetType = UNSET
    """The older name of ``corruptions``."""
    eps: list[Level] | UnsetType = UNSET
    norm: Norm | UnsetType = UNSET
    steps: PositiveInt | UnsetType = UNSET
    limit: PositiveInt | UnsetType = UNSET
    batch_size: PositiveInt | UnsetType = UNSET
    check_samples: PositiveInt | UnsetType = UNSET
    seed: NonNegativeInt | UnsetType = UNSET


class ValidationTable(ProtocolTable):
    """``[evaluate.validation]`` (or ``[datasets.NAME.evaluate.validation]``): the protocol run on
    the training samples a run did not train on (to choose settings without the test set); a key
    left out comes from the dataset's protocol. It needs ``limit_train``; it has no validation of
    its own."""


class EvaluateTable(ProtocolTable):
    """``[evaluate]`` (every dataset) or ``[datasets.NAME.evaluate]`` (one): a key left out
    comes from ``[evaluate]``, then from the defaults (``plan.EVAL_DEFAULTS``)."""

    validation: dict[str, Any] | UnsetType = UNSET
    """A :class:`ValidationTable` (optional)."""
    suites: dict[str, dict[str, Any]] | UnsetType = UNSET
    """``{suite: {option: value}}``: named evaluation suites (``reliable``, ``rssnn-standard``)
    run on the test samples beside the attacks, e.g. ``{ reliable = { steps = 20, queries = 500 } }``
    (``reliable`` also takes ``assg_rounds`` and ``assg_samples``, the search over ASSG's A);
    each option is read as a ``PositiveInt`` by the reader, so an error names it."""


GRID_AXES = {"datasets": "dataset", "models": "model", "neurons": "neuron", "modes": "mode",
             "seeds": "seed", "time_steps": "time_steps"}  # fmt: skip
"""The axes of the grid as named in ``[[only]]`` tables → the :class:`~.plan.Cell` field."""


class OnlyTable(Table):
    """One ``[[only]]`` table: with any, the grid is only the cells that match at least one. A key
    is an axis of the grid (:data:`GRID_AXES`) and lists some of its values; an axis left out
    matches every value."""

    datasets: Annotated[list[str], NonEmpty] | UnsetType = UNSET
    models: Annotated[list[str], NonEmpty] | UnsetType = UNSET
    neurons: Annotated[list[str], NonEmpty] | UnsetType = UNSET
    """Neuron labels (``[neurons.LABEL]``)."""
    modes: Annotated[list[str], NonEmpty] | UnsetType = UNSET
    """Training-mode labels (``[modes.LABEL]``)."""
    seeds: Annotated[list[NonNegativeInt], NonEmpty] | UnsetType = UNSET
    time_steps: Annotated[list[PositiveInt], NonEmpty] | UnsetType = UNSET
    """Values of a dataset's ``time_steps`` axis."""


PER_RUN = {
    "dataset": "the [datasets.NAME] tables",
    "model": "'models'",
    "neuron": "the [neurons.LABEL] tables",
    "neuron_options": "the 'options' of [neurons.LABEL]",
    "mode": "the [modes.LABEL] tables",
    "mode_options": "the 'options' of [modes.LABEL]",
    "seed": "'seeds'",
    "data_root": "--data-root",
    "device": "--device",
}
"""Training settings that the grid sets per run (key → where they are given instead)."""

_TRAIN_TYPES: dict[str, Any] = {
    "augment": list[str] | str,  # "crop:4,flip" is accepted too
    "time_steps": PositiveInt | Annotated[list[PositiveInt], NonEmpty],  # a list: a grid axis over T
}
_TRAIN_EXTRA = [("preset", str | UnsetType, UNSET)]
"""Keys of a ``[train]`` table that are not ``TrainConfig`` fields: a training preset's name
(:mod:`spikeshield.training.presets`), whose settings the table's own override."""

TrainTable: type[Table] = msgspec.defstruct(
    "TrainTable",
    [
        (f.name, _TRAIN_TYPES.get(f.name, get_type_hints(TrainConfig)[f.name]) | UnsetType, UNSET)
        for f in fields(TrainConfig)
        if f.name not in PER_RUN
    ]
    + _TRAIN_EXTRA,
    bases=(Table,),
    module=__name__,
)
TrainTable.__doc__ = """``[train]`` (every dataset) or ``[datasets.NAME] train = {...}`` (one): the
settings of :class:`~spikeshield.training.TrainConfig` that every run of the grid shares (a new
setting there is a key here), typed as there; their values are checked by ``TrainConfig``.
``model_options`` here add to the file's ``[model_options.MODEL]``, key by key; ``time_steps``
may be a list (one cell per T); ``preset`` names a training preset."""


class DatasetTable(Table):
    """``[datasets.NAME]``: a registered dataset's training budget and evaluation protocol."""

    budget: str = ""
    """Free text, kept as a note (never shown as a measured fact)."""
    reduced: bool = False
    train: dict[str, Any] = msgspec.field(default_factory=dict)
    """A :data:`TrainTable`, over ``[train]``."""
    eps: list[Level] | UnsetType = UNSET
    evaluate: dict[str, Any] = msgspec.field(default_factory=dict)
    """An :class:`EvaluateTable`, over ``[evaluate]``."""


class ExperimentFile(Table):
    """The top level of an experiment file (see :mod:`spikeshield.experiments.plan`)."""

    name: str
    seeds: Annotated[list[NonNegativeInt], NonEmpty]
    models: Annotated[list[str], NonEmpty]
    neurons: Annotated[dict[str, Any], NonEmpty]
    """``{label: NeuronTable}``."""
    datasets: Annotated[dict[str, Any], NonEmpty]
    """``{registered dataset: DatasetTable}``."""
    description: str = ""
    claim: str = ""
    model_options: dict[str, Any] = msgspec.field(default_factory=dict)
    """``{model: {option: value}}`` (options checked by building the model: ``--dry-run``)."""
    modes: Annotated[dict[str, Any], NonEmpty] | UnsetType = UNSET
    """``{label: ModeTable}``; default: one mode, plain BPTT."""
    train: dict[str, Any] = msgspec.field(default_factory=dict)
    """A :data:`TrainTable`."""
    evaluate: dict[str, Any] = msgspec.field(default_factory=dict)
    """An :class:`EvaluateTable`."""
    only: Annotated[list[dict[str, Any]], NonEmpty] | UnsetType = UNSET
    """``[[only]]``: a list of :class:`OnlyTable` (optional), e.g. a REDUCED grid that runs the
    costly model at fewer settings."""
