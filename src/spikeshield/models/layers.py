"""Building blocks that run stateless layers over the time axis of ``[T, B, ...]`` tensors."""

from __future__ import annotations

from torch import Tensor, nn

from spikeshield.kernels.pool import max_pool2d


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


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d``; the common 2×2 / stride-2 case runs spikeshield's CPU kernel.

    Same values and same gradients as PyTorch, ties included (:mod:`spikeshield.kernels.pool`),
    about twice as fast on the binary spike maps it pools in a spiking CNN; no state, so
    checkpoints are those of ``nn.MaxPool2d``. Other configurations call PyTorch.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if self._two_by_two():
            return max_pool2d(x)
        return super().forward(x)

    def _two_by_two(self) -> bool:
        def pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
            return (v, v) if isinstance(v, int) else tuple(v)

        return (
            pair(self.kernel_size) == (2, 2)
            and pair(self.stride) == (2, 2)
            and pair(self.padding) == (0, 0)
            and pair(self.dilation) == (1, 1)
            and not self.ceil_mode
            and not self.return_indices
        )
