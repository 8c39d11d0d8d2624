"""Conversion of trained networks into multi-step soft-reset IF networks.

Two routes, both ending in the same target: the network's own layers and weights with every
unit replaced by a soft-reset integrate-and-fire neuron run for ``N`` steps::

    H[t] = V[t−1] + X[t];   S[t] = Θ(H[t] − V_th);   V[t] = H[t] − V_th·S[t];   V[0] = v_init·V_th

Under a constant input current X (direct encoding makes the first layer's current constant) the
firing rate of such a neuron is ``floor((N·X + V[0]) / V_th) / N``, which tends to
``clamp(X / V_th, 0, 1)`` as N grows; with V[0] = V_th/2 the count is X·N/V_th rounded to the
nearest integer instead of rounded down.

* :func:`to_multistep` — noise-based fast training (Jiang & Zhang, Neural Computation 35(9),
  2023; arXiv 2211.05453). A network of ``noisy-if`` neurons, ``S = Θ(X + ξ − V_th)``, trained
  at T = 1 has an expected spike ``E[S] = P(ξ ≥ V_th − X)``. For ξ ~ U(0, V_th) that is exactly
  ``clamp(X / V_th, 0, 1)``, the multi-step rate, so the weights are copied unchanged
  ("lossless" conversion; with Gaussian noise N(V_th/2, σ²) it is the smooth approximation
  ``Φ((X − V_th/2)/σ)``). [recon: the paper's full text was not available; every choice is an
  option.]
* :func:`ann_to_snn` — the usual ANN-to-SNN baseline (Diehl et al. IJCNN 2015; Rueckauer et al.,
  Frontiers in Neuroscience 2017): a ReLU network (``neuron="relu"``) is normalised layer by
  layer with a robust maximum λ_l (the p-th percentile of the layer's activations on training
  data, p = 99.9 by default; p = 100 is max-norm), so that its IF neuron fires at rate a/λ_l.

Both scale weights through :func:`fold_scales`: the current into neuron layer l is multiplied by
``m_l`` (in the batch norm, or the conv/linear layer, just before the neuron) and the input of
the next weight layer by ``n_l`` (its weight). ANN-to-SNN uses m_l = V_th/(θ·λ_l), n_l = θ·λ_l;
threshold scaling by θ on a noise-trained network uses m_l = 1/θ, n_l = θ (each neuron then
acts as one with threshold and start potential θ times larger whose spikes weigh θ). Only
feed-forward chains can be folded (``mlp``, ``cnn``, ``vgg5``, ``vgg11``); a residual block is
refused. Max pooling of spikes is kept as it is: it passes the most active of its inputs at each
step, which overestimates the pooled rate — a known source of conversion error for ``cnn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.data.base import ArrayDataset
from spikeshield.errors import UsageError
from spikeshield.models.base import SpikingModel, model_from_spec
from spikeshield.neurons import SpikingNeuron

#: layers that commute with a positive scale and may sit between a weight layer and a neuron
PASSTHROUGH = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)
WEIGHTS = (nn.Conv2d, nn.Linear)


def if_options(v_threshold: float = 1.0, v_init: float = 0.5, surrogate: str | None = None) -> dict[str, Any]:
    """Options of the soft-reset IF neuron a conversion targets; ``v_init`` is a fraction of V_th.

    Raises:
        UsageError: ``v_init`` outside [0, 1) or a non-positive threshold.
    """
    validate.positive("v_threshold", v_threshold)
    validate.in_range("v_init", v_init, 0.0, 1.0, high_open=True)
    options: dict[str, Any] = {"reset": "soft", "v_threshold": float(v_threshold)}
    options["v_init"] = float(v_init) * float(v_threshold)
    if surrogate is not None:
        options["surrogate"] = surrogate
    return options


def check_if_options(options: dict[str, Any], where: str) -> None:
    """Refuse target neuron options that are not a soft-reset IF neuron (a conversion needs one)."""
    if options.get("reset") != "soft":
        raise UsageError(f"{where}: conversion targets soft-reset IF neurons: set reset = 'soft'")
    if options.get("detach_reset"):
        raise UsageError(f"{where}: detach_reset changes only gradients; leave it out of a conversion")


def _leaves(module: nn.Module, name: str) -> Iterator[tuple[str, nn.Module]]:
    """Leaf layers of a feed-forward chain in forward order; anything else is refused."""
    if isinstance(module, (SpikingNeuron, *WEIGHTS, nn.BatchNorm1d, nn.BatchNorm2d, *PASSTHROUGH)):
        yield name, module
    elif isinstance(module, nn.Sequential):  # TimeDistributed and SpikingSequential too: run in order
        for child_name, child in module.named_children():
            yield from _leaves(child, f"{name}.{child_name}")
    else:
        raise UsageError(
            f"cannot convert layer {name} ({type(module).__name__}): only feed-forward chains of "
            "conv / linear / batch-norm / pooling layers and neurons can be scaled (mlp, cnn, vgg5, vgg11)"
        )


def chain(model: SpikingModel) -> list[tuple[str, nn.Module]]:
    """The model's layers in forward order (stem, body, readout, voting neuron)."""
    parts = [("stem", model.stem), ("body", model.body), ("head", model.head)]
    if model.head_neuron is not None:
        parts.append(("head_neuron", model.head_neuron))
    return [leaf for name, part in parts for leaf in _leaves(part, name)]


