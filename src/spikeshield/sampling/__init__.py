"""Spiking sampling network (Jiang & Zhang) [recon]: a spiking sampler that decides per input
which pixels to keep, a reconstructor, baselines at equal measured rate, PSNR/SSIM, and DVS
event compression written as real N-MNIST files.

>>> import torch
>>> from spikeshield.sampling import SpikingSampler
>>> sampler = SpikingSampler(1, time_steps=4)
>>> out = sampler(torch.rand(2, 1, 8, 8), rate=0.25)
>>> out.mask.sum().item()        # top-k rule: exactly 16 of 64 pixels per image
32.0

``spikeshield sample train|evaluate|compress|experiment`` drives it from the command line.
"""

from spikeshield.sampling.compress import (
    random_keep,
    read_back,
    read_recordings,
    sampler_keep,
    write_compressed,
    write_nmnist_bin,
)
from spikeshield.sampling.evaluate import evaluate_models, measured_rate
from spikeshield.sampling.masks import (
    MASK_KINDS,
    check_rate,
    event_budget_mask,
    grid_mask,
    keep_counts,
    magnitude_mask,
    random_mask,
    topk_mask,
)
from spikeshield.sampling.metrics import psnr, ssim
from spikeshield.sampling.model import SampleConfig, SamplingModel, load_sampling_model
from spikeshield.sampling.reconstructor import Reconstructor
from spikeshield.sampling.sampler import SamplerOutput, SpikingSampler, rate_penalty
from spikeshield.sampling.train import train_sampling

__all__ = [
    "MASK_KINDS",
    "Reconstructor",
    "SampleConfig",
    "SamplerOutput",
    "SamplingModel",
    "SpikingSampler",
    "check_rate",
    "evaluate_models",
    "event_budget_mask",
    "grid_mask",
    "keep_counts",
    "load_sampling_model",
    "magnitude_mask",
    "measured_rate",
    "psnr",
    "random_keep",
    "random_mask",
    "rate_penalty",
    "read_back",
    "read_recordings",
    "sampler_keep",
    "ssim",
    "topk_mask",
    "train_sampling",
    "write_compressed",
    "write_nmnist_bin",
]
