"""The spiking sampler: a small convolutional SNN that emits one keep/mask spike per pixel.

Reconstruction [recon] of the spiking sampling network of Jiang & Zhang (seed abstract: "a
network composed of spiking neurons [that] dynamically decide[s] which pixel points should be
retained and which ones need to be masked according to the input"); no code or full text was
available, so every choice below is an option.

For an image ``x`` (``[B, C, H, W]``, direct encoding: the same input at each of ``T`` steps)
or an event sample (``[B, T, 2, H, W]`` count frames, one time bin per step)::

    I[t]   = conv3×3-BN(x[t])              → spiking neuron → S1[t]
    I2[t]  = conv3×3-BN(S1[t])             → spiking neuron → S2[t]
    U[t]   = conv1×1(S2[t])                 one input current per pixel
    V      = (1/T) Σ_t U[t]   (images)     the decision neuron's potential, integrated over T
    V[t]   = U[t]             (events)     one decision per pixel and time bin
    M      = Θ(V − θ)                       the keep spike; surrogate gradient g(V − θ)

The rate constraint picks θ (``rule``):

- ``topk``: θ per sample between the k-th and (k+1)-th largest V, ``k = round(rate · H·W)``
  (events: the cells taken until ``rate`` of the events are kept, see
  :func:`~.masks.event_budget_mask`), so the measured rate is the target; the forward keeps
  exactly those pixels and the backward is the surrogate g(V − θ) (straight through);
- ``penalty``: θ = ``v_threshold`` fixed; training adds ``weight · (mean M − rate)²`` to the
  loss (:func:`rate_penalty`) and the measured rate is whatever the sampler then emits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.models.layers import TimeDistributed, conv_bn
from spikeshield.neurons import build_neuron, build_surrogate
from spikeshield.sampling.masks import check_rate, event_budget_mask, keep_counts, topk_mask

RULES = ("topk", "penalty")


@dataclass
class SamplerOutput:
    """What :meth:`SpikingSampler.forward` returns."""

    mask: Tensor
    """Keep spikes, ``[B, 1, H, W]`` (images) or ``[B, T, 1, H, W]`` (events), 0/1 forward."""
    potential: Tensor
    """The decision neurons' potential V, same shape as ``mask``."""


class SpikingSampler(nn.Module):
    """Keep/mask spikes per pixel (per pixel and time bin for events); see the module docstring.

    Args:
        channels: input channels C (2 for event frames).
        events: inputs are ``[B, T, C, H, W]`` frames (else ``[B, C, H, W]`` images).
        time_steps: T for images (events use their own number of bins).
        hidden: channels of the two spiking conv layers.
        neuron, neuron_options: the hidden layers' neuron (``spikeshield neurons`` lists them).
        surrogate: the keep spike's surrogate gradient (e.g. ``"atan:2"``).
        rule: ``topk`` or ``penalty`` (the rate constraint).
        v_threshold: θ of the ``penalty`` rule.

    Raises:
        UsageError: an unknown rule, neuron or surrogate, or a bad number.
    """

    def __init__(
        self,
        channels: int,
        *,
        events: bool = False,
        time_steps: int = 4,
        hidden: int = 16,
        neuron: str = "lif",
        neuron_options: dict[str, Any] | None = None,
        surrogate: str = "atan:2",
        rule: str = "topk",
        v_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        if rule not in RULES:
            raise UsageError(f"sampler rule must be one of {', '.join(RULES)}, got {rule!r}")
        self.events = events
        self.time_steps = validate.positive_int("time_steps", time_steps)
        self.rule = rule
        self.v_threshold = validate.finite("v_threshold", v_threshold)
        self.surrogate = build_surrogate(surrogate)
        options = dict(neuron_options or {})
        self.body = nn.Sequential(
            TimeDistributed(*conv_bn(channels, validate.positive_int("hidden", hidden))),
            build_neuron(neuron, **options),
            TimeDistributed(*conv_bn(hidden, hidden)),
            build_neuron(neuron, **options),
            TimeDistributed(nn.Conv2d(hidden, 1, 1)),
        )

    def potential(self, x: Tensor) -> Tensor:
        """The decision potential V: ``[B, 1, H, W]`` for images, ``[B, T, 1, H, W]`` for events."""
        if self.events:
            return self.body(x.transpose(0, 1)).transpose(0, 1)
        seq = x.unsqueeze(0).expand(self.time_steps, *x.shape)
        return self.body(seq).mean(0)

    def forward(self, x: Tensor, rate: float) -> SamplerOutput:
        """Keep spikes for ``x`` at target ``rate`` (in (0, 1]; the ``penalty`` rule only
        reports it, training pulls the measured rate towards it)."""
        check_rate(rate)
        v = self.potential(x)
        if self.rule == "penalty":
            return SamplerOutput(self.surrogate(v - self.v_threshold), v)
        with torch.no_grad():
            hard = self.topk(v.detach(), x, rate)
            theta = self.threshold(v.detach(), hard)
        soft = self.surrogate(v - theta)
        return SamplerOutput(hard + soft - soft.detach(), v)

    def topk(self, v: Tensor, x: Tensor, rate: float) -> Tensor:
        if self.events:
            return event_budget_mask(v, x.sum(2, keepdim=True), rate)
        return topk_mask(v, keep_counts(rate, v[0].numel(), len(v), v.device))

    @staticmethod
    def threshold(v: Tensor, hard: Tensor) -> Tensor:
        """Per sample, midway between the lowest kept and the highest masked potential."""
        flat_v, flat_m = v.reshape(len(v), -1), hard.reshape(len(v), -1) > 0
        inf = torch.tensor(float("inf"), dtype=v.dtype, device=v.device)
        low_kept = torch.where(flat_m, flat_v, inf).amin(1)
        high_masked = torch.where(flat_m, -inf, flat_v).amax(1)
        theta = torch.where(torch.isfinite(high_masked), (low_kept + high_masked) / 2, low_kept - 1)
        return theta.view(-1, *[1] * (v.dim() - 1))


def rate_penalty(mask: Tensor, rate: float, weight: float) -> Tensor:
    """``weight · (mean(mask) − rate)²``, the penalty rule's term of the training loss."""
    return weight * (mask.mean() - rate) ** 2
