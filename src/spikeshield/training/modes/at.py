"""Adversarial training with the MPPD regulariser (Ding et al., ICML 2024): FGSM, or PGD-k."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.training.modes import register_training_mode
from spikeshield.training.mppd import MPPDTraining, unwrap


@register_training_mode("at")
@dataclass
class AdversarialTraining(MPPDTraining):
    """Train on ``x`` and its adversarial example, with the MPPD regulariser of weight ``rho``.

    The example follows the official code of RSSNN: start from ``x₀ = x + σ₀·N(0, 1)``, take one
    signed-gradient step ``x' = clip(x₀ + α·sign(∇ₓ loss(model(x₀), y)), 0, 1)``, the gradient
    taken with the model in eval mode (batch norm with its running statistics) and the model's
    own surrogate gradient; the model's parameters receive nothing from this step.

    With ``steps`` k > 1 the example is PGD-k's (Madry et al., "Towards deep learning models
    resistant to adversarial attacks", ICLR 2018): k such steps from the same start, each
    projected back onto the L∞ ball of radius ``eps`` around ``x`` and clipped to [0, 1]
    (Madry et al. start uniformly in the ball; here the start is x₀ above). A batch then takes
    k + 2 forward passes and a backward through each (FGSM: 3, plain BPTT: 1).

    Args:
        step: α > 0, the size of each signed step in pixel units of the [0, 1] input (default 4/255).
        start_std: σ₀ ≥ 0 of the random start (default 0.001).
        steps: k ≥ 1 signed steps (default 1: FGSM).
        eps: ε > 0, the L∞ radius of PGD's projection (needed when ``steps`` > 1; with one step,
            if given, the example is projected too).
        rho, kappa, mppd, decay: as :class:`~spikeshield.training.mppd.MPPDTraining`.

    Raises:
        UsageError: a bad value, or ``steps`` > 1 without ``eps``.
    """

    step: float = 4 / 255
    start_std: float = 0.001
    steps: int = 1
    eps: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.step = validate.positive("step", self.step)
        self.start_std = validate.non_negative("start_std", self.start_std)
        self.steps = validate.positive_int("steps", self.steps)
        if self.eps is not None:
            self.eps = validate.positive("eps", self.eps)
        elif self.steps > 1:
            raise UsageError(f"at: steps = {self.steps} (PGD) needs eps, the radius of the L-inf ball")

    def perturb(
        self, model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]
    ) -> Tensor:
        model = unwrap(model)  # no data-parallel sync for a gradient that no parameter receives
        was_training = model.training
        model.eval()
        try:
            adv = (x + self.start_std * torch.randn_like(x)).detach()
            for _ in range(self.steps):
                adv.requires_grad_(True)
                with torch.enable_grad():
                    loss = loss_fn(model(adv).float(), y)
                    (grad,) = torch.autograd.grad(loss, [adv])
                adv = adv.detach() + self.step * grad.sign()
                if self.eps is not None:
                    adv = x + (adv - x).clamp(-self.eps, self.eps)
                adv = adv.clamp(0.0, 1.0)
        finally:
            model.train(was_training)
        return adv
