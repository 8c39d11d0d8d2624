"""The neuron zoo: one core (:class:`SpikingNeuron`) with pluggable charge, pre-fire, fire and
reset parts; every neuron is registered by name.

>>> import torch
>>> from spikeshield.neurons import build_neuron
>>> lif = build_neuron("lif", tau=2.0, surrogate="atan:2")
>>> spikes = lif(torch.rand(4, 8, 16))   # [T, B, N] -> spikes of the same shape
"""

from spikeshield.neurons import dlif, if_neuron, klif, lif, linear_lif, noisy, oscillating, relu  # noqa: F401
from spikeshield.neurons.base import NeuronOutput, SpikingNeuron, State
from spikeshield.neurons.dlif import DLIFNode
from spikeshield.neurons.if_neuron import IFNode
from spikeshield.neurons.klif import KLIFNode
from spikeshield.neurons.lif import LIFNode, PLIFNode
from spikeshield.neurons.linear_lif import LinearLIFNode
from spikeshield.neurons.noisy import NoisyIFNode
from spikeshield.neurons.oscillating import OscillatingLIFNode, true_gradient
from spikeshield.neurons.registry import NEURONS, NeuronFactory, build_neuron, neuron_factory
from spikeshield.neurons.relu import ReLUUnit
from spikeshield.neurons.surrogates import SURROGATES, Surrogate, build_surrogate, smooth_spikes

__all__ = [
    "NEURONS",
    "SURROGATES",
    "DLIFNode",
    "IFNode",
    "KLIFNode",
    "LIFNode",
    "LinearLIFNode",
    "NeuronFactory",
    "NeuronOutput",
    "NoisyIFNode",
    "OscillatingLIFNode",
    "PLIFNode",
    "ReLUUnit",
    "SpikingNeuron",
    "State",
    "Surrogate",
    "build_neuron",
    "build_surrogate",
    "neuron_factory",
    "smooth_spikes",
    "true_gradient",
]
