"""Spiking model builders that take any registered neuron.

>>> from spikeshield.models import build_model
>>> model = build_model("cnn", neuron="lif", input_shape=(1, 28, 28), time_steps=4)
"""

from spikeshield.models import cnn, mlp, plifnet, resnet, vgg  # noqa: F401  (registers the builders)
from spikeshield.models.base import (
    MODELS,
    READOUTS,
    Backbone,
    SpikingModel,
    build_model,
    model_from_spec,
    register_model,
)
from spikeshield.models.encoders import ENCODERS, Encoder, poisson_encode

__all__ = [
    "ENCODERS",
    "MODELS",
    "READOUTS",
    "Backbone",
    "Encoder",
    "SpikingModel",
    "build_model",
    "model_from_spec",
    "poisson_encode",
    "register_model",
]
