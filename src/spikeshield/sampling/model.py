"""A sampling run's settings (:class:`SampleConfig`) and model (:class:`SamplingModel`): a mask
source (the spiking sampler or a baseline) followed by a reconstructor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.data import DatasetInfo, dataset_info
from spikeshield.errors import UsageError
from spikeshield.io import read_json
from spikeshield.sampling.masks import (
    MASK_KINDS,
    check_rate,
    grid_mask,
    keep_counts,
    magnitude_mask,
    random_mask,
)
from spikeshield.sampling.reconstructor import KINDS, Reconstructor
from spikeshield.sampling.sampler import RULES, SpikingSampler
from spikeshield.streams import SampleStreams
from spikeshield.training.checkpoint import load_model_weights

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.safetensors"
DEFAULT_RATES = (0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass
class SampleConfig:
    """Every setting of one sampling run (``spikeshield sample train`` flags map one to one).

    ``rates``: the target rates; training draws one per batch (the ``penalty`` rule takes
    exactly one). ``mask``: ``spiking`` (the sampler, trained jointly with the reconstructor) or
    a baseline whose reconstructor is trained on its masks: ``random``, ``grid``, ``magnitude``.
    Event datasets (N-MNIST) take ``time_steps`` time bins per sample, split by ``time``.
    """

    dataset: str = "digits"
    mask: str = "spiking"
    rates: list[float] = field(default_factory=lambda: list(DEFAULT_RATES))
    rule: str = "topk"
    time_steps: int = 4
    hidden: int = 16
    neuron: str = "lif"
    neuron_options: dict[str, Any] = field(default_factory=lambda: {"tau": 2.0})
    surrogate: str = "atan:2"
    v_threshold: float = 0.0
    penalty_weight: float = 10.0
    reconstructor: str = "cnn"
    recon_hidden: int = 32
    recon_layers: int = 4
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    """Adam's learning rate (cosine schedule). At 3e-3 the baselines' reconstructors pushed their
    sigmoid output to the background value within a few steps and, saturated, never learned to
    inpaint (MNIST, 125 steps: PSNR of an all-zero guess); 1e-3 does not."""
    seed: int = 0
    limit_train: int | None = None
    limit_test: int | None = None
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"

    def __post_init__(self) -> None:
        self.rates = (
            [float(check_rate(r, "rates")) for r in self.rates] if isinstance(self.rates, list) else []
        )
        if not self.rates:
            raise UsageError("rates must be a non-empty list of sampling rates in (0, 1]")
        choices = {
            "mask": MASK_KINDS,
            "rule": RULES,
            "reconstructor": KINDS,
            "device": ("auto", "cpu", "cuda"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UsageError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.rule == "penalty" and len(self.rates) != 1:
            raise UsageError(f"the penalty rule trains for one rate; got rates {self.rates}")
        for name in ("time_steps", "hidden", "recon_hidden", "epochs", "batch_size"):
            validate.positive_int(name, getattr(self, name))
        validate.int_at_least("recon_layers", self.recon_layers, 2)
        validate.non_negative_int("seed", self.seed)
        validate.positive("lr", self.lr)
        validate.non_negative("penalty_weight", self.penalty_weight)
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) is not None:
                validate.positive_int(name, getattr(self, name))
        info = dataset_info(self.dataset)
        if info.kind == "events" and self.mask != "spiking":
            raise UsageError(
                f"{self.dataset}: event data is sampled by the spiking sampler only "
                "(random event dropping is the baseline of 'spikeshield sample compress')"
            )

    @property
    def events(self) -> bool:
        return dataset_info(self.dataset).kind == "events"

    def data_options(self) -> dict[str, Any]:
        """Dataset options: event sets get ``time_steps`` bins of equal duration."""
        if not self.events:
            return dict(self.dataset_options)
        return {"frames": self.time_steps, "split_by": "time", **self.dataset_options}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleConfig:
        validate.reject_unknown("sampling run", data, (f.name for f in fields(cls)))
        return cls(**data)


class SamplingModel(nn.Module):
    """Mask source + :class:`~.reconstructor.Reconstructor`: ``forward(x, rate) → (x̂, mask)``."""

    def __init__(self, config: SampleConfig, info: DatasetInfo) -> None:
        super().__init__()
        self.kind = config.mask
        channels = info.input_shape[0]
        frames = config.time_steps if config.events else None
        self.sampler = (
            SpikingSampler(
                channels,
                events=config.events,
                time_steps=config.time_steps,
                hidden=config.hidden,
                neuron=config.neuron,
                neuron_options=config.neuron_options,
                surrogate=config.surrogate,
                rule=config.rule,
                v_threshold=config.v_threshold,
            )
            if self.kind == "spiking"
            else None
        )
        self.reconstructor = Reconstructor(
            channels,
            frames=frames,
            kind=config.reconstructor,
            hidden=config.recon_hidden,
            layers=config.recon_layers,
            time_steps=config.time_steps,
            neuron=config.neuron,
            neuron_options=config.neuron_options,
        )

    def masks(
        self,
        x: Tensor,
        rate: float,
        counts: Tensor | None = None,
        rng: SampleStreams | torch.Generator | None = None,
    ) -> Tensor:
        """Keep masks for ``x`` at ``rate``; a baseline keeps ``counts[b]`` pixels of sample ``b``
        (default: ``round(rate · H·W)``), the spiking sampler decides itself."""
        if self.sampler is not None:
            return self.sampler(x, rate).mask
        shape = (len(x), 1, *x.shape[-2:])
        if counts is None:
            counts = keep_counts(rate, shape[-1] * shape[-2], len(x), x.device)
        if self.kind == "random":
            return random_mask(shape, counts, rng)
        if self.kind == "grid":
            return grid_mask(shape, counts)
        return magnitude_mask(x, counts)

    def forward(
        self, x: Tensor, rate: float, rng: SampleStreams | torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        mask = self.masks(x, rate, rng=rng)
        return self.reconstructor(x, mask), mask


def read_sample_config(run_dir: str | Path) -> SampleConfig:
    """The :class:`SampleConfig` of a sampling run folder."""
    saved = read_json(Path(run_dir) / CONFIG_FILE, "sampling run config")
    if not isinstance(saved, dict) or "sample" not in saved:
        raise UsageError(f"{Path(run_dir) / CONFIG_FILE} is not a spikeshield sampling run config")
    return SampleConfig.from_dict(saved["sample"])


def load_sampling_model(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[SamplingModel, SampleConfig]:
    """The trained model of a sampling run (eval mode) and its settings; never runs code."""
    config = read_sample_config(run_dir)
    model = SamplingModel(config, dataset_info(config.dataset))
    load_model_weights(Path(run_dir) / MODEL_FILE, model, model_spec(config))
    return model.to(device).eval(), config


def model_spec(config: SampleConfig) -> dict[str, Any]:
    """The spec saved with a sampling model's weights (every setting that shapes the network)."""
    return {"kind": "spikeshield-sampling", "sample": config.to_dict()}
