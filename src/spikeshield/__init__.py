"""spikeshield: robust spiking neural networks, and honest measurements of their robustness.

``spikeshield.load_run(DIR)`` loads a trained run folder as ``(model, config, test_set)``
(:func:`spikeshield.runs.load_run`); the subpackages hold neurons, models, datasets, training,
attacks, experiments and analysis.
"""

from typing import Any

from spikeshield.runtime import prepare_process as _prepare_process

__version__ = "0.1.0"
__all__ = ["__version__", "load_run"]

# Before torch loads (where spikeshield is imported first): idle OpenMP threads sleep rather
# than spin, so runs sharing CPUs do not slow each other down. See spikeshield.runtime.
_prepare_process()


def __getattr__(name: str) -> Any:
    # imported on first use, so that ``import spikeshield`` stays light (no torch import)
    if name == "load_run":
        from spikeshield.runs import load_run

        return load_run
    raise AttributeError(f"module 'spikeshield' has no attribute {name!r}")
