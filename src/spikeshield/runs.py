"""Load a trained run folder back into Python: ``model, config, test_set = spikeshield.load_run(DIR)``."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import NamedTuple

import torch

from spikeshield.data import ArrayDataset, load_dataset
from spikeshield.errors import CheckpointError, SpikeshieldError, UsageError
from spikeshield.io import open_regular
from spikeshield.models import SpikingModel
from spikeshield.training import TrainConfig, build_model_for, load_model_weights
from spikeshield.training.checkpoint import tensors_digest
from spikeshield.training.run_files import METRICS_FILE, read_metrics, read_train_config
from spikeshield.training.trainer import CONFIG_FILE, MODEL_FILE, dataset_options_for

EVALUATION_SPLITS = ("test", "holdout")


class LoadedRun(NamedTuple):
    """A trained run: its model (eval mode, on the asked device), its settings and its test set."""

    model: SpikingModel
    config: TrainConfig
    test_set: ArrayDataset


def read_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir/config.json``, checked against its schema
    (:func:`spikeshield.training.run_files.read_train_config`).

    Raises:
        UsageError: the folder does not exist, or is a file.
        DataError: ``config.json`` is missing, not a regular file, or malformed (the message
            names the field).
    """
    run = Path(run_dir)
    if not run.is_dir():
        if run.exists():
            raise UsageError(f"{run} is a file, not a run folder")
        raise UsageError(f"run folder {run} does not exist")
    return read_train_config(run)


def check_source_run(source: str | Path) -> Path:
    """A transfer attack's ``--source``, checked to be a run folder (one with ``config.json``):
    a missing path, a file or another folder said "has no model.safetensors: its training has
    not finished" (new-user trial).

    Raises:
        UsageError: ``source`` does not exist, is a file, or is a folder without ``config.json``.
    """
    path = Path(source)
    if not path.exists():
        raise UsageError(f"--source {path} does not exist")
    if not path.is_dir():
        raise UsageError(f"--source {path} is a file, not a run folder")
    if not (path / CONFIG_FILE).exists():
        raise UsageError(f"--source {path} is not a run folder (it has no {CONFIG_FILE})")
    return path


def load_model(run_dir: str | Path, config: TrainConfig | None = None) -> SpikingModel:
    """The trained model of ``run_dir`` (weights checked against its spec; never runs code)."""
    config = config or read_config(run_dir)
    model = build_model_for(config)
    load_model_weights(_weights_file(run_dir), model, model.spec)
    return model


def load_run(
    run_dir: str | Path,
    *,
    limit: int | None = None,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
    split: str = "test",
) -> LoadedRun:
    """Load a run folder written by ``spikeshield train`` / ``run`` / ``experiment``.

    Args:
        run_dir: the folder holding ``config.json`` and ``model.safetensors``.
        limit: keep the same fixed random subset of this many test samples that
            ``spikeshield evaluate --limit`` uses.
        data_root: where the dataset lives (default: the run's own ``data_root``, then
            ``$SPIKESHIELD_DATA``).
        device: where to put the model.
        split: ``test`` (default), or ``holdout``: the samples of the training split that the run
            did not train on (it trained on a ``limit_train`` subset), a validation set for
            choosing among runs without looking at the test set.

    Returns:
        ``LoadedRun(model, config, test_set)``: the model in eval mode (inputs: images in
        [0, 1], ``[B, C, H, W]``, or event frames ``[B, T, 2, H, W]``; output: logits
        ``[B, classes]``), its :class:`TrainConfig`, and the evaluation samples (the test split,
        or the held-out training samples) as an ``ArrayDataset``.

    Raises:
        UsageError: the folder or its config is missing or not a run; an unknown ``split``; a
            ``holdout`` of a run that trained on the whole training split.
        CheckpointError: the weights do not fit the recorded model.
        DataError: the test set cannot be found.
    """
    config = read_config(run_dir)
    if split not in EVALUATION_SPLITS:
        raise UsageError(f"split must be one of {', '.join(EVALUATION_SPLITS)}, got {split!r}")
    if split == "holdout" and config.limit_train is None:
        raise UsageError(
            f"{run_dir} trained on the whole training split: it has no held-out training samples"
        )
    model = load_model(run_dir, config).to(device).eval()
    root = data_root if data_root is not None else config.data_root
    options = dataset_options_for(config)
    if split == "test":
        return LoadedRun(model, config, load_dataset(config.dataset, "test", root, limit=limit, **options))
    unseen = load_dataset(config.dataset, "train", root, **options).holdout(config.limit_train)
    return LoadedRun(model, config, unseen.subset(limit) if limit is not None else unseen)


def _weights_file(run_dir: str | Path) -> Path:
    path = Path(run_dir) / MODEL_FILE
    if not path.exists() and not path.is_symlink():
        raise missing_weights(run_dir)
    return path


def missing_weights(run_dir: str | Path) -> SpikeshieldError:
    """The error for a run folder without its weights file: a :class:`UsageError` when its
    training has not finished, a :class:`CheckpointError` when ``metrics.json`` records a
    finished training (the file was deleted or moved)."""
    metrics = None
    with contextlib.suppress(SpikeshieldError):
        metrics = read_metrics(Path(run_dir) / METRICS_FILE)
    if metrics is not None and metrics["complete"]:
        return CheckpointError(
            f"{run_dir}: its weights file {MODEL_FILE} is missing, though its training finished "
            f"({METRICS_FILE} says so); put the file back, or train the run again into an empty folder"
        )
    return UsageError(f"{run_dir} has no {MODEL_FILE}: its training has not finished")


def weights_digest(run_dir: str | Path) -> str:
    """Which weights the run has (which evaluation a result belongs to): the SHA-256 of the
    tensors of its final weights file (:func:`~spikeshield.training.checkpoint.tensors_digest`:
    names, dtypes, shapes and bytes), not of the file's bytes, which differ for the same tensors
    each time the file is written.

    Raises:
        UsageError: the run has no weights file (its training has not finished).
        CheckpointError: the weights file is damaged or unreadable, or missing from a finished run.
    """
    path = _weights_file(run_dir)
    try:
        return tensors_digest(path)
    except CheckpointError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        raise CheckpointError(
            f"{path}: the run's weights file is damaged or unreadable ({reason}); "
            "train the run again, into an empty folder"
        ) from None


def same_weights(recorded: object, run_dir: str | Path, digest: str) -> bool:
    """Whether ``recorded`` (an evaluation's ``weights_sha256``) names the weights of ``run_dir``,
    whose :func:`weights_digest` is ``digest``. Evaluations written before spikeshield hashed the
    tensors recorded the SHA-256 of the file's bytes: that still counts while the file is the one
    they were made from."""
    if recorded == digest:
        return True
    if not isinstance(recorded, str):
        return False
    file_hash = hashlib.sha256()
    with open_regular(_weights_file(run_dir), "checkpoint", error=CheckpointError) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            file_hash.update(block)
    return recorded == file_hash.hexdigest()
