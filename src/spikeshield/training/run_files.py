"""The files of a run folder, one typed schema each, checked whenever they are read.

A run folder (see :mod:`spikeshield.training.trainer`) holds ``config.json``, ``metrics.json``,
``checkpoint.safetensors`` (whose ``run_state`` metadata is JSON too) and ``model.safetensors``.
Each JSON document is read through :mod:`spikeshield.schema`, so a damaged or hand-edited file
is one line naming the file and the field (``run/metrics.json: test_accuracy: expected
float | null, got str``), never a crash later in ``--resume`` or ``evaluate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NotRequired, TypedDict

from spikeshield.errors import CheckpointError, DataError
from spikeshield.io import read_json
from spikeshield.schema import (
    FiniteFloat,
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    decode_json,
)
from spikeshield.training.config import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"


class EpochRecord(TypedDict):
    """One entry of the per-epoch history (``metrics.json`` and the checkpoint's run state);
    only the epoch number is required (the figures are informational)."""

    epoch: PositiveInt
    train_loss: NotRequired[FiniteFloat]
    train_accuracy: NotRequired[Fraction]
    test_accuracy: NotRequired[Fraction]
    lr_end: NotRequired[FiniteFloat]
    train_seconds: NotRequired[NonNegativeFloat]
    images_per_second: NotRequired[NonNegativeFloat]
    neuron_parameters: NotRequired[dict[str, dict[str, FiniteFloat]]]
    """Learned neuron constants after the epoch, ``{layer: {"k": ..., "tau": ...}}``
    (:mod:`spikeshield.training.traces`)."""


class RunConfigFile(TypedDict):
    """``config.json``: every setting (``train``, see :class:`TrainConfig`), the model spec and
    the environment, written when a run starts."""

    format_version: PositiveInt
    train: dict[str, Any]
    model_spec: dict[str, Any]
    environment: dict[str, Any]


class MetricsFile(TypedDict):
    """``metrics.json``: the history so far; final figures once ``complete``."""

    complete: bool
    test_accuracy: Fraction | None
    epochs: NonNegativeInt
    history: list[EpochRecord]
    train_seconds: NotRequired[NonNegativeFloat]
    images_per_second: NotRequired[NonNegativeFloat | None]
    train_samples: NotRequired[NonNegativeInt]
    test_samples: NotRequired[NonNegativeInt]
    dataset: NotRequired[str]
    dataset_split: NotRequired[str | None]
    model: NotRequired[str]
    neuron: NotRequired[str]
    time_steps: NotRequired[PositiveInt]
    seed: NotRequired[NonNegativeInt]
    environment: NotRequired[dict[str, Any]]


class SavedRunState(TypedDict):
    """A checkpoint's ``run_state`` metadata: where training stopped and the optimizer's
    non-tensor state (its tensors are stored as ``optim.<param>.<name>``)."""

    epoch: NonNegativeInt
    history: list[EpochRecord]
    train_seconds: NonNegativeFloat
    param_groups: list[dict[str, Any]]
    optim_scalars: dict[str, dict[str, int | float | None]]
    config: dict[str, Any]


def check_history(history: list[dict[str, Any]], epochs: int, where: str, error: type[Exception]) -> None:
    """Epoch records numbered 1, 2, ... up to ``epochs``, one each."""
    numbers = [record["epoch"] for record in history]
    if len(numbers) != epochs or any(n != i + 1 for i, n in enumerate(numbers)):
        raise error(f"{where}: history holds epochs {numbers[:5]}, expected 1..{epochs} in order")


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The checked contents of a run folder's ``config.json`` (a :class:`RunConfigFile`)."""
    return read_json(Path(run_dir) / CONFIG_FILE, "run config", RunConfigFile, error=DataError)


def read_train_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` of a run folder, every setting's type checked (for
    ``evaluate``: a run must be rebuilt exactly as it was trained)."""
    saved = read_run_config(run_dir)
    return TrainConfig.from_file(saved["train"], f"{Path(run_dir) / CONFIG_FILE}: train")


def read_metrics(path: str | Path) -> dict[str, Any]:
    """The checked contents of a ``metrics.json`` (a :class:`MetricsFile`)."""
    metrics = read_json(path, "run metrics", MetricsFile, error=DataError)
    check_history(metrics["history"], metrics["epochs"], str(path), DataError)
    if metrics["complete"] and metrics["test_accuracy"] is None:
        raise DataError(f"{path}: test_accuracy: a complete run needs a number, got null")
    return metrics


def parse_run_state(text: str, where: str) -> dict[str, Any]:
    """A checkpoint's ``run_state`` metadata, checked (a :class:`SavedRunState`)."""
    state = decode_json(text, SavedRunState, where, error=CheckpointError)
    check_history(state["history"], state["epoch"], where, CheckpointError)
    return state


#: batch norm's default momentum m (PyTorch's; spikeshield's models keep it)
BATCH_NORM_MOMENTUM = 0.1


def batch_norm_start_weight(weights: Path, momentum: float = BATCH_NORM_MOMENTUM) -> tuple[int, float] | None:
    """How unsettled a saved model's batch-norm running statistics are: ``(n, (1 - m)^n)`` for
    the layer with the fewest updates ``n`` (its ``num_batches_tracked``), or None without
    batch norm. PyTorch updates a running statistic as ``r_k = (1 - m) r_{k-1} + m s_k`` from
    ``r_0`` = 0 (mean) and 1 (variance), so after ``n`` training batches the start values still
    weigh ``(1 - m)^n`` in what the model uses at test time: 0.28 after the 12 batches of one
    epoch of the 8x8 digits, whose test accuracy is then far below the training accuracy.
    Reads only the tensor names and those counters (safetensors: no code runs)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        counts = [int(f.get_tensor(k)) for k in f.keys() if k.endswith("num_batches_tracked")]  # noqa: SIM118
    if not counts:
        return None
    fewest = min(counts)
    return fewest, (1.0 - momentum) ** fewest
