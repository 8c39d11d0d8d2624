"""Batched data augmentation and normalisation on tensors, on whatever device the batch is on.

No torchvision and no per-image Python loop: each transform draws its random parameters for
the whole batch from a CPU ``torch.Generator`` (so a seeded run is reproducible, resumes
exactly from a checkpoint, and draws the same numbers on CPU and GPU), moves those few numbers
to the batch's device and applies one vectorised operation there. Works on images
``[B, C, H, W]`` and on event frames ``[B, T, C, H, W]`` (every frame of a sample gets the same
crop, flip and cutout).

Specs (``TrainConfig.augment``, ``spikeshield train --augment``):

- ``crop:P`` — random crop with padding: pad every side with P zeros (black), take a random
  H×W window (the usual CIFAR recipe is ``crop:4``; He et al. 2016).
- ``flip`` or ``flip:P`` — mirror left-right with probability P (default 0.5).
- ``cutout:S`` — Cutout (DeVries & Taylor, "Improved Regularization of Convolutional Neural
  Networks with Cutout", 2017): an S×S square centred on a uniformly random pixel (clipped at
  the border) is set to the dataset mean, which is what the paper's zero patch on normalised
  images amounts to here, where normalisation happens inside the model (``16`` for CIFAR-10).

They are applied in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from spikeshield import validate
from spikeshield.errors import UsageError


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel (dimension -3) of a batch on any device.

    The trainer does not need it: models built for a static dataset normalise inside
    (``build_model(normalize=...)``), so corruptions and attacks act on [0, 1] pixels.
    """
    c = x.shape[-3]
    if len(mean) != c or len(std) != c:
        raise UsageError(f"normalize needs {c} means and stds, got {len(mean)} and {len(std)}")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(c, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(c, 1, 1)
    return (x - m) / s


def _flat(x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """View ``[B, ..., H, W]`` as ``[B, K, H, W]`` (K = every middle dimension together)."""
    if x.dim() < 3:
        raise UsageError(f"augmentation needs batches [B, C, H, W] or [B, T, C, H, W], got {list(x.shape)}")
    return x.reshape(x.shape[0], -1, x.shape[-2], x.shape[-1]), tuple(x.shape)


class Transform:
    """One batched random transform."""

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class RandomCrop(Transform):
    padding: int

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        flat, shape = _flat(x)
        b, k, h, w = flat.shape
        p = self.padding
        offsets = torch.randint(0, 2 * p + 1, (2, b), generator=generator).to(x.device, non_blocking=True)
        padded = F.pad(flat, (p, p, p, p))
        rows = (offsets[0].view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
        cols = (offsets[1].view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
        out = padded.gather(2, rows.expand(b, k, h, w + 2 * p)).gather(3, cols.expand(b, k, h, w))
        return out.reshape(shape)


@dataclass(frozen=True)
class HorizontalFlip(Transform):
    probability: float = 0.5

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        flip = torch.rand(x.shape[0], generator=generator) < self.probability
        mask = flip.to(x.device, non_blocking=True).view(-1, *([1] * (x.dim() - 1)))
        return torch.where(mask, x.flip(-1), x)


@dataclass(frozen=True)
class Cutout(Transform):
    size: int
    fill: tuple[float, ...] | None = None
    """Per-channel fill value (the dataset mean); 0 when None."""

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        centre = torch.stack(
            [torch.randint(0, h, (b,), generator=generator), torch.randint(0, w, (b,), generator=generator)]
        ).to(x.device, non_blocking=True)
        top = centre[0] - self.size // 2
        left = centre[1] - self.size // 2
        ys = torch.arange(h, device=x.device).view(1, h)
        xs = torch.arange(w, device=x.device).view(1, w)
        inside_y = (ys >= top.view(b, 1)) & (ys < top.view(b, 1) + self.size)
        inside_x = (xs >= left.view(b, 1)) & (xs < left.view(b, 1) + self.size)
        hole = (inside_y.view(b, h, 1) & inside_x.view(b, 1, w)).view(b, *([1] * (x.dim() - 3)), h, w)
        if self.fill is None:
            return x.masked_fill(hole, 0.0)
        c = x.shape[-3]
        if len(self.fill) != c:
            raise UsageError(f"cutout fill has {len(self.fill)} values for {c} channels")
        value = torch.tensor(self.fill, dtype=x.dtype, device=x.device).view(c, 1, 1)
        return torch.where(hole, value, x)


class Augmentation:
    """A sequence of transforms applied to every training batch: ``x = augment(x, generator)``."""

    def __init__(self, transforms: Sequence[Transform], specs: Sequence[str] = ()) -> None:
        self.transforms = list(transforms)
        self.specs = list(specs)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for transform in self.transforms:
            x = transform(x, generator)
        return x

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __repr__(self) -> str:
        return f"Augmentation({', '.join(self.specs)})"


AUGMENTATIONS = ("crop:PADDING", "flip[:PROBABILITY]", "cutout:SIZE")


def _number(spec: str, text: str, kind: type) -> float:
    try:
        return kind(text)
    except ValueError:
        raise UsageError(
            f"augmentation {spec!r}: {text!r} is not a{'n integer' if kind is int else ' number'}"
        ) from None


def parse_augmentation(spec: str, fill: Sequence[float] | None = None) -> Transform:
    """One transform from a spec such as ``crop:4``, ``flip``, ``flip:0.3`` or ``cutout:16``."""
    if not isinstance(spec, str):
        raise UsageError(f"augmentation specs must be strings, got {spec!r}")
    name, _, arg = spec.strip().lower().partition(":")
    if name == "crop":
        padding = int(_number(spec, arg, int)) if arg else 4
        validate.at_least(f"augmentation {spec!r}: the crop padding", padding, 1)
        return RandomCrop(padding)
    if name == "flip":
        probability = float(_number(spec, arg, float)) if arg else 0.5
        what = f"augmentation {spec!r}: the flip probability"
        validate.in_range(what, probability, 0.0, 1.0, low_open=True)
        return HorizontalFlip(probability)
    if name == "cutout":
        if not arg:
            raise UsageError(f"augmentation {spec!r}: give the square's side, e.g. cutout:16")
        size = int(_number(spec, arg, int))
        validate.at_least(f"augmentation {spec!r}: the cutout size", size, 1)
        return Cutout(size, tuple(float(v) for v in fill) if fill is not None else None)
    raise UsageError(f"unknown augmentation {spec!r}; choose from {', '.join(AUGMENTATIONS)}")


def build_augmentation(specs: Sequence[str], fill: Sequence[float] | None = None) -> Augmentation:
    """An :class:`Augmentation` from specs; ``fill`` is the per-channel value Cutout writes."""
    return Augmentation([parse_augmentation(s, fill) for s in specs], specs)
