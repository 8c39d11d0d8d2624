"""Gaussian-noise training with the MPPD regulariser (Ding et al., ICML 2024)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.training.modes import register_training_mode
from spikeshield.training.mppd import MPPDTraining


@register_training_mode("gaussian")
@dataclass
class GaussianTraining(MPPDTraining):
    """Train on ``x`` and ``x + σ·N(0, 1)`` (not clipped to [0, 1], as in the official code), with
    the MPPD regulariser of weight ``rho`` (see :class:`~spikeshield.training.mppd.MPPDTraining`).

    Args:
        sigma: σ > 0 in pixel units of the [0, 1] input (default 8/255, the paper's).
        rho, kappa, mppd, decay: as :class:`~spikeshield.training.mppd.MPPDTraining`.
    """

    sigma: float = 8 / 255

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sigma = validate.positive("sigma", self.sigma)

    def perturb(
        self, model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
    ) -> Tensor:
        return x + self.sigma * torch.randn_like(x)
