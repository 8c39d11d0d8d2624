"""Building blocks that run stateless layers over the time axis of ``[T, B, ...]`` tensors."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module

from spikeshield import validate
from spikeshield.kernels import fused_forward
from spikeshield.kernels.pool import max_pool2d
from spikeshield.neurons import SpikingNeuron


class TimeDistributed(nn.Sequential):
    """Apply stateless layers (conv, BN, linear, pooling) to every time step at once.

    ``[T, B, ...]`` is flattened to ``[T·B, ...]`` for the wrapped layers, then unflattened, so
    batch norm sees all T·B samples (the usual choice for directly trained SNNs).
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.run_from(x, 0)

    def run_from(self, x: Tensor, start: int) -> Tensor:
        """The wrapped layers from index ``start`` on (``SpikingSequential`` has run the ones before)."""
        t, b = x.shape[0], x.shape[1]
        y = x.reshape(t * b, *x.shape[2:])
        for layer in list(self)[start:]:
            y = layer(y)
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


def _has_hooks(*modules: nn.Module) -> bool:
    """Any forward or backward hook on these modules, a global one, or a ``forward`` replaced on
    the instance (the BPTR attacker gradient replaces the neuron's): fusing would skip them."""
    if any("forward" in vars(m) for m in modules):
        return True
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    if any(getattr(m, name, None) for m in modules for name in names):
        return True
    return any(getattr(_module, f"_global{name}", None) for name in names)


class SpikingSequential(nn.Sequential):
    """``nn.Sequential`` that fuses each neuron with a 2×2 max-pool right after it.

    Where a :class:`~spikeshield.neurons.SpikingNeuron` is followed by a :class:`TimeDistributed`
    that starts with a 2×2 :class:`MaxPool2d` (the spiking CNN's conv-BN-neuron-pool block), the
    CPU kernels compute the neuron's spikes and pool them in one pass
    (``spikeshield.kernels.fused_forward(..., pool=True)``): the full-size spike map and its
    gradient are never written. The result, gradients included, is what running the two modules
    gives (same tie rule as PyTorch's max-pool; tests/kernels/test_neuron_pool.py). Anywhere
    the fused kernel does not apply (GPU, oscillating neurons, ``reference_only()``...)
    or a hook is registered on the neuron or the pool (a hook must see the full spike map), the
    modules run one after the other as in ``nn.Sequential``. Same modules, same state dict.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        layers = list(self)
        i = 0
        while i < len(layers):
            pooled = self._neuron_then_pool(layers[i], layers[i + 1] if i + 1 < len(layers) else None, x)
            if pooled is not None:
                x, i = pooled, i + 2
            else:
                x, i = layers[i](x), i + 1
        return x

    @staticmethod
    def _neuron_then_pool(neuron: nn.Module, after: nn.Module | None, x: Tensor) -> Tensor | None:
        if not isinstance(neuron, SpikingNeuron) or not isinstance(after, TimeDistributed) or len(after) == 0:
            return None
        pool = after[0]
        if not isinstance(pool, MaxPool2d) or not pool._two_by_two() or _has_hooks(neuron, after, pool):
            return None
        spikes = fused_forward(neuron, x, pool=True)
        return None if spikes is None else after.run_from(spikes, 1)
