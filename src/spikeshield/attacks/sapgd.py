"""Stability-aware PGD, SA-PGD (Wang, Zhao, Chen, Zhang & Zeng, "Towards Reliable Evaluation of
Adversarial Robustness for Spiking Neural Networks", arXiv 2512.22522, 2025), L∞.

Written from the paper and its official code (``attack.py``, ``SAPGD``). Surrogate gradients of
SNNs are noisy and often vanish for part of the input, so the step normalises both moments of the
gradient per sample and caps every coordinate's move at the current step size η::

    m ← 0.5·m + g / mean|g|              (the first step: m = g / mean|g|)
    v ← 0.8·v + g² / mean(g²)            (the first step: v = g² / mean(g²))
    x ← Π_{ε-ball ∩ [0,1]}( x + clip(η·m / (√v + 1e-12), −η, η) )

means over each sample's elements. η starts at ε and halves after fixed numbers of steps: the
first after ⌊0.22·N⌋ steps, each later interval ⌊0.03·N⌋ steps shorter than the one before but
never below ⌊0.06·N⌋ (each at least 1) — for N = 100 after steps 22, 41, 57, 70, 80, 87, 93 and 99
(:func:`sapgd_halvings`; the same rule gives the schedule for other step counts, as in the
code). The run starts from a uniformly random point of the ε-ball; the result is, per sample,
the first point found that is misclassified, else the point of highest loss (a misclassified
sample is not queried again; the official code keeps stepping it). The paper runs 100
steps (50 with EOT 10 on Poisson-coded inputs) and pairs it with ASSG (``--gradient assg``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.attacks.base import Attack, per_sample, project, query_active, random_start, register_attack
from spikeshield.attacks.oracle import Oracle, loss_function
from spikeshield.streams import SampleStreams


def sapgd_halvings(steps: int) -> list[int]:
    """The step counts after which SA-PGD halves η (the official code's rule, see the module)."""
    interval = max(int(0.22 * steps), 1)
    shortest, shrink = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    out, at = [], interval
    while at <= steps:
        out.append(at)
        interval = max(interval - shrink, shortest)
        at += interval
    return out


def sapgd_step_sizes(eps: float, steps: int) -> list[float]:
    """η of each of the ``steps`` steps (0-based): ε halved once per halving already passed."""
    halvings = sapgd_halvings(steps)
    return [eps / 2 ** sum(1 for h in halvings if h <= k) for k in range(steps)]


def _per_sample_mean(t: Tensor) -> Tensor:
    return t.flatten(1).mean(1).view(-1, *([1] * (t.dim() - 1)))


@register_attack("sa-pgd")
@dataclass
class SAPGD(Attack):
    """Stability-aware PGD: normalised moments, per-coordinate capped steps (Wang et al. 2025)."""

    steps: int = 100
    restarts: int = 1
    loss: str = "ce"
    momentum: float = 0.5
    second_moment: float = 0.8

    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def validate(self) -> None:
        super().validate()
        self.steps = validate.int_at_least("sa-pgd steps", self.steps, 1)
        self.restarts = validate.int_at_least("sa-pgd restarts", self.restarts, 1)
        self.momentum = validate.in_range("sa-pgd momentum", self.momentum, 0.0, 1.0, high_open=True)
        self.second_moment = validate.in_range(
            "sa-pgd second_moment", self.second_moment, 0.0, 1.0, high_open=True
        )
        loss_function(self.loss)

    def perturb_once(self, oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams) -> Tensor:
        loss_fn = loss_function(self.loss)
        tiny = torch.finfo(torch.float32).tiny
        x_k = random_start(x, self.eps, self.norm, rng, oracle)
        loss_k, grad, scores = oracle.loss_and_grad(x_k, y, loss_fn, rng)
        fooled = scores.argmax(1) != y
        x_fooled = torch.where(per_sample(fooled, x), x_k, x)
        x_best, loss_best = x_k.clone(), loss_k.clone()
        m = v = torch.zeros_like(x)
        for k, eta in enumerate(sapgd_step_sizes(self.eps, self.steps)):
            if bool(fooled.all()):
                break  # every sample keeps its first misclassified point: nothing left to change
            g1 = grad / _per_sample_mean(grad.abs()).clamp_min(tiny)
            # g²/mean(g²) from the normalised g (the same ratio; no underflow of tiny gradients)
            g2 = g1.square() / _per_sample_mean(g1.square()).clamp_min(tiny)
            m = g1 if k == 0 else self.momentum * m + g1
            v = g2 if k == 0 else self.second_moment * v + g2
            step = (eta * m / (v.sqrt() + 1e-12)).clamp(-eta, eta)
            x_k = project(x_k + step, x, self.eps, self.norm, oracle)
            # a fooled sample is not queried again (its result is fixed): see query_active
            loss_k, grad, wrong = query_active(oracle, x_k, y, loss_fn, rng, ~fooled, (loss_k, grad))
            newly = wrong & ~fooled
            x_fooled = torch.where(per_sample(newly, x), x_k, x_fooled)
            fooled |= newly
            better = loss_k > loss_best
            x_best = torch.where(per_sample(better, x), x_k, x_best)
            loss_best = torch.where(better, loss_k, loss_best)
        return torch.where(per_sample(fooled, x), x_fooled, x_best)

    def derived_settings(self) -> dict[str, Any]:
        return {
            "step_size": f"adaptive from {self.eps:g}, halved after steps {sapgd_halvings(self.steps)}",
            "random_start": True,
        }
