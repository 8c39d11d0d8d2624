"""KLIF (Jiang & Zhang, arXiv 2302.09238; Neural Computation 36(12), 2024)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.kernels.program import NeuronProgram, SurrogateCode
from spikeshield.neurons import functional as F
from spikeshield.neurons.lif import ExponentialLeak
from spikeshield.neurons.registry import register_neuron


@register_neuron("klif")
class KLIFNode(ExponentialLeak):
    """k-based LIF: a learnable scale k on the membrane potential, then a ReLU, before firing.

    ``H = V + (X − (V − V_reset))/τ`` (τ = 2);  ``F = ReLU(k·H)``;  ``S = Θ(F − V_th)``
    (sigmoid surrogate, α = 4); hard reset ``V = F(1 − S) + V_reset·S`` or soft ``V = F − V_th·S``.
    Because the surrogate is evaluated at ``k·H − V_th``, k rescales both the height and the
    width of the surrogate gradient that H sees: learning k learns the surrogate's slope.
    ``scale_reset`` divides the post-reset potential by k, returning it to H's scale (as
    SpikingJelly's ``KLIFNode``, which cites this paper).

    Args:
        k_init: initial k (default 1).
        learnable_k: learn k (one scalar per layer), default True.
        scale_reset: divide the reset potential by k.
    """

    def __init__(
        self,
        *,
        k_init: float = 1.0,
        learnable_k: bool = True,
        scale_reset: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        k_init = validate.positive("k_init", k_init)
        validate.boolean("learnable_k", learnable_k)
        validate.boolean("scale_reset", scale_reset)
        self._k_init = k_init
        k = torch.tensor(k_init)
        self.k: Tensor
        if learnable_k:
            self.k = nn.Parameter(k)
        else:
            self.register_buffer("k", k)
        self.learnable_k = learnable_k
        self.scale_reset = scale_reset

    def prefire(self, h: Tensor) -> Tensor:
        return torch.relu(self.k * h)

    def reset(self, f: Tensor, s: Tensor) -> Tensor:
        if not self.scale_reset:
            return super().reset(f, s)
        if self.detach_reset:
            s = s.detach()
        if self.reset_mode == "hard":
            return F.reset_hard(f / self.k, s, self.v_reset)
        return F.reset_soft(f, s, self.v_threshold) / self.k

    def learned_values(self) -> dict[str, float]:
        values = super().learned_values()
        return {**values, "k": float(self.k.detach())} if self.learnable_k else values

    def kernel_program(self, surrogate: SurrogateCode) -> NeuronProgram:
        fields = self.kernel_fields(surrogate)
        return NeuronProgram(**fields, klif=True, scale_reset=bool(self.scale_reset), k=self.k)

    def spec(self) -> dict[str, Any]:
        return {
            **super().spec(),
            "k_init": self._k_init,
            "learnable_k": self.learnable_k,
            "scale_reset": self.scale_reset,
        }
