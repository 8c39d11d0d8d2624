"""The default training mode."""

from __future__ import annotations

from spikeshield.training.modes import TrainingMode, register_training_mode


@register_training_mode("bptt")
class BPTT(TrainingMode):
    """Backpropagation through time with each neuron's surrogate gradient (no defence)."""
