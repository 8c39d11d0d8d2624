"""Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020), L∞: score-based and
query-limited; it never looks at a gradient, so gradient masking cannot fool it.

Written from the paper's description:

- start from vertical stripes: δ[c, :, j] = ±ε, one random sign per channel and column;
- at iteration i, pick a random square window of side s = round(√(p_i·H·W)) (at least 1) at a
  random position and set δ there to ±ε, one random sign per channel;
- keep the change only if the margin loss ``z_y − max_{i≠y} z_i`` decreased; stop a sample
  once it is misclassified (margin < 0);
- p_i follows the paper's piecewise-constant schedule, written for 10 000 iterations and
  rescaled to ``queries``: p_init, halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000.

Each iteration costs one model query per still-correct sample; ``queries`` bounds the total
per sample (the first query scores the initial stripes). The evaluation records the mean
number of model calls per attacked sample. Every random choice (stripe signs, window position,
window signs) is drawn from the sample's own stream, so it does not depend on the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.attacks.base import Attack, register_attack
from spikeshield.attacks.oracle import Oracle, margin_loss
from spikeshield.errors import UsageError
from spikeshield.streams import SampleStreams

_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def _signs(u: Tensor) -> Tensor:
    """±1 from uniform draws (−1 below one half)."""
    return torch.where(u < 0.5, -1.0, 1.0)


def _below(u: Tensor, count: int) -> Tensor:
    """An integer in [0, count) from uniform draws in [0, 1)."""
    return (u * count).to(torch.int64).clamp(max=count - 1)


def square_fraction(p_init: float, iteration: int, queries: int) -> float:
    """The fraction of pixels the window covers at ``iteration`` (the paper's schedule)."""
    i = int(iteration / queries * 10000)
    halvings = sum(1 for b in _SCHEDULE if i > b)
    return p_init / (2**halvings)


@register_attack("square")
@dataclass
class Square(Attack):
    """Square attack: random square updates accepted when the margin drops (score-based, L∞)."""

    queries: int = 1000
    p_init: float = 0.05
    restarts: int = 1

    kind: ClassVar[str] = "black-box"
    norms: ClassVar[tuple[str, ...]] = ("linf",)

    def validate(self) -> None:
        super().validate()
        self.queries = validate.int_at_least("square queries", self.queries, 1)
        self.p_init = validate.in_range("square p_init", self.p_init, 0.0, 1.0, low_open=True)
        self.restarts = validate.int_at_least("square restarts", self.restarts, 1)

    def perturb_once(self, oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams) -> Tensor:
        if x.dim() < 3:
            raise UsageError(f"square attack needs image-shaped inputs [B, ..., H, W], got {list(x.shape)}")
        h, w = x.shape[-2], x.shape[-1]
        lead = x.shape[1:-2]  # channels (and time, for event frames)
        dev = x.device
        delta = (self.eps * _signs(rng.uniform((*lead, 1, w)))).to(dev, x.dtype).expand(x.shape).clone()
        x_best = oracle.clip(x + delta)
        margin = margin_loss(oracle.scores(x_best, rng), y)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        for i in range(1, self.queries):
            active = (margin > 0).nonzero().squeeze(1)
            if len(active) == 0:
                break
            m, streams = len(active), rng[active]
            side = max(1, min(h, w, round(math.sqrt(square_fraction(self.p_init, i, self.queries) * h * w))))
            # one draw per sample: the window's top and left corner, then its signs
            u = streams.uniform((2 + math.prod(lead),), dtype=torch.float64)
            top = _below(u[:, 0], h - side + 1).to(dev).view(m, 1, 1)
            left = _below(u[:, 1], w - side + 1).to(dev).view(m, 1, 1)
            window = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
            window = window.view(m, *([1] * len(lead)), h, w)
            values = (self.eps * _signs(u[:, 2:])).to(dev, x.dtype).view(m, *lead, 1, 1)
            candidate_delta = torch.where(window, values, delta[active])
            candidate = oracle.clip(x[active] + candidate_delta)
            new_margin = margin_loss(oracle.scores(candidate, streams), y[active])
            better = new_margin < margin[active]
            accepted = active[better]
            delta[accepted] = candidate_delta[better]
            x_best[accepted] = candidate[better]
            margin[accepted] = new_margin[better]
        return x_best

    def derived_settings(self) -> dict[str, Any]:
        return {"steps": self.queries, "step_size": self.eps, "random_start": True}
