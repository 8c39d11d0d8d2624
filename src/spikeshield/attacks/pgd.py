"""Projected gradient descent (Madry et al., ICLR 2018), L∞ and L2, with a step schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
from spikeshield.errors import UsageError
from spikeshield.streams import SampleStreams

SCHEDULES = ("constant", "cosine", "step")


def step_size_at(base: float, step: int, steps: int, schedule: str) -> float:
    """Step size of step ``step`` (0-based) of ``steps``.

    ``constant``: α; ``cosine``: α·(1 + cos(π·k/steps))/2; ``step``: α, then α/2 from half way,
    α/4 from three quarters.
    """
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * step / steps))
    if step >= 0.75 * steps:
        return base / 4
    if step >= 0.5 * steps:
        return base / 2
    return base


@register_attack("pgd")
@dataclass
class PGD(Attack):
    """Projected gradient ascent on the loss: x ← Π(x + α·sign(∇ₓL)) (L∞) or α·∇/‖∇‖₂ (L2).

    Starts from a uniformly random point of the ball (``random_start``), takes ``steps`` steps
    of size ``step_size`` (default 2.5·ε/steps, Madry et al.) following ``schedule`` and returns
    the last iterate. The same arithmetic as torchattacks' PGD / PGDL2 (checked in the tests);
    the random start is drawn per sample (each from its own stream), not for the whole batch.

    ``stop_when_fooled``: a sample stops at the first iterate that misclassifies it (it is not
    queried or moved again; the result is that iterate, as APGD and SA-PGD keep theirs), and the
    run stops once every sample is fooled. The other samples take exactly the steps they take
    without it. The gradient-masking checks' large-ε probe runs so: on a model that falls at
    that budget it then costs a few steps instead of all of them.
    """

    steps: int = 10
    step_size: float | None = None
    schedule: str = "constant"
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    stop_when_fooled: bool = False

    def validate(self) -> None:
        super().validate()
        self.steps = validate.int_at_least("pgd steps", self.steps, 1)
        self.restarts = validate.int_at_least("pgd restarts", self.restarts, 1)
        if self.step_size is not None:
            self.step_size = validate.positive("pgd step_size", self.step_size)
        if self.schedule not in SCHEDULES:
            raise UsageError(f"step schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        validate.boolean("random_start", self.random_start)
        validate.boolean("stop_when_fooled", self.stop_when_fooled)
        loss_function(self.loss)

    @property
    def alpha(self) -> float:
        return 2.5 * self.eps / self.steps if self.step_size is None else self.step_size

    def perturb_once(self, oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams) -> Tensor:
        loss = loss_function(self.loss)
        x_adv = random_start(x, self.eps, self.norm, rng, oracle) if self.random_start else x.clone()
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        grad = torch.zeros_like(x)
        for k in range(self.steps):
            if not self.stop_when_fooled:
                _, grad, _ = oracle.loss_and_grad(x_adv, y, loss, rng)
            elif bool(fooled.all()):
                break  # every sample keeps its first misclassified iterate
            else:  # a fooled sample is not queried again (see query_active)
                previous = (torch.zeros(len(x), device=x.device), grad)
                _, grad, wrong = query_active(oracle, x_adv, y, loss, rng, ~fooled, previous)
                fooled |= wrong
            alpha = step_size_at(self.alpha, k, self.steps, self.schedule)
            moved = project(x_adv + alpha * ascent_direction(grad, self.norm), x, self.eps, self.norm, oracle)
            x_adv = torch.where(per_sample(fooled, x), x_adv, moved)
        return x_adv

    def derived_settings(self) -> dict[str, Any]:
        return {"step_size": self.alpha}