def neurons_of(model: nn.Module) -> list[SpikingNeuron]:
    return [m for m in model.modules() if isinstance(m, SpikingNeuron)]


@torch.no_grad()
def fold_scales(model: SpikingModel, scales: Sequence[tuple[float, float]]) -> None:
    """In place: multiply the current into neuron layer l by ``m_l`` and the input of the next
    weight layer by ``n_l`` (``scales[l] = (m_l, n_l)``, one pair per neuron layer, forward order).

    Raises:
        UsageError: a layer that cannot be scaled, a neuron without a weight layer before it, or
            a scale count that does not match the neuron layers.
    """
    layers = chain(model)
    count = sum(isinstance(m, SpikingNeuron) for _, m in layers)
    if len(scales) != count:
        raise UsageError(f"{count} neuron layers need {count} scales, got {len(scales)}")
    pending: float | None = None  # n of the last neuron, waiting for the next weight layer
    last: tuple[str, nn.Module] | None = None  # the layer that produces the current of the next neuron
    index = 0
    for name, layer in layers:
        if isinstance(layer, WEIGHTS):
            if pending is not None:
                layer.weight.mul_(pending)
                pending = None
            last = (name, layer)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if last is None:
                raise UsageError(f"cannot convert: batch norm {name} does not follow a weight layer")
            last = (name, layer)
        elif isinstance(layer, SpikingNeuron):
            if last is None:
                raise UsageError(f"cannot convert: neuron {name} has no weight layer before it")
            m, n = scales[index]
            last[1].weight.mul_(m)
            if last[1].bias is not None:
                last[1].bias.mul_(m)
            pending, last, index = n, None, index + 1
    if pending is not None:
        raise UsageError("cannot convert: the last neuron layer feeds no weight layer")


def _target(source: SpikingModel, time_steps: int, neuron_options: dict[str, Any]) -> SpikingModel:
    """The source's architecture with soft-reset IF neurons at T = ``time_steps``, weights copied."""
    validate.positive_int("time_steps", time_steps)
    check_if_options(neuron_options, "neuron_options")
    spec = {**source.spec, "neuron": "if", "neuron_options": dict(neuron_options), "time_steps": time_steps}
    target = model_from_spec(spec)
    target.load_state_dict(source.state_dict())
    return target.to(next(source.parameters()).device).eval()


def _source_neurons(model: SpikingModel, name: str, method: str) -> list[SpikingNeuron]:
    if not isinstance(model, SpikingModel):
        raise UsageError(f"{method} converts a spikeshield SpikingModel, got {type(model).__name__}")
    neurons = neurons_of(model)
    wrong = sorted({n.name for n in neurons if n.name != name})
    if wrong or not neurons:
        raise UsageError(f"{method} converts a network of '{name}' units; this one has {', '.join(wrong)}")
    return neurons


def to_multistep(
    model: SpikingModel,
    time_steps: int,
    *,
    v_init: float = 0.5,
    threshold_scale: float = 1.0,
    neuron_options: dict[str, Any] | None = None,
) -> SpikingModel:
    """Convert a ``noisy-if`` network (trained at T = 1) into a soft-reset IF network at T = N.

    The weights are copied; every ``noisy-if`` neuron becomes ``if`` with ``reset = soft``, the
    same V_th and V[0] = ``v_init``·V_th (0.5: the mean of the residual potential the noise
    stands for; 0: rest). ``threshold_scale`` θ ≠ 1 makes each neuron act as one with threshold
    θ·V_th whose spikes weigh θ (by :func:`fold_scales`). ``neuron_options`` replaces the target
    neuron's options wholesale (a run's recorded ones). Jiang & Zhang, Neural Computation 35(9),
    2023 [recon].

    Args:
        model: a :class:`SpikingModel` of ``noisy-if`` neurons (any T; its weights are not changed).
        time_steps: N ≥ 1.

    Returns:
        The converted model in eval mode, on the source's device; input ``[B, C, H, W]``, logits
        ``[B, classes]``.

    Raises:
        UsageError: N ≤ 0, a network of other neurons, bad options, or θ ≠ 1 on a residual network.
    """
    neurons = _source_neurons(model, "noisy-if", "to_multistep")
    thresholds = {n.v_threshold for n in neurons}
    if len(thresholds) != 1:
        raise UsageError(f"to_multistep needs one threshold for all neurons, got {sorted(thresholds)}")
    theta = validate.positive("threshold_scale", threshold_scale)
    options = neuron_options if neuron_options is not None else if_options(thresholds.pop(), v_init)
    target = _target(model, time_steps, options)
    if theta != 1.0:
        fold_scales(target, [(1.0 / theta, theta)] * len(neurons))
    return target


