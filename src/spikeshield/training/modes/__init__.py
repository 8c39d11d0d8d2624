"""Training modes: how a run is trained, one file per mode, registered by name.

A mode decides how a training batch becomes a loss (:meth:`TrainingMode.batch_loss`; e.g.
adversarial training perturbs the batch first, a regulariser adds a term), may act on the
model once before training (:meth:`TrainingMode.setup`) and after every optimiser step
(:meth:`TrainingMode.after_step`, e.g. a weight projection), may fix training settings it
cannot work without (:attr:`TrainingMode.fixed_settings`), or, for modes that
are not plain gradient descent on the spiking model (e.g. ANN-to-SNN conversion), how a whole
run folder is produced (:meth:`TrainingMode.fit`). The mode and its options are part of the
run's :class:`~spikeshield.training.TrainConfig` (``mode``, ``mode_options``), so they are
recorded in ``config.json``, checked on ``--resume`` and selectable per cell of an experiment
(``[modes.LABEL]`` in an experiment file).

A new mode is one file in this package (imported below) or anywhere else::

    @register_training_mode("input-noise")
    class InputNoise(TrainingMode):
        "Gaussian noise of std ``sigma`` on every training batch (inputs in [0, 1])."

        def __init__(self, sigma: float = 0.1) -> None:
            self.sigma = sigma

        def batch_loss(self, model, x, y, loss_fn):
            return super().batch_loss(model, (x + self.sigma * torch.randn_like(x)).clamp(0, 1), y, loss_fn)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from spikeshield.errors import UsageError
from spikeshield.registry import Registry

if TYPE_CHECKING:
    from spikeshield.data import ArrayDataset
    from spikeshield.training.config import TrainConfig

DEFAULT_MODE = "bptt"


class TrainingMode:
    """Base of every training mode: BPTT on ``loss_fn(model(x), y)``; subclasses override a part.

    Options are the constructor's keyword arguments (validated by :func:`build_training_mode`).
    Random numbers must come from torch's global generator, which the trainer re-seeds at every
    epoch, so runs stay reproducible and resumable.
    """

    fixed_settings: ClassVar[dict[str, Any]] = {}
    """Training settings this mode always runs with (e.g. ``{"weight_decay": 0.0}``): they replace
    the configured values in :class:`~spikeshield.training.TrainConfig`, so ``config.json``
    records what was used."""

    def setup(self, model: nn.Module) -> None:
        """Called once with the model before training (check that the mode applies to it)."""

    def after_step(self, model: nn.Module, rng: torch.Generator) -> None:
        """Called after every optimiser step (e.g. to project the weights). ``rng`` (CPU) is
        seeded per epoch alike in every process, so draws that data-parallel replicas must
        agree on come from it."""

    def batch_loss(
        self, model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
    ) -> tuple[Tensor, Tensor]:
        """``(logits [B, classes], scalar loss)`` of one training batch ``x`` ``[B, ...]``."""
        logits = model(x)
        return logits, loss_fn(logits.float(), y)

    def fit(
        self,
        config: TrainConfig,
        out: Path,
        *,
        resume: bool,
        progress: bool | None,
        log: Callable[[str], None],
        datasets: tuple[ArrayDataset, ArrayDataset] | None,
    ) -> dict[str, Any]:
        """Produce the run folder ``out``; returns its metrics. Default: the BPTT trainer."""
        from spikeshield.training.trainer import bptt_train

        return bptt_train(config, out, self, resume=resume, progress=progress, log=log, datasets=datasets)

    def check_config(self, config: TrainConfig) -> None:
        """Refuse, with a :class:`UsageError`, run settings this mode cannot train (default: none)."""


TRAINING_MODES: Registry[type[TrainingMode]] = Registry("training mode")


def register_training_mode(name: str) -> Callable[[type[TrainingMode]], type[TrainingMode]]:
    """Class decorator: make a :class:`TrainingMode` subclass available by ``name``."""
    return TRAINING_MODES.register(name)


def build_training_mode(name: str, options: dict[str, Any] | None = None) -> TrainingMode:
    """The registered mode ``name`` with ``options``; unknown names or options raise :class:`UsageError`."""
    cls = TRAINING_MODES.get(name)
    options = dict(options or {})
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise UsageError(f"training mode {name!r}: {exc}") from None
    return cls(**options)


# registers the built-in modes
from spikeshield.training.modes import ann2snn, at, at_reg, bptt, gaussian, noisy  # noqa: E402,F401

__all__ = ["DEFAULT_MODE", "TRAINING_MODES", "TrainingMode", "build_training_mode", "register_training_mode"]
