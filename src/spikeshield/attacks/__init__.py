"""Perturbations: random corruptions (noise sweeps) and adversarial attacks."""

from spikeshield.attacks.noise import CORRUPTIONS, corrupt

__all__ = ["CORRUPTIONS", "corrupt"]
