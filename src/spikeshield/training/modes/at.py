"""FGSM adversarial training with the MPPD regulariser (Ding et al., ICML 2024)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.training.modes import register_training_mode
from spikeshield.training.mppd import MPPDTraining, unwrap


@register_training_mode("at")
@dataclass
class AdversarialTraining(MPPDTraining):
    """Train on ``x`` and its FGSM example, with the MPPD regulariser of weight ``rho``.

    The example follows the official code of RSSNN: start from ``x₀ = x + σ₀·N(0, 1)``, take one
    signed-gradient step ``x' = clip(x₀ + α·sign(∇ₓ loss(model(x₀), y)), 0, 1)``, the gradient
    taken with the model in eval mode (batch norm with its running statistics) and the model's
    own surrogate gradient; the model's parameters receive nothing from this step.

    Args:
        step: α > 0, the FGSM step in pixel units of the [0, 1] input (default 4/255).
        start_std: σ₀ ≥ 0 of the random start (default 0.001).
        rho, kappa, mppd, decay: as :class:`~spikeshield.training.mppd.MPPDTraining`.
    """

    step: float = 4 / 255
    start_std: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        self.step = validate.positive("step", self.step)
        self.start_std = validate.non_negative("start_std", self.start_std)

    def perturb(
        self, model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
    ) -> Tensor:
        model = unwrap(model)  # no data-parallel sync for a gradient that no parameter receives
        was_training = model.training
        model.eval()
        try:
            start = (x + self.start_std * torch.randn_like(x)).detach().requires_grad_(True)
            with torch.enable_grad():
                loss = loss_fn(model(start).float(), y)
                (grad,) = torch.autograd.grad(loss, [start])
        finally:
            model.train(was_training)
        return (start.detach() + self.step * grad.sign()).clamp(0.0, 1.0)
