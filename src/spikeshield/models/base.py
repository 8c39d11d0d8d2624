"""The spiking model wrapper, the architecture registry and :func:`build_model`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.models.encoders import ENCODERS, Encoder
from spikeshield.models.layers import TimeDistributed
from spikeshield.neurons import NEURONS, NeuronFactory, neuron_factory
from spikeshield.registry import Registry

READOUTS = ("mean", "voting")


@dataclass
class Backbone:
    """What an architecture builder returns.

    ``stem``: stateless layers before the first neuron (run once per image under direct
    encoding); ``body``: the rest, mapping ``[T, B, ...]`` to ``[T, B, features]`` spikes.
    """

    stem: nn.Module
    body: nn.Module


ArchBuilder = Callable[..., Backbone]
MODELS: Registry[ArchBuilder] = Registry("model")


def register_model(name: str) -> Callable[[ArchBuilder], ArchBuilder]:
    """Register an architecture builder ``f(input_shape, make_neuron, **options) -> Backbone``."""
    return MODELS.register(name)


class SpikingModel(nn.Module):
    """A spiking classifier: ``[B, C, H, W]`` images (or ``[B, T, C, H, W]`` events) → ``[B, classes]``.

    ``forward`` encodes the input over T steps, runs the backbone from a fresh neuron state,
    and reads out: ``mean`` gives logits averaged over T (train with cross-entropy); ``voting``
    gives per-class firing rates of ``voters`` output neurons each, in [0, 1] (train with MSE
    against one-hot targets). Either way the output is one score per class, so any attack that
    works on an ``nn.Module`` returning logits works here.
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        features: int,
        num_classes: int,
        input_shape: Sequence[int],
        encoder: Encoder,
        readout: str,
        voters: int,
        make_neuron: NeuronFactory,
        normalize: tuple[Sequence[float], Sequence[float]] | None,
        spec: dict[str, Any],
    ) -> None:
        super().__init__()
        self.stem = backbone.stem
        self.body = backbone.body
        self.encoder = encoder
        self.readout = readout
        self.num_classes = num_classes
        self.voters = voters
        self.input_shape = tuple(input_shape)
        self.spec = spec
        outputs = num_classes * (voters if readout == "voting" else 1)
        self.head = TimeDistributed(nn.Linear(features, outputs))
        self.head_neuron = make_neuron() if readout == "voting" else None
        if normalize is not None:
            mean, std = normalize
            c = self.input_shape[0]
            if len(mean) != c or len(std) != c:
                raise UsageError(f"normalisation needs {c} means and stds, got {len(mean)} and {len(std)}")
            if any(s <= 0 for s in std):
                raise UsageError(f"normalisation std must be > 0, got {list(std)}")
            self.register_buffer("norm_mean", torch.tensor(mean, dtype=torch.float32).view(c, 1, 1))
            self.register_buffer("norm_std", torch.tensor(std, dtype=torch.float32).view(c, 1, 1))
        else:
            self.norm_mean = None
            self.norm_std = None

    @property
    def time_steps(self) -> int:
        return self.encoder.time_steps

    def check_input(self, x: Tensor) -> None:
        expected = (self.time_steps, *self.input_shape) if self.encoder.kind == "events" else self.input_shape
        if not isinstance(x, Tensor):
            raise UsageError(f"model input must be a tensor, got {type(x).__name__}")
        if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise UsageError(
                f"model expects input of shape [B, {', '.join(map(str, expected))}], got {list(x.shape)}"
            )
        if not x.is_floating_point():
            raise UsageError(f"model expects a floating-point input, got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise UsageError("model input contains NaN or infinite values")

    def sequence(self, x: Tensor) -> Tensor:
        """The backbone's output spikes ``[T, B, features]`` for input ``x``."""
        if self.norm_mean is not None:
            x = (x - self.norm_mean.to(x.dtype)) / self.norm_std.to(x.dtype)
        if self.encoder.kind == "direct":
            y = self.stem(x)
            seq = y.unsqueeze(0).expand(self.time_steps, *y.shape)
        else:
            seq = self.encoder(x)
            t, b = seq.shape[:2]
            y = self.stem(seq.reshape(t * b, *seq.shape[2:]))
            seq = y.reshape(t, b, *y.shape[1:])
        return self.body(seq)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        out = self.head(self.sequence(x))
        if self.head_neuron is None:
            return out.mean(0)
        rates = self.head_neuron(out).mean(0)
        return rates.view(rates.shape[0], self.num_classes, self.voters).mean(-1)


def _feature_count(backbone: Backbone, input_shape: Sequence[int], time_steps: int, events: bool) -> int:
    """Width of the backbone's output, found by one tiny forward pass."""
    was_training = backbone.body.training
    backbone.stem.eval()
    backbone.body.eval()
    with torch.no_grad():
        y = backbone.stem(torch.zeros(1, *input_shape))
        seq = backbone.body(y.unsqueeze(0).expand(time_steps, *y.shape))
    backbone.stem.train(was_training)
    backbone.body.train(was_training)
    if seq.dim() != 3:
        raise RuntimeError(f"backbone must return [T, B, features], got {list(seq.shape)}")
    return int(seq.shape[-1])


def build_model(
    name: str,
    *,
    neuron: str = "lif",
    neuron_options: dict[str, Any] | None = None,
    num_classes: int = 10,
    input_shape: Sequence[int] = (1, 28, 28),
    time_steps: int = 4,
    encoder: str = "direct",
    readout: str = "mean",
    voters: int = 10,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    **options: Any,
) -> SpikingModel:
    """Build a registered architecture with any registered neuron.

    Args:
        name: ``mlp``, ``cnn``, ``vgg5``, ``vgg11``, ``resnet19``, ``wrn16``.
        neuron / neuron_options: neuron name and its options (see ``spikeshield.neurons``).
        num_classes, input_shape: task shape; ``input_shape`` is ``(C, H, W)``.
        time_steps: T.
        encoder: ``direct`` (default), ``poisson`` or ``events`` (input ``[B, T, C, H, W]``).
        readout: ``mean`` (logits averaged over T, for cross-entropy) or ``voting`` (spike rate
            of ``voters`` neurons per class, for MSE).
        normalize: ``(mean, std)`` per channel, applied inside the model (so attacks and
            corruptions act on [0, 1] pixels).
        options: architecture options (e.g. ``hidden`` for mlp, ``channels`` for cnn).
    """
    builder = MODELS.get(name)
    NEURONS.get(neuron)
    if readout not in READOUTS:
        raise UsageError(f"unknown readout {readout!r}; choose from {', '.join(READOUTS)}")
    if encoder not in ENCODERS:
        raise UsageError(f"unknown encoder {encoder!r}; choose from {', '.join(ENCODERS)}")
    if encoder == "poisson" and normalize is not None:
        raise UsageError("poisson encoding needs [0, 1] intensities: do not combine it with normalize")
    validate.int_at_least("num_classes", num_classes, 2)
    validate.positive_int("voters", voters)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    enc = Encoder(encoder, time_steps)  # validates time_steps
    neuron_options = dict(neuron_options or {})
    make_neuron = neuron_factory(neuron, time_steps=time_steps, **neuron_options)
    accepted = set(inspect.signature(builder).parameters) - {"input_shape", "make_neuron"}
    validate.reject_unknown(f"model {name!r}", options, accepted)
    backbone = builder(input_shape=shape, make_neuron=make_neuron, **options)
    features = _feature_count(backbone, shape, time_steps, encoder == "events")
    spec = {
        "name": name,
        "neuron": neuron,
        "neuron_options": neuron_options,
        "num_classes": num_classes,
        "input_shape": list(shape),
        "time_steps": time_steps,
        "encoder": encoder,
        "readout": readout,
        "voters": voters,
        "normalize": None if normalize is None else [list(normalize[0]), list(normalize[1])],
        "options": options,
    }
    return SpikingModel(
        backbone,
        features=features,
        num_classes=num_classes,
        input_shape=shape,
        encoder=enc,
        readout=readout,
        voters=voters,
        make_neuron=make_neuron,
        normalize=normalize,
        spec=spec,
    )


def model_from_spec(spec: dict[str, Any]) -> SpikingModel:
    """Rebuild a model from the ``spec`` it recorded (as saved in a run's config)."""
    spec = dict(spec)
    name = spec.pop("name")
    options = spec.pop("options", {}) or {}
    normalize = spec.pop("normalize", None)
    return build_model(
        name,
        normalize=None if normalize is None else (normalize[0], normalize[1]),
        **spec,
        **options,
    )
