"""Spiking residual networks: ResNet-19 (Zheng et al. AAAI 2021) and WRN-16-4 (RSSNN)."""

from __future__ import annotations

from torch import Tensor, nn

from spikeshield import validate
from spikeshield.models.base import Backbone, register_model
from spikeshield.models.layers import TimeDistributed, conv_bn
from spikeshield.neurons import NeuronFactory


class SpikingBasicBlock(nn.Module):
    """``neuron(BN(conv(neuron(BN(conv(x))))) + shortcut(x))`` on ``[T, B, C, H, W]``."""

    def __init__(self, c_in: int, c_out: int, stride: int, make_neuron: NeuronFactory) -> None:
        super().__init__()
        self.conv1 = TimeDistributed(*conv_bn(c_in, c_out, stride=stride))
        self.neuron1 = make_neuron()
        self.conv2 = TimeDistributed(*conv_bn(c_out, c_out))
        self.shortcut = (
            TimeDistributed(*conv_bn(c_in, c_out, kernel=1, stride=stride, padding=0))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )
        self.neuron2 = make_neuron()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.neuron1(self.conv1(x)))
        return self.neuron2(out + self.shortcut(x))


def residual_stages(
    c_in: int, stages: list[tuple[int, int, int]], make_neuron: NeuronFactory
) -> tuple[list[nn.Module], int]:
    """Blocks for ``(width, blocks, first_stride)`` stages; returns them and the final width."""
    blocks: list[nn.Module] = []
    for width, count, stride in stages:
        for i in range(count):
            blocks.append(SpikingBasicBlock(c_in, width, stride if i == 0 else 1, make_neuron))
            c_in = width
    return blocks, c_in


@register_model("resnet19")
def resnet19(input_shape: tuple[int, int, int], make_neuron: NeuronFactory, width: int = 128) -> Backbone:
    """ResNet-19: conv(128) stem, 3×block(128), 3×block(256, s2), 2×block(512, s2), global
    average pool, FC 256 → readout (widths scale with ``width``)."""
    validate.positive_int("width", width)
    w = int(width)
    blocks, c = residual_stages(w, [(w, 3, 1), (2 * w, 3, 2), (4 * w, 2, 2)], make_neuron)
    body = [
        make_neuron(),
        *blocks,
        TimeDistributed(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 2 * w)),
        make_neuron(),
    ]
    return Backbone(nn.Sequential(*conv_bn(input_shape[0], w)), nn.Sequential(*body))


@register_model("wrn16")
def wrn16(input_shape: tuple[int, int, int], make_neuron: NeuronFactory, width: int = 4) -> Backbone:
    """Wide ResNet 16-k (k = ``width``, default 4): conv16 stem, 2 blocks each of 16k, 32k
    (s2), 64k (s2) channels, global average pool → readout."""
    validate.positive_int("width", width)
    k = int(width)
    blocks, _c = residual_stages(16, [(16 * k, 2, 1), (32 * k, 2, 2), (64 * k, 2, 2)], make_neuron)
    body = [make_neuron(), *blocks, TimeDistributed(nn.AdaptiveAvgPool2d(1), nn.Flatten())]
    return Backbone(nn.Sequential(*conv_bn(input_shape[0], 16)), nn.Sequential(*body))
