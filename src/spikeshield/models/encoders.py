"""Input encoders: turn a static image batch ``[B, C, H, W]`` (or events ``[B, T, C, H, W]``)
into a time sequence ``[T, B, ...]``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import streams, validate
from spikeshield.errors import UsageError

ENCODERS = ("direct", "poisson", "events")


class _StraightThroughBernoulli(torch.autograd.Function):
    """Bernoulli spikes with rate p forward (``u < p`` for uniform ``u``); identity gradient
    (d spike / dp = 1) backward."""

    @staticmethod
    def forward(ctx: Any, p: Tensor, u: Tensor) -> Tensor:
        return (u < p).to(p.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def poisson_encode(x: Tensor, time_steps: int) -> Tensor:
    """Rate coding: at each step a pixel of intensity p ∈ [0, 1] spikes with probability p.

    The gradient is straight-through (the expected spike equals p), so attacks can use it.
    ``x``: ``[B, ...]``; returns ``[T, B, ...]`` (each sample's draws from its own stream inside
    :func:`spikeshield.streams.sample_streams`).
    """
    p = x.clamp(0.0, 1.0).unsqueeze(0).expand(time_steps, *x.shape).contiguous()
    return _StraightThroughBernoulli.apply(p, streams.rand_like(p, batch_dim=1))


class Encoder(nn.Module):
    """``direct``: repeat the (normalised) image T times — the first conv+BN then acts as the
    encoder, and the model computes it once and repeats its output (identical result, T× less
    work). ``poisson``: Bernoulli rate coding. ``events``: the input already has a time axis
    ``[B, T, ...]``, which is moved first."""

    def __init__(self, kind: str, time_steps: int) -> None:
        super().__init__()
        if kind not in ENCODERS:
            raise UsageError(f"unknown encoder {kind!r}; choose from {', '.join(ENCODERS)}")
        validate.positive_int("time steps", time_steps)
        self.kind = kind
        self.time_steps = time_steps

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "poisson":
            return poisson_encode(x, self.time_steps)
        if self.kind == "events":
            return x.transpose(0, 1)
        return x.unsqueeze(0).expand(self.time_steps, *x.shape)

    def extra_repr(self) -> str:
        return f"{self.kind}, T={self.time_steps}"
