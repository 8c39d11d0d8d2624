"""Auto-PGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020), with the cross-entropy or the DLR loss.

Written from the paper's description (Algorithm 1):

- step size η starts at 2ε per sample; momentum α = 0.75::

      z      = Π(x_k + η·d(∇L(x_k)))                       d = sign (L∞) or ∇/‖∇‖₂ (L2)
      x_k+1  = Π(x_k + α·(z − x_k) + (1 − α)·(x_k − x_k−1))   (x_1 = z)

- checkpoints w_j = ⌈p_j·N⌉ with p_0 = 0, p_1 = 0.22, p_j+1 = p_j + max(p_j − p_j−1 − 0.03, 0.06);
- at a checkpoint η is halved for a sample if fewer than ρ = 0.75 of the steps since the last
  checkpoint increased its loss, or if neither η nor its best loss changed since the last
  checkpoint; such a sample restarts from its best point so far;
- the result is, per sample, the first point found that is misclassified, else the point of
  highest loss. A sample is not queried again once misclassified (nothing it does later can
  change its result), so its queries do not depend on its batch mates; the run stops when
  every sample is misclassified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.attacks.base import (
    Attack,
    ascent_direction,
    per_sample,
    project,
    query_active,
    random_start,
    register_attack,
)
from spikeshield.attacks.oracle import Oracle, loss_function
from spikeshield.streams import SampleStreams


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations (1-based counts of steps taken) at which APGD may halve its step size."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    points = sorted({math.ceil(round(q * steps, 6)) for q in p[1:] if q <= 1})
    return [w for w in points if 0 < w < steps]


@register_attack("apgd")
@dataclass
class APGD(Attack):
    """Auto-PGD: momentum and a step size that halves when progress stalls (Croce & Hein 2020)."""

    steps: int = 10
    restarts: int = 1
    loss: str = "ce"
    rho: float = 0.75
    momentum: float = 0.75

    def validate(self) -> None:
        super().validate()
        self.steps = validate.int_at_least("apgd steps", self.steps, 1)
        self.restarts = validate.int_at_least("apgd restarts", self.restarts, 1)
        self.rho = validate.non_negative("apgd rho", self.rho)
        self.momentum = validate.non_negative("apgd momentum", self.momentum)
        loss_function(self.loss)

    def perturb_once(self, oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams) -> Tensor:
        loss_fn = loss_function(self.loss)
        n = len(x)
        eta = torch.full((n,), 2.0 * self.eps, device=x.device, dtype=x.dtype)
        x_k = random_start(x, self.eps, self.norm, rng, oracle)
        loss_k, grad_k, scores = oracle.loss_and_grad(x_k, y, loss_fn, rng)
        fooled = scores.argmax(1) != y
        x_best_adv = torch.where(per_sample(fooled, x), x_k, x)
        x_best, loss_best, grad_best = x_k.clone(), loss_k.clone(), grad_k.clone()
        x_prev = x_k.clone()
        checkpoints = apgd_checkpoints(self.steps)
        last_checkpoint = 0
        increases = torch.zeros(n, device=x.device)
        eta_at_checkpoint = eta.clone()
        best_at_checkpoint = loss_best.clone()
        for k in range(self.steps):
            if bool(fooled.all()):
                break  # every sample keeps its first misclassified point: nothing left to change
            z = project(
                x_k + per_sample(eta, x) * ascent_direction(grad_k, self.norm), x, self.eps, self.norm, oracle
            )
            if k == 0:
                x_new = z
            else:
                a = self.momentum
                x_new = project(
                    x_k + a * (z - x_k) + (1 - a) * (x_k - x_prev), x, self.eps, self.norm, oracle
                )
            # a fooled sample is not queried again (its result is fixed): see query_active
            loss_new, grad_new, newly_fooled = query_active(
                oracle, x_new, y, loss_fn, rng, ~fooled, (loss_k, grad_k)
            )
            x_best_adv = torch.where(per_sample(newly_fooled & ~fooled, x), x_new, x_best_adv)
            fooled |= newly_fooled
            increases += (loss_new > loss_k).float()
            better = loss_new > loss_best
            x_best = torch.where(per_sample(better, x), x_new, x_best)
            grad_best = torch.where(per_sample(better, x), grad_new, grad_best)
            loss_best = torch.where(better, loss_new, loss_best)
            x_prev, x_k, loss_k, grad_k = x_k, x_new, loss_new, grad_new
            if k + 1 in checkpoints:
                since = k + 1 - last_checkpoint
                stalled = increases < self.rho * since
                unchanged = (eta_at_checkpoint == eta) & (best_at_checkpoint == loss_best)
                halve = stalled | unchanged
                eta = torch.where(halve, eta / 2, eta)
                x_k = torch.where(per_sample(halve, x), x_best, x_k)
                grad_k = torch.where(per_sample(halve, x), grad_best, grad_k)
                increases.zero_()
                eta_at_checkpoint, best_at_checkpoint = eta.clone(), loss_best.clone()
                last_checkpoint = k + 1
        return torch.where(per_sample(fooled, x), x_best_adv, x_best)

    def derived_settings(self) -> dict[str, Any]:
        return {"step_size": f"adaptive from {2 * self.eps:g}", "random_start": True}


@register_attack("apgd-ce")
@dataclass
class APGDCE(APGD):
    """Auto-PGD with the cross-entropy loss."""

    preset: ClassVar[dict[str, Any]] = {"loss": "ce"}


@register_attack("apgd-dlr")
@dataclass
class APGDDLR(APGD):
    """Auto-PGD with the DLR loss (scale-invariant; robust to saturated or rescaled scores)."""

    loss: str = "dlr"
    preset: ClassVar[dict[str, Any]] = {"loss": "dlr"}
