"""How far an input perturbation travels through a spiking network, layer by layer, beside the
stability bound of Ding, Pan, Liu, Yu & Huang ("Robust Stable Spiking Neural Networks", ICML 2024).

A spiking layer receives the input current ``X[t] = A·S[t] + b`` from the spikes ``S`` of the
layer below (or from the image, for the first layer) through a chain of linear maps ``A``
(convolution or linear layer, batch norm in eval mode, average pooling; max pooling with
non-overlapping windows counts as 1-Lipschitz). A perturbation of the input changes the current
by ``δX[t] = A·δS[t]`` and the membrane potential, until the next spike, by the membrane-potential
perturbation ``ε[t] = λ·ε[t−1] + δX[t]`` (:func:`~spikeshield.training.mppd.perturbation_dynamics`).
With ``ε[t] = Σ_k λ^k·A·δS[t−k]`` and Cauchy–Schwarz,

    max_t ‖ε[t]‖₂  ≤  sqrt(1/(1−λ²))·‖A‖₂·‖δS‖₂  ≤  sqrt(1/(1−λ))·‖A‖₂·‖δS‖₂,

``‖δS‖₂`` taken over all T steps of the layer's input (the image repeated T times, for the first
layer). This analysis measures the *gain* ``max_t ‖ε[t]‖ / ‖δS‖`` of every sample at every layer
under Gaussian noise and under PGD, and puts the bound ``sqrt(1/(1−λ))·‖A‖₂`` beside it, ``‖A‖₂``
found by power iteration on ``AᵀA``. ε is measured on the input current before DLIF's gain
p[t], as the MPPD regulariser uses it. Run it on models trained with and without MPPD to see
where the regulariser acts (it targets the last layer).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield.analysis.plots import curve_style, save_figure, subplots
from spikeshield.attacks import Oracle, build_attack, corrupt
from spikeshield.errors import UsageError
from spikeshield.io import atomic_write_json, ensure_dir, refuse_to_replace
from spikeshield.models import SpikingModel
from spikeshield.models.layers import SequenceDropout
from spikeshield.neurons import SpikingNeuron
from spikeshield.streams import SampleStreams
from spikeshield.training.mppd import membrane_decay, perturbation_dynamics

JSON_FILE = "perturbation.json"
PNG_FILE = "perturbation.png"
LINEAR = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.Flatten)
IDENTITY_IN_EVAL = (nn.Dropout, nn.Identity, SequenceDropout)  # identities in evaluation


class _Normalize(nn.Module):
    """The model's input normalisation ``(x − mean)/std`` as a layer of the first chain."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


@dataclass
class Stage:
    """One spiking layer: the linear chain from its input (image or spikes) to its input current."""

    chain: list[nn.Module]
    neuron: SpikingNeuron


