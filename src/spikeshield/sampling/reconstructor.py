"""Reconstructors: the full input from its masked version and the mask.

[recon] The seed abstract says the sampled image "facilitates image reconstruction"; the
network that reconstructs is not described. Ours, options both:

- ``cnn``: ``[x ⊙ M, M]`` → (conv3×3-ReLU) × (layers − 1) → conv3×3 → ŷ;
- ``snn``: the same convolutions, each hidden one followed by a spiking neuron run over ``T``
  steps of the same input (direct encoding); the last convolution's output averaged over ``T``
  is ŷ (a non-spiking readout).

Then the kept entries are copied from the input, the rest predicted:
``x̂ = M ⊙ x + (1 − M) ⊙ act(ŷ)`` with ``act`` = sigmoid for images in [0, 1] and softplus for
event counts. Event samples ``[B, T, 2, H, W]`` are reconstructed as a ``2T``-channel image from
``[x ⊙ M, M]`` with the mask ``[B, T, 1, H, W]`` given as ``T`` channels.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.models.layers import TimeDistributed
from spikeshield.neurons import build_neuron

KINDS = ("cnn", "snn")


class Reconstructor(nn.Module):
    """``forward(x, mask) → x̂`` of ``x``'s shape; see the module docstring.

    Args:
        channels: channels of one image (2 for event frames).
        frames: ``None`` for images, else T of ``[B, T, 2, H, W]`` event samples.
        kind: ``cnn`` or ``snn``.
        hidden, layers: width and number of convolutions (at least 2).
        time_steps, neuron, neuron_options: the ``snn`` kind's steps and neuron.
    """

    def __init__(
        self,
        channels: int,
        *,
        frames: int | None = None,
        kind: str = "cnn",
        hidden: int = 32,
        layers: int = 4,
        time_steps: int = 4,
        neuron: str = "lif",
        neuron_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise UsageError(f"reconstructor must be one of {', '.join(KINDS)}, got {kind!r}")
        validate.int_at_least("layers", layers, 2)
        validate.positive_int("hidden", hidden)
        self.kind, self.frames = kind, frames
        self.time_steps = validate.positive_int("time_steps", time_steps)
        c_out = channels * (frames or 1)
        c_in = c_out + (frames or 1)
        widths = [c_in] + [hidden] * (layers - 1)
        blocks: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            conv = (
                TimeDistributed(nn.Conv2d(a, b, 3, padding=1))
                if kind == "snn"
                else nn.Conv2d(a, b, 3, padding=1)
            )
            act = build_neuron(neuron, **(neuron_options or {})) if kind == "snn" else nn.ReLU()
            blocks += [conv, act]
        last = nn.Conv2d(hidden, c_out, 3, padding=1)
        blocks.append(TimeDistributed(last) if kind == "snn" else last)
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        shape = x.shape
        if self.frames is not None:
            x, mask = x.flatten(1, 2), mask.flatten(1, 2)
        keep = mask.repeat_interleave(x.shape[1] // mask.shape[1], 1)
        inp = torch.cat([x * keep, mask], 1)
        if self.kind == "snn":
            y = self.net(inp.unsqueeze(0).expand(self.time_steps, *inp.shape)).mean(0)
        else:
            y = self.net(inp)
        pred = F.softplus(y) if self.frames is not None else torch.sigmoid(y)
        return (keep * x + (1 - keep) * pred).reshape(shape)