class _TopK:
    """The k largest values seen so far (exact streaming percentile of a layer's activations)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.values = torch.empty(0)

    def add(self, x: Tensor) -> None:
        flat = torch.cat([self.values, x.detach().flatten().float().cpu()])
        self.values = torch.topk(flat, min(self.k, flat.numel())).values


@torch.no_grad()
def robust_max(
    model: SpikingModel, data: ArrayDataset, *, percentile: float = 99.9, batch_size: int = 256
) -> list[float]:
    """λ_l per unit layer (forward order): the ``percentile``-th percentile of the layer's outputs
    over every element of ``data`` (nearest rank; zeros included, as in SpikingJelly's
    ``VoltageHook``). 100 gives the maximum.

    Raises:
        UsageError: ``percentile`` outside (0, 100], empty data, or a layer that never activates.
    """
    p = validate.in_range("percentile", percentile, 0.0, 100.0, low_open=True)
    if len(data) == 0:
        raise UsageError("calibration data is empty")
    units = neurons_of(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    tops: dict[int, _TopK] = {}

    def hook(index: int) -> Callable[[nn.Module, Any, Tensor], None]:
        def record(_module: nn.Module, _inputs: Any, out: Tensor) -> None:
            if index not in tops:  # out: [T, B, ...]; every element of every sample counts
                total = out[:, 0].numel() * len(data)
                tops[index] = _TopK(max(1, total - math.ceil(p / 100.0 * total) + 1))
            tops[index].add(out)

        return record

    handles = [u.register_forward_hook(hook(i)) for i, u in enumerate(units)]
    try:
        for x, _ in data.batches(batch_size, device=device):
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    scales = [float(tops[i].values.min()) for i in range(len(units))]
    dead = [i for i, s in enumerate(scales) if not s > 0]
    if dead:
        raise UsageError(
            f"unit layer {dead[0] + 1} never exceeds 0 at its {percentile:g}th percentile on the "
            "calibration data: raise the percentile or calibrate on more samples"
        )
    return scales


def ann_to_snn(
    model: SpikingModel,
    calibration: ArrayDataset,
    time_steps: int,
    *,
    percentile: float = 99.9,
    threshold_scale: float = 1.0,
    v_init: float = 0.5,
    neuron_options: dict[str, Any] | None = None,
    batch_size: int = 256,
) -> tuple[SpikingModel, list[float]]:
    """ANN-to-SNN conversion with robust-max normalisation (Rueckauer et al., Front. Neurosci. 2017).

    λ_l = :func:`robust_max` of ReLU layer l on ``calibration`` (images in [0, 1]); the ReLU
    units become soft-reset IF neurons (V_th = 1, V[0] = ``v_init``·V_th unless
    ``neuron_options`` says otherwise) whose input currents are scaled by V_th/(θ·λ_l) and whose
    spikes weigh θ·λ_l in the next weight layer, so neuron l fires at rate
    ``clamp(a_l / (θ·λ_l), 0, 1)`` for ReLU activation a_l. θ = ``threshold_scale``.

    Args:
        model: a :class:`SpikingModel` of ``relu`` units (a feed-forward chain); not changed.
        calibration: training samples whose activations set λ.
        time_steps: N ≥ 1.

    Returns:
        ``(snn, lambdas)``: the IF network in eval mode and λ_l per layer.

    Raises:
        UsageError: N ≤ 0, a network that is not all ``relu`` units or not a chain, bad options.
    """
    _source_neurons(model, "relu", "ann_to_snn")
    theta = validate.positive("threshold_scale", threshold_scale)
    options = neuron_options if neuron_options is not None else if_options(1.0, v_init)
    target = _target(model, time_steps, options)
    lambdas = robust_max(model, calibration, percentile=percentile, batch_size=batch_size)
    v_th = float(options.get("v_threshold", 1.0))
    fold_scales(target, [(v_th / (theta * lam), theta * lam) for lam in lambdas])
    return target, lambdas


__all__ = [
    "ann_to_snn",
    "chain",
    "check_if_options",
    "fold_scales",
    "if_options",
    "robust_max",
    "to_multistep",
]
