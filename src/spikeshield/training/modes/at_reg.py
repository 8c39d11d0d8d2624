"""Adversarial training with the Parseval weight update, "AT+Reg" (Ding et al., ICML 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.training.modes import register_training_mode
from spikeshield.training.modes.at import AdversarialTraining
from spikeshield.training.mppd import unwrap


def parseval_step(weight: Tensor, beta: float) -> Tensor:
    """``(1+β)·W − β·W·Wᵀ·W`` of a ``[rows, ...]`` weight (viewed as ``[rows, fan_in]``): one step
    of Cisse et al.'s Parseval retraction towards ``W·Wᵀ = I`` (Parseval networks, ICML 2017)."""
    w = weight.reshape(weight.shape[0], -1)
    return ((1 + beta) * w - beta * (w @ w.T) @ w).reshape(weight.shape)


@register_training_mode("at-reg")
@dataclass
class ParsevalAdversarialTraining(AdversarialTraining):
    """``at`` plus, after every optimiser step, the Parseval update ``W ← (1+β)W − βWWᵀW`` of every
    conv and linear weight; no weight decay (as in the official code, where this update replaces
    it: the run's ``weight_decay`` is set to 0 and recorded so).

    A linear layer with at least ``full_rows`` output rows updates a random ``row_fraction`` of
    its rows per step (drawn from the trainer's shared generator, so runs are reproducible and
    data-parallel replicas pick the same rows); conv layers and smaller linear layers update
    every row.

    Args:
        beta: β > 0 (0.001 for VGG11, 0.004 for WRN16 in the paper; default 0.001).
        row_fraction: fraction of rows of a large linear layer updated per step (default 0.3).
        full_rows: linear layers with fewer rows than this update all of them (default 200).
        step, start_std, steps, eps, rho, kappa, mppd, decay: as :class:`AdversarialTraining`.

    Raises:
        UsageError: bad options, or (when training starts) a model without conv or linear layers.
    """

    fixed_settings: ClassVar[dict[str, Any]] = {"weight_decay": 0.0}

    beta: float = 0.001
    row_fraction: float = 0.3
    full_rows: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        self.beta = validate.positive("beta", self.beta)
        self.row_fraction = validate.in_range("row_fraction", self.row_fraction, 0.0, 1.0, low_open=True)
        self.full_rows = validate.positive_int("full_rows", self.full_rows)

    def setup(self, model: nn.Module) -> None:
        if not self._layers(model):
            raise UsageError(
                f"training mode 'at-reg' updates conv and linear weights, and "
                f"{type(unwrap(model)).__name__} has none"
            )

    @staticmethod
    def _layers(model: nn.Module) -> list[nn.Module]:
        return [
            m for m in unwrap(model).modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
        ]

    @torch.no_grad()
    def after_step(self, model: nn.Module, rng: torch.Generator) -> None:
        for layer in self._layers(model):
            weight = layer.weight
            rows = weight.shape[0]
            if isinstance(layer, nn.Linear) and rows >= self.full_rows:
                pick = torch.randperm(rows, generator=rng)[: int(rows * self.row_fraction)].to(weight.device)
                weight[pick] = parseval_step(weight[pick].float(), self.beta).to(weight.dtype)
            else:
                weight.copy_(parseval_step(weight.float(), self.beta))
