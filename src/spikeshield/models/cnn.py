"""Small convolutional network (two conv blocks), the usual MNIST SNN."""

from __future__ import annotations

from torch import nn

from spikeshield import validate
from spikeshield.models.base import Backbone, register_model
from spikeshield.models.layers import MaxPool2d, SpikingSequential, TimeDistributed, conv_bn
from spikeshield.neurons import NeuronFactory


@register_model("cnn")
def cnn(
    input_shape: tuple[int, int, int],
    make_neuron: NeuronFactory,
    channels: int = 32,
    fc_hidden: int = 0,
) -> Backbone:
    """conv(C)-BN-neuron-maxpool → conv(C)-BN-neuron-maxpool → flatten (→ fc_hidden-neuron)
    → readout Linear. With C = 32 and no hidden FC this is the conv32-conv32-fc net."""
    validate.positive_int("channels", channels)
    validate.non_negative_int("fc_hidden", fc_hidden)  # 0: no hidden FC layer
    body: list[nn.Module] = [
        make_neuron(),
        TimeDistributed(MaxPool2d(2), *conv_bn(channels, channels)),
        make_neuron(),
        TimeDistributed(MaxPool2d(2), nn.Flatten()),
    ]
    if fc_hidden:
        h, w = input_shape[1] // 4, input_shape[2] // 4
        body += [TimeDistributed(nn.Linear(channels * h * w, fc_hidden)), make_neuron()]
    return Backbone(nn.Sequential(*conv_bn(input_shape[0], channels)), SpikingSequential(*body))
