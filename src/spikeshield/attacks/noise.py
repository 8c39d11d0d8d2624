"""Random input corruptions with an intensity parameter, for corruption-robustness sweeps.

Every corruption maps images in [0, 1] to images in [0, 1] and is reproducible from a
``torch.Generator``; intensity 0 returns the input unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.registry import Registry

Corruption = Callable[[Tensor, float, torch.Generator | None], Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def _check_level(name: str, level: float) -> None:
    if not validate.is_finite_number(level) or level < 0:
        raise UsageError(f"{name} corruption level must be a number >= 0, got {level!r}")


@CORRUPTIONS.register("gaussian", help="x + σ·N(0, 1), clipped to [0, 1]; level = σ")
def gaussian_noise(x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    _check_level("gaussian", level)
    if level == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return (x + level * noise).clamp(0.0, 1.0)


@CORRUPTIONS.register("uniform", help="x + U(−a, a), clipped to [0, 1]; level = a")
def uniform_noise(x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    _check_level("uniform", level)
    if level == 0:
        return x
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return (x + level * (2.0 * noise - 1.0)).clamp(0.0, 1.0)


@CORRUPTIONS.register("salt-pepper", help="a fraction `level` of pixels set to 0 or 1 (half each)")
def salt_and_pepper(x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    _check_level("salt-pepper", level)
    validate.probability("salt-pepper density", level)
    if level == 0:
        return x
    u = torch.rand(x.shape, generator=generator, device="cpu").to(x.device)
    out = x.clone()
    out[u < level / 2] = 0.0
    out[(u >= level / 2) & (u < level)] = 1.0
    return out


def corrupt(name: str, x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    """Apply the registered corruption ``name`` at ``level``."""
    return CORRUPTIONS.get(name)(x, level, generator)
