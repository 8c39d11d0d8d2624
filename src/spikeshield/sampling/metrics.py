"""Image quality of a reconstruction: PSNR and SSIM, per image.

- PSNR = 10 · log10(R² / MSE) dB with the data range R (1 for images in [0, 1]); ``inf`` when
  the reconstruction is exact.
- SSIM (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004): an 11×11 Gaussian window, σ = 1.5,
  K = (0.01, 0.03), averaged over the image and its channels (images smaller than 11 pixels,
  such as the 8×8 digits, take the largest odd window that fits); computed by the
  ``pytorch-msssim`` package (``pip install spikeshield[sampling]``), not by hand.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikeshield.errors import SpikeshieldError, UsageError


def _check(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape:
        raise UsageError(f"reconstruction {list(x.shape)} and original {list(y.shape)} differ in shape")


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """``[B]`` PSNR (dB) of reconstructions ``x`` against originals ``y`` (``[B, ...]``)."""
    _check(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """``[B]`` SSIM of ``x`` against ``y``, both ``[B, C, H, W]`` (pytorch-msssim's ``ssim``)."""
    _check(x, y)
    try:
        from pytorch_msssim import ssim as _ssim
    except ImportError:
        raise SpikeshieldError(
            "SSIM needs the pytorch-msssim package: pip install 'spikeshield[sampling]'"
        ) from None
    side = min(x.shape[-2:])
    window = 11 if side >= 11 else side - (1 - side % 2)
    return _ssim(x.float(), y.float(), data_range=data_range, size_average=False, win_size=window)
