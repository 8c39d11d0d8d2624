"""VGG-style networks (VGG-5 and the VGG-11 variant of RSSNN, Ding et al. ICML 2024)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.models.base import Backbone, register_model
from spikeshield.models.layers import MaxPool2d, SpikingSequential, TimeDistributed, conv_bn
from spikeshield.neurons import NeuronFactory

POOL = "P"


def vgg(
    input_shape: tuple[int, int, int],
    make_neuron: NeuronFactory,
    config: Sequence[int | str],
    fc: Sequence[int],
    pool: str = "avg",
    dropout: float = 0.0,
) -> Backbone:
    """Conv-BN-neuron layers with pooling at each ``"P"`` of ``config``, then hidden FC layers."""
    if pool not in ("avg", "max"):
        raise UsageError(f"pool must be 'avg' or 'max', got {pool!r}")
    validate.in_range("dropout", dropout, 0.0, 1.0, high_open=True)
    make_pool = nn.AvgPool2d if pool == "avg" else MaxPool2d
    widths = [c for c in config if c != POOL]
    stem = nn.Sequential(*conv_bn(input_shape[0], int(widths[0])))
    body: list[nn.Module] = [make_neuron()]
    c, h, w = int(widths[0]), input_shape[1], input_shape[2]
    for item in config[1:]:
        if item == POOL:
            if min(h, w) < 2:
                continue  # small inputs (8×8 digits) run out of resolution: skip the pool
            body.append(TimeDistributed(make_pool(2)))
            h, w = h // 2, w // 2
        else:
            body += [TimeDistributed(*conv_bn(c, int(item))), make_neuron()]
            c = int(item)
    body.append(TimeDistributed(nn.Flatten()))
    features = c * h * w
    for width in fc:
        validate.positive_int("fc_hidden", width)
        layers: list[nn.Module] = [nn.Linear(features, width)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        body += [TimeDistributed(*layers), make_neuron()]
        features = width
    return Backbone(stem, SpikingSequential(*body))


@register_model("vgg5")
def vgg5(
    input_shape: tuple[int, int, int],
    make_neuron: NeuronFactory,
    pool: str = "avg",
    fc_hidden: int = 1024,
    dropout: float = 0.0,
    width: int = 64,
) -> Backbone:
    """VGG-5: conv64-P-conv128-conv128-P, FC ``fc_hidden``, readout.

    ``width`` is the first conv's channel count (64 in RSSNN); every conv scales with it."""
    return vgg(
        input_shape, make_neuron, _scaled((64, POOL, 128, 128, POOL), width), (fc_hidden,), pool, dropout
    )


def _scaled(config: Sequence[int | str], width: int) -> tuple[int | str, ...]:
    """``config`` with every conv width scaled by ``width / 64`` (at least 1 channel)."""
    validate.positive_int("width", width)
    return tuple(c if c == POOL else int(c) * width // 64 or 1 for c in config)


@register_model("vgg11")
def vgg11(
    input_shape: tuple[int, int, int],
    make_neuron: NeuronFactory,
    pool: str = "avg",
    fc_hidden: int = 4096,
    dropout: float = 0.0,
    width: int = 64,
) -> Backbone:
    """VGG-11 as in RSSNN: conv64-P-conv128-P-conv256×2-P-conv512×4 with average pooling, then
    FC (512·4·4 = 8192 on CIFAR) → 4096 → 4096 → readout.

    ``width`` is the first conv's channel count (64 in the paper); every conv scales with it, so
    ``width=16, fc_hidden=256`` is the same 11-layer topology at 1/16 of the convolution cost."""
    config = _scaled((64, POOL, 128, POOL, 256, 256, POOL, 512, 512, 512, 512), width)
    return vgg(input_shape, make_neuron, config, (fc_hidden, fc_hidden), pool, dropout)
