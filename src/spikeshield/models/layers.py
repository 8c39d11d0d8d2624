"""Building blocks that run stateless layers over the time axis of ``[T, B, ...]`` tensors."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeshield import validate


class TimeDistributed(nn.Sequential):
    """Apply stateless layers (conv, BN, linear, pooling) to every time step at once.

    ``[T, B, ...]`` is flattened to ``[T·B, ...]`` for the wrapped layers, then unflattened, so
    batch norm sees all T·B samples (the usual choice for directly trained SNNs).
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        t, b = x.shape[0], x.shape[1]
        y = super().forward(x.reshape(t * b, *x.shape[2:]))
        return y.reshape(t, b, *y.shape[1:])


def conv_bn(
    c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int | None = None
) -> list[nn.Module]:
    """Conv (no bias) followed by batch norm."""
    pad = kernel // 2 if padding is None else padding
    return [nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False), nn.BatchNorm2d(c_out)]


class SequenceDropout(nn.Module):
    """Dropout with one mask per sequence: the same units are dropped at every time step.

    On ``[T, B, ...]`` in training mode, each ``(sample, unit)`` is kept with probability
    ``1 − p`` and scaled by ``1/(1 − p)``, with the mask drawn once (shape ``[1, B, ...]``) and
    shared over T, as SpikingJelly's ``layer.Dropout`` used by Fang et al. (ICCV 2021): a unit
    dropped at one step is silent for the whole sequence, so dropout cannot be undone by the
    neighbouring steps. Identity in eval mode. Random numbers come from torch's global
    generator (re-seeded by the trainer every epoch).

    Raises:
        UsageError: ``p`` outside [0, 1).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = validate.in_range("dropout", p, 0.0, 1.0, high_open=True)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty_like(x[:1]).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
