"""Building blocks that run stateless layers over the time axis of ``[T, B, ...]`` tensors."""

from __future__ import annotations

from torch import Tensor, nn


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
