"""The benchmark networks of the PLIF paper, with any neuron.

Fang, Yu, Chen, Masquelier, Huang & Tian, "Incorporating Learnable Membrane Time Constant to
Enhance Learning of Spiking Neural Networks", ICCV 2021 — the networks KLIF (Jiang & Zhang,
Neural Computation 2024) and later neuron papers compare on. Written from the paper's
description and its released code's settings; the settings that matter:

* blocks of conv3×3 (no bias) → BN → neuron, each block ending in a 2×2 max pool of spikes
  (on CPU the block's last neuron and the pool run as one fused kernel,
  :class:`~spikeshield.models.layers.SpikingSequential`, as in ``cnn`` and ``vgg``);
* the first conv + BN sees the image itself (under direct encoding it is computed once and its
  output repeated over T: the encoding layer);
* then flatten → dropout → FC (no bias) → neuron → dropout (not in the CIFAR-10 net), and the
  readout FC with 10 voting neurons per class (``readout="voting"`` of
  :class:`~spikeshield.models.SpikingModel`, trained with MSE on the firing rate);
* the dropout mask is drawn once per sequence and shared by every time step
  (:class:`~spikeshield.models.layers.SequenceDropout`), p = 0.5.

Layouts (``layout``; ``auto`` picks by the input's channels: 1 → ``mnist``, 3 → ``cifar10``,
2 (ON/OFF event frames) → ``dvs``):

======== ======== ================ ====== =============================== =========
layout   channels convs per block  blocks hidden FC                       dropouts
======== ======== ================ ====== =============================== =========
mnist    128      1                2      16·channels (2048)              2
cifar10  256      3                2      8·channels (2048)               1
dvs      128      1                auto   channels·h·w/4 after pooling    2
======== ======== ================ ====== =============================== =========

``mnist`` is the paper's MNIST and Fashion-MNIST net, ``cifar10`` its CIFAR-10 net and ``dvs``
its N-MNIST (2 blocks on 34×34), CIFAR10-DVS (4 blocks on 128×128) and DVS128 Gesture (5 blocks
on 128×128) net. ``blocks`` for ``dvs`` defaults to pooling until the map is at most 8×8 (2 on
34×34, 4 on 128×128, 3 on 64×64 or 48×48); pass ``blocks=5`` for the Gesture net. Every
option can be given to narrow the net (e.g. ``channels=16`` for a CPU budget); the hidden FC
then scales with it unless ``fc_hidden`` is given. One difference from the paper's code: the
readout FC has a bias (it is :class:`~spikeshield.models.SpikingModel`'s shared head).

Errors (:class:`~spikeshield.errors.UsageError`, one line): an unknown layout or pool, a
non-positive size, a dropout outside [0, 1), or more pooling blocks than the input allows.
"""

from __future__ import annotations

from torch import nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.models.base import Backbone, register_model
from spikeshield.models.layers import MaxPool2d, SequenceDropout, SpikingSequential, TimeDistributed, conv_bn
from spikeshield.neurons import NeuronFactory

LAYOUTS: dict[str, dict[str, int]] = {
    "mnist": {"channels": 128, "convs": 1, "blocks": 2, "dropouts": 2},
    "cifar10": {"channels": 256, "convs": 3, "blocks": 2, "dropouts": 1},
    "dvs": {"channels": 128, "convs": 1, "blocks": 0, "dropouts": 2},  # blocks 0: auto
}
AUTO_LAYOUT = {1: "mnist", 3: "cifar10", 2: "dvs"}
AUTO_MAP_SIZE = 8
"""``dvs`` pools until the feature map is at most this wide (the paper's N-MNIST and CIFAR10-DVS nets)."""


def resolve_layout(layout: str, channels: int) -> str:
    """The layout name for ``layout`` (``auto``: by the input's channel count)."""
    if layout == "auto":
        if channels not in AUTO_LAYOUT:
            raise UsageError(
                f"plifnet: no paper layout for {channels}-channel input; pick layout= one of "
                f"{', '.join(LAYOUTS)}"
            )
        return AUTO_LAYOUT[channels]
    if layout not in LAYOUTS:
        raise UsageError(f"plifnet: layout must be auto or one of {', '.join(LAYOUTS)}, got {layout!r}")
    return layout


def auto_blocks(height: int, width: int) -> int:
    """Pooling blocks until the map is at most :data:`AUTO_MAP_SIZE` wide (at least one)."""
    blocks = 1
    while max(height >> blocks, width >> blocks) > AUTO_MAP_SIZE:
        blocks += 1
    return blocks


def _option(name: str, value: int | None, default: int) -> int:
    return default if value is None else validate.positive_int(name, value)


@register_model("plifnet")
def plifnet(
    input_shape: tuple[int, int, int],
    make_neuron: NeuronFactory,
    layout: str = "auto",
    channels: int | None = None,
    convs: int | None = None,
    blocks: int | None = None,
    fc_hidden: int | None = None,
    dropout: float = 0.5,
    pool: str = "max",
) -> Backbone:
    """The PLIF paper's nets (Fang et al., ICCV 2021): layout auto (by input channels: 1 mnist,
    3 cifar10, 2 dvs) | mnist | cifar10 | dvs, narrowed or widened by channels, convs per block,
    pooling blocks, hidden FC width; dropout shared over time (spikeshield.models.plifnet)."""
    name = resolve_layout(layout, input_shape[0])
    chosen = LAYOUTS[name]
    if pool not in ("max", "avg"):
        raise UsageError(f"plifnet: pool must be 'max' or 'avg', got {pool!r}")
    validate.in_range("dropout", dropout, 0.0, 1.0, high_open=True)
    c = _option("channels", channels, chosen["channels"])
    n_convs = _option("convs", convs, chosen["convs"])
    h, w = input_shape[1], input_shape[2]
    n_blocks = _option("blocks", blocks, chosen["blocks"] or auto_blocks(h, w))
    if min(h, w) >> n_blocks < 1:
        raise UsageError(f"plifnet: {n_blocks} pooling blocks need inputs of at least {2**n_blocks} pixels")
    make_pool = MaxPool2d if pool == "max" else nn.AvgPool2d
    body: list[nn.Module] = [make_neuron()]  # after the stem's conv + BN
    for block in range(n_blocks):
        first = 1 if block == 0 else 0  # block 0's first conv is the stem
        for _ in range(first, n_convs):
            body += [TimeDistributed(*conv_bn(c, c)), make_neuron()]
        body.append(TimeDistributed(make_pool(2)))
        h, w = h // 2, w // 2
    default_fc = {"mnist": 16 * c, "cifar10": 8 * c}.get(name, c * h * w // 4)
    hidden = _option("fc_hidden", fc_hidden, max(1, default_fc))

    def drop() -> list[nn.Module]:
        return [SequenceDropout(dropout)] if dropout else []

    fc = TimeDistributed(nn.Linear(c * h * w, hidden, bias=False))
    body += [TimeDistributed(nn.Flatten()), *drop(), fc, make_neuron()]
    body += drop() if chosen["dropouts"] == 2 else []
    return Backbone(nn.Sequential(*conv_bn(input_shape[0], c)), SpikingSequential(*body))
