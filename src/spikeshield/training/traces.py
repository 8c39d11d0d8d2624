"""Learned neuron constants (KLIF's k, PLIF's τ) of a model, recorded after every epoch.

Each epoch's record in ``metrics.json`` (``history``) gets ``neuron_parameters``:
``{layer name: {constant: value}}``, e.g. ``{"body.0": {"k": 1.21}, "head_neuron": {"k": 0.87}}``,
for the neurons whose :meth:`~spikeshield.neurons.SpikingNeuron.learned_values` is not empty.
:mod:`spikeshield.analysis.traces` plots them over the epochs (``k_trajectory.png``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from spikeshield.neurons import SpikingNeuron

KEY = "neuron_parameters"


def learned_values(model: nn.Module) -> dict[str, Any]:
    """``{"neuron_parameters": {layer: {name: value}}}`` for the neurons of ``model`` that learn
    scalar constants, in module order; ``{}`` when none does."""
    found = {
        name: values
        for name, module in model.named_modules()
        if isinstance(module, SpikingNeuron) and (values := module.learned_values())
    }
    return {KEY: found} if found else {}
