"""spikeshield: robust spiking neural networks, and honest measurements of their robustness."""

__version__ = "0.1.0"
