"""Fast gradient sign method (Goodfellow et al., ICLR 2015) and its L2 form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from spikeshield import validate
from spikeshield.attacks.base import Attack, ascent_direction, project, register_attack
from spikeshield.attacks.oracle import Oracle, loss_function
from spikeshield.streams import SampleStreams


@register_attack("fgsm")
@dataclass
class FGSM(Attack):
    """One gradient step of size ε: x' = clip(x + ε·sign(∇ₓL)) (L∞) or x + ε·∇/‖∇‖₂ (L2).

    ``init_noise`` > 0 takes the gradient at x + init_noise·N(0, 1) instead of x (the variant
    Ding et al., ICML 2024, use for adversarial training: 0.001); the step starts from that point and
    the result is projected back into the ε-ball around x.
    """

    loss: str = "ce"
    init_noise: float = 0.0

    iterative: ClassVar[bool] = False

    def validate(self) -> None:
        super().validate()
        loss_function(self.loss)
        self.init_noise = validate.non_negative("fgsm init_noise", self.init_noise)

    def perturb_once(self, oracle: Oracle, x: Tensor, y: Tensor, rng: SampleStreams) -> Tensor:
        start = x
        if self.init_noise > 0:
            noise = rng.normal(x.shape[1:], dtype=x.dtype, device=x.device)
            start = oracle.clip(x + self.init_noise * noise)
        _, grad, _ = oracle.loss_and_grad(start, y, loss_function(self.loss), rng)
        x_adv = start + self.eps * ascent_direction(grad, self.norm)
        if self.init_noise == 0 and self.norm == "linf":
            return oracle.clip(x_adv)  # already inside the ball: the same arithmetic as the reference
        return project(x_adv, x, self.eps, self.norm, oracle)

    def derived_settings(self) -> dict[str, object]:
        return {"steps": 1, "step_size": self.eps, "restarts": 1, "random_start": self.init_noise > 0}
