"""spikeshield: robust spiking neural networks, and honest measurements of their robustness."""

from spikeshield.runtime import prepare_process as _prepare_process

__version__ = "0.1.0"

# Before torch loads (where spikeshield is imported first): idle OpenMP threads sleep rather
# than spin, so runs sharing CPUs do not slow each other down. See spikeshield.runtime.
_prepare_process()