def _leaves(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


def _check_chain(chain: list[nn.Module], index: int) -> None:
    for layer in chain:
        pool_ok = isinstance(layer, nn.MaxPool2d) and layer.kernel_size == layer.stride and layer.padding == 0
        if not (isinstance(layer, (*LINEAR, *IDENTITY_IN_EVAL, _Normalize)) or pool_ok):
            raise UsageError(
                f"perturbation analysis: layer {index + 1} is fed through {type(layer).__name__}, "
                "which is not a linear map (supported: conv, linear, batch norm, average pooling, "
                "non-overlapping max pooling)"
            )


def stages(model: nn.Module) -> list[Stage]:
    """The spiking layers of a feed-forward :class:`SpikingModel` (``mlp``, ``cnn``, ``vgg5``,
    ``vgg11``) with direct encoding, each with the linear chain that feeds it.

    Raises:
        UsageError: another kind of model (residual blocks, event or Poisson input), a layer
            that is not a linear map between two spiking layers, or a neuron without a
            multiplicative membrane leak (``noisy-if``, ``linear-lif``, ...).
    """
    name = getattr(model, "spec", {}).get("name", type(model).__name__)
    if not isinstance(model, SpikingModel) or not isinstance(model.body, nn.Sequential):
        raise UsageError(f"perturbation analysis needs a feed-forward spiking model, not {name!r}")
    if model.encoder.kind != "direct":
        raise UsageError(
            "perturbation analysis needs direct encoding (the image at every step), "
            f"got {model.encoder.kind!r}"
        )
    chain: list[nn.Module] = []
    if model.norm_mean is not None and model.norm_std is not None:
        chain.append(_Normalize(model.norm_mean, model.norm_std))
    chain += _leaves(model.stem)
    found: list[Stage] = []
    for module in model.body:
        if isinstance(module, SpikingNeuron):
            found.append(Stage(chain, module))
            chain = []
        elif any(isinstance(m, SpikingNeuron) for m in module.modules()):
            raise UsageError(f"perturbation analysis needs a plain chain of layers; {name!r} has blocks")
        else:
            chain += _leaves(module)
    if model.head_neuron is not None:
        found.append(Stage(chain + _leaves(model.head), model.head_neuron))
    for i, stage in enumerate(found):
        _check_chain(stage.chain, i)
        _check_leak(stage.neuron, i)
    return found


def _check_leak(neuron: SpikingNeuron, index: int) -> None:
    """The layer's neuron charges as ``H = λ·V + X`` (:func:`membrane_decay` knows its λ)."""
    try:
        membrane_decay(neuron)
    except UsageError:
        hint = (
            "; for a noisy-if run, analyze its IF conversion ('spikeshield convert --to multistep')"
            if neuron.name == "noisy-if"
            else ""
        )
        raise UsageError(
            f"perturbation analysis: layer {index + 1}'s neuron {neuron.name!r} has no membrane leak "
            f"λ (H = λ·V + X) to bound the perturbation with; it analyzes runs of "
            f"{', '.join(_leaky_neurons())} neurons{hint}"
        ) from None


def _leaky_neurons() -> list[str]:
    """The registered neurons whose λ :func:`membrane_decay` knows (in their default setting)."""
    from spikeshield.neurons import NEURONS, neuron_factory

    names = []
    for name in NEURONS.names():
        try:
            membrane_decay(neuron_factory(name, time_steps=2)())
        except (UsageError, TypeError, ValueError):
            continue
        names.append(name)
    return names


def operator_norm(layers: Sequence[nn.Module], input_shape: Sequence[int], iterations: int = 100) -> float:
    """``‖A‖₂`` of the linear part of ``layers`` (eval mode) on inputs of ``input_shape``, by power
    iteration on ``AᵀA`` (``A·v = f(v) − f(0)``); a non-overlapping max pooling splits the chain and
    counts as 1. Converges from below; the start vector is seeded (the result is reproducible)."""
    segments: list[list[nn.Module]] = [[]]
    for layer in layers:
        if isinstance(layer, nn.MaxPool2d):
            segments.append([layer])  # applied first in the next segment, not differentiated through
        else:
            segments[-1].append(layer)
    norm, shape = 1.0, tuple(input_shape)
    generator = torch.Generator().manual_seed(0)
    for segment in segments:
        pool = segment[0] if segment and isinstance(segment[0], nn.MaxPool2d) else None
        body = nn.Sequential(*(segment[1:] if pool else segment))
        if pool is not None:
            with torch.no_grad():
                shape = tuple(pool(torch.zeros(1, *shape)).shape[1:])
        norm *= _power_iteration(body, shape, iterations, generator)
        with torch.no_grad():
            shape = tuple(body(torch.zeros(1, *shape)).shape[1:])
    return norm


def _power_iteration(
    f: nn.Module, shape: tuple[int, ...], iterations: int, generator: torch.Generator
) -> float:
    if len(f) == 0:
        return 1.0
    device = next((p.device for p in f.parameters()), torch.device("cpu"))
    with torch.no_grad():
        base = f(torch.zeros(1, *shape, device=device))
    v = torch.randn(1, *shape, generator=generator).to(device)
    sigma = 0.0
    for _ in range(iterations):
        v = (v / v.norm()).requires_grad_(True)
        with torch.enable_grad():
            u = f(v) - base
            (w,) = torch.autograd.grad(u, v, grad_outputs=u)
        sigma = math.sqrt(float(w.norm()))
        if sigma == 0.0:
            return 0.0
        v = w.detach()
    return sigma


@contextmanager
def _recording(found: list[Stage]) -> Iterator[tuple[list[list[Tensor]], list[list[Tensor]]]]:
    """Per stage, the neuron's input currents and output spikes of every forward in the block."""
    inputs: list[list[Tensor]] = [[] for _ in found]
    outputs: list[list[Tensor]] = [[] for _ in found]
    with ExitStack() as stack:
        for i, stage in enumerate(found):
            pre = stage.neuron.register_forward_pre_hook(lambda _m, a, i=i: inputs[i].append(a[0].detach()))
            post = stage.neuron.register_forward_hook(lambda _m, _a, o, i=i: outputs[i].append(o.detach()))
            stack.callback(pre.remove)
            stack.callback(post.remove)
        yield inputs, outputs


def layer_gains(model: SpikingModel, x: Tensor, x_pert: Tensor) -> list[dict[str, Tensor]]:
    """Per spiking layer: ``gain`` ``[B]`` = ``max_t ‖ε[t]‖ / ‖δ input‖`` (NaN where the layer's
    input did not change), ``eps_rms`` ``[B]`` = RMS of ε over steps and neurons, and ``input_change``
    ``[B]`` = ``‖δ input‖``; ``x``, ``x_pert`` ``[B, C, H, W]``, the model in eval mode."""
    found = stages(model)
    with _recording(found) as (inputs, outputs), torch.no_grad():
        model(x)
        model(x_pert)
    t = inputs[0][0].shape[0]
    out = []
    for i, stage in enumerate(found):
        if i == 0:
            change = (x_pert - x).flatten(1).norm(dim=1) * math.sqrt(t)
        else:
            change = (outputs[i - 1][1] - outputs[i - 1][0]).transpose(0, 1).flatten(1).norm(dim=1)
        eps = perturbation_dynamics(inputs[i][0] - inputs[i][1], membrane_decay(stage.neuron))
        peak = eps.flatten(2).norm(dim=2).amax(0)
        gain = torch.where(change > 0, peak / change.clamp_min(1e-30), torch.full_like(peak, math.nan))
        out.append(
            {"gain": gain, "eps_rms": eps.square().flatten(2).mean((0, 2)).sqrt(), "input_change": change}
        )
    return out


def layer_bounds(model: SpikingModel) -> list[dict[str, Any]]:
    """Per spiking layer: λ, ``‖A‖₂`` of its input chain and the bound ``sqrt(1/(1−λ))·‖A‖₂``
    (None where λ = 1: no leak, no bound)."""
    found = stages(model)
    shapes = [tuple(model.input_shape)]
    with _recording(found) as (_, outputs), torch.no_grad():
        model(torch.zeros(1, *model.input_shape, device=next(model.parameters()).device))
    shapes += [tuple(o[0].shape[2:]) for o in outputs[:-1]]
    rows = []
    for i, stage in enumerate(found):
        decay = membrane_decay(stage.neuron)
        norm = operator_norm(stage.chain, shapes[i])
        rows.append(
            {
                "layer": i + 1,
                "neuron": stage.neuron.name,
                "decay": decay,
                "operator_norm": norm,
                "bound": math.sqrt(1.0 / (1.0 - decay)) * norm if decay < 1 else None,
                "chain": [type(m).__name__.lstrip("_") for m in stage.chain],
            }
        )
    return rows


def _summary(values: Tensor) -> dict[str, Any]:
    kept = [float(v) for v in values if not math.isnan(float(v))]
    if not kept:
        return {"samples": 0, "mean": None, "median": None, "max": None}
    return {
        "samples": len(kept),
        "mean": statistics.fmean(kept),
        "median": statistics.median(kept),
        "max": max(kept),
    }


def perturbed_inputs(
    model: SpikingModel, x: Tensor, y: Tensor, *, eps: float, sigma: float, steps: int, seed: int
) -> dict[str, Tensor]:
    """The perturbed test batches: Gaussian noise of std ``sigma`` (clipped to [0, 1]) and PGD
    (L∞, ``eps``, ``steps`` steps, the model's own surrogate gradient)."""
    n = len(x)
    noisy = corrupt("gaussian", x, sigma, SampleStreams.keyed(seed, range(n), "gaussian"))
    pgd = build_attack("pgd", eps=eps, steps=steps)
    adv = pgd.perturb(Oracle(model), x, y, SampleStreams.keyed(seed, range(n), "pgd"))
    return {f"gaussian σ={sigma:.4g}": noisy, f"pgd-{steps} ε={eps:.4g}": adv}


def analyze_run(
    run_dir: str | Path,
    *,
    samples: int = 200,
    eps: float | None = None,
    sigma: float | None = None,
    steps: int = 10,
    seed: int = 0,
    data_root: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Gains and bounds of every spiking layer of one trained run on its first ``samples`` test
    samples (the fixed subset ``evaluate --limit`` uses). ``eps`` / ``sigma`` default to 0.1 for
    1-channel inputs and 8/255 otherwise."""
    from spikeshield.runs import load_run
    from spikeshield.training import resolve_device

    dev = resolve_device(device)
    run = load_run(run_dir, limit=samples, data_root=data_root, device=dev)
    model = run.model
    stages(model)  # refuse an unsupported model before any work
    x, y = run.test_set.tensors()
    x, y = x.to(dev), y.to(dev)
    scale = 0.1 if model.input_shape[0] == 1 else 8 / 255
    eps = scale if eps is None else eps
    sigma = scale if sigma is None else sigma
    bounds = layer_bounds(model)
    perturbations = {}
    for label, x_pert in perturbed_inputs(model, x, y, eps=eps, sigma=sigma, steps=steps, seed=seed).items():
        gains = layer_gains(model, x, x_pert)
        perturbations[label] = [
            {
                "layer": i + 1,
                "gain": _summary(g["gain"].cpu()),
                "eps_rms_mean": float(g["eps_rms"].mean()),
                "within_bound": None
                if bounds[i]["bound"] is None
                else bool(torch.nan_to_num(g["gain"], nan=0.0).max() <= bounds[i]["bound"] * (1 + 1e-4)),
            }
            for i, g in enumerate(gains)
        ]
    config = run.config
    return {
        "run": str(run_dir),
        "label": Path(run_dir).name,
        "mode": config.mode,
        "mode_options": config.mode_options,
        "neuron": config.neuron,
        "model": config.model,
        "dataset": config.dataset,
        "samples": len(x),
        "settings": {"eps": eps, "sigma": sigma, "steps": steps, "seed": seed},
        "layers": bounds,
        "perturbations": perturbations,
    }


def findings(results: list[dict[str, Any]]) -> list[str]:
    """What the numbers say, one line each."""
    lines = []
    for r in results:
        checked = [p["within_bound"] for rows in r["perturbations"].values() for p in rows]
        worst = max(
            (
                p["gain"]["max"] / b["bound"]
                for rows in r["perturbations"].values()
                for p, b in zip(rows, r["layers"], strict=True)
                if b["bound"] and p["gain"]["max"] is not None
            ),
            default=None,
        )
        verdict = (
            "every measured gain is within its bound"
            if all(c is not False for c in checked)
            else ("BOUND VIOLATED (a bug: the bound is a theorem)")
        )
        lines.append(
            f"{r['label']}: {verdict}"
            + (f" (largest gain / bound = {worst:.3g})" if worst is not None else "")
        )
    for label in results[0]["perturbations"] if results else []:
        last = ", ".join(f"{r['label']} {r['perturbations'][label][-1]['eps_rms_mean']:.4g}" for r in results)
        lines.append(f"last layer, RMS ε under {label}: {last}")
    return lines


def run_perturbation_analysis(
    runs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    note: str = "",
    **options: Any,
) -> dict[str, Any]:
    """:func:`analyze_run` on every run; writes ``perturbation.json`` and ``perturbation.png``
    under ``out_dir`` (an earlier analysis there is refused unless ``overwrite``). ``note`` (e.g.
    "REDUCED (CPU budget)") is recorded in the JSON and printed in the figure's title."""
    if not runs:
        raise UsageError("perturbation analysis needs at least one run folder (--run DIR)")
    refuse_to_replace(
        [Path(out_dir) / JSON_FILE, Path(out_dir) / PNG_FILE], overwrite=overwrite, what="analysis"
    )
    results = [analyze_run(r, **options) for r in runs]
    out = ensure_dir(out_dir)
    summary = {
        "format": "spikeshield-perturbation",
        "note": note,
        "runs": results,
        "findings": findings(results),
    }
    atomic_write_json(out / JSON_FILE, summary)
    figure = plot_perturbation(summary, out / PNG_FILE)
    return {**summary, "written": [str(out / JSON_FILE)] + ([str(figure)] if figure else [])}


def plot_perturbation(summary: dict[str, Any], path: Path) -> Path | None:
    """Per perturbation: measured gain per layer (median, whiskers to the max) and the bound
    (dashed); below, the RMS of ε per layer. One colour per run."""
    results = summary["runs"]
    labels = list(results[0]["perturbations"])
    made = subplots(2, len(labels), figsize=(5.2 * len(labels), 7.0), squeeze=False)
    if made is None:
        return None
    fig, axes = made
    for col, label in enumerate(labels):
        top, bottom = axes[0][col], axes[1][col]
        for k, r in enumerate(results):
            style = curve_style(k)
            color, marker = style["color"], style["marker"]
            rows = r["perturbations"][label]
            layers = [p["layer"] for p in rows]
            med = [p["gain"]["median"] or math.nan for p in rows]
            high = [(p["gain"]["max"] or math.nan) - m for p, m in zip(rows, med, strict=True)]
            top.errorbar(
                layers,
                med,
                yerr=[[0] * len(med), high],
                color=color,
                marker=marker,
                capsize=3,
                label=r["label"],
            )
            bound = [b["bound"] or math.nan for b in r["layers"]]
            top.plot(layers, bound, color=color, linestyle="--", label=f"{r['label']} bound")
            bottom.plot(layers, [p["eps_rms_mean"] for p in rows], label=r["label"], **style)
        top.set_yscale("log")
        top.set_title(f"gain max_t‖ε[t]‖ / ‖δ input‖ — {label}", fontsize=9)
        bottom.set_title(f"RMS of ε (membrane-potential perturbation) — {label}", fontsize=9)
        bottom.set_xlabel("spiking layer")
        for ax in (top, bottom):
            ax.set_xticks([b["layer"] for b in results[0]["layers"]])
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    axes[1][0].legend(fontsize=7)
    first = results[0]
    fig.suptitle(
        f"Perturbation gain per spiking layer vs sqrt(1/(1−λ))·‖A‖₂: {first['dataset']} / {first['model']}, "
        f"{first['samples']} test samples (median, bar to max)"
        + (f"\n{summary['note']}" if summary.get("note") else ""),
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, path)
