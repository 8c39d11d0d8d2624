"""Random input corruptions with an intensity parameter, for corruption-robustness sweeps.

Every corruption maps images in [0, 1] to images in [0, 1] and returns the input unchanged at
intensity 0. Its random draws come from one stream per sample (``rng``: a
:class:`~spikeshield.streams.SampleStreams`, or a ``torch.Generator`` / ``None`` from which one
seed is drawn), so a sample's corruption never depends on the other samples of its batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.registry import Registry
from spikeshield.streams import SampleStreams

RandomSource = SampleStreams | torch.Generator | None
Corruption = Callable[..., Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def _check_level(name: str, level: float) -> None:
    if not validate.is_finite_number(level) or level < 0:
        raise UsageError(f"{name} corruption level must be a number >= 0, got {level!r}")


@CORRUPTIONS.register("gaussian", help="x + σ·N(0, 1), clipped to [0, 1]; level = σ")
def gaussian_noise(x: Tensor, level: float, rng: RandomSource = None) -> Tensor:
    _check_level("gaussian", level)
    if level == 0:
        return x
    noise = SampleStreams.of(rng, len(x)).normal(x.shape[1:], dtype=x.dtype, device=x.device)
    return (x + level * noise).clamp(0.0, 1.0)


@CORRUPTIONS.register("uniform", help="x + U(−a, a), clipped to [0, 1]; level = a")
def uniform_noise(x: Tensor, level: float, rng: RandomSource = None) -> Tensor:
    _check_level("uniform", level)
    if level == 0:
        return x
    noise = SampleStreams.of(rng, len(x)).uniform(x.shape[1:], dtype=x.dtype, device=x.device)
    return (x + level * (2.0 * noise - 1.0)).clamp(0.0, 1.0)


@CORRUPTIONS.register("salt-pepper", help="a fraction `level` of pixels set to 0 or 1 (half each)")
def salt_and_pepper(x: Tensor, level: float, rng: RandomSource = None) -> Tensor:
    _check_level("salt-pepper", level)
    validate.probability("salt-pepper density", level)
    if level == 0:
        return x
    u = SampleStreams.of(rng, len(x)).uniform(x.shape[1:], device=x.device)
    out = x.clone()
    out[u < level / 2] = 0.0
    out[(u >= level / 2) & (u < level)] = 1.0
    return out


def corrupt(name: str, x: Tensor, level: float, rng: RandomSource = None, **options: Any) -> Tensor:
    """Apply the registered corruption ``name`` at ``level`` to the batch ``x``.

    ``options`` go to corruptions that take them (the event corruptions' ``values``) and are
    ignored by the others, so one call serves every corruption of a sweep.
    """
    fn = CORRUPTIONS.get(name)
    known = {o for n in CORRUPTIONS for o in getattr(CORRUPTIONS.get(n), "options", ())}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(
            f"no corruption takes option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    accepted = getattr(fn, "options", ())
    return fn(x, level, rng, **{k: v for k, v in options.items() if k in accepted})
