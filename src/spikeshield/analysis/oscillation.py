"""What the oscillation defence (Jiang & Zhang, arXiv 2211.02223, 2022) hands an attacker.

Two pictures of one trained run with ``oscillating-lif`` neurons
(:class:`~spikeshield.neurons.OscillatingLIFNode`):

- **membrane traces**: the pre-fire potential ``H[t]`` of a few neurons of the first oscillating
  layer on the first test image, with the oscillation (``A·sin(2πf·t + φ)`` added to the
  membrane, or to the threshold) and without it (A = 0, the same weights and the same input
  current: the layer's input is recorded once and replayed), beside the threshold. The neurons
  shown are those whose peak potential without oscillation lies closest to the threshold: where
  the oscillation decides whether they fire. Also: the fraction of the layer's neurons whose
  spike train the oscillation changes.
- **the gradient the defence hands out**: per test sample, the cosine similarity between the input
  gradient of the cross-entropy loss that ``torch.autograd`` gives (for a fake backward: the fake
  oscillation's, what the paper's attacker follows) and the gradient of the true forward
  (:func:`~spikeshield.neurons.true_gradient`). 1 means the attacker is not misled; near 0 or
  below, it follows a direction unrelated to the model's own — the masking, directly. Without a
  fake backward both are the same gradient (cosine 1), a control.

A random phase is drawn per sample from the sample's own stream (:mod:`spikeshield.streams`), the
same draw for both gradients and for both traces. :func:`run_oscillation_analysis` writes
``oscillation.json``, ``oscillation_traces.png`` and ``oscillation_cosine.png``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield.analysis.plots import save_figure, subplots
from spikeshield.attacks.gradient import BPTT, GradientSpec, has_fake_gradient
from spikeshield.attacks.oracle import Oracle, cross_entropy_loss
from spikeshield.errors import UsageError
from spikeshield.io import atomic_write_json, ensure_dir, refuse_to_replace
from spikeshield.neurons import OscillatingLIFNode
from spikeshield.streams import SampleStreams, sample_streams

JSON_FILE = "oscillation.json"
TRACES_FILE = "oscillation_traces.png"
COSINE_FILE = "oscillation_cosine.png"
#: neurons whose membrane traces are drawn
TRACE_NEURONS = 4
TRUE_FORWARD = GradientSpec(true_forward=True)


def oscillating_layers(model: nn.Module) -> list[OscillatingLIFNode]:
    return [m for m in model.modules() if isinstance(m, OscillatingLIFNode)]


@contextmanager
def without_oscillation(layer: OscillatingLIFNode) -> Iterator[None]:
    """Within this block ``layer`` does not oscillate (A = 0: a plain LIF); always restored."""
    amplitude = layer.amplitude
    layer.amplitude = 0.0
    try:
        yield
    finally:
        layer.amplitude = amplitude


def _streams(seed: int, index: Sequence[int] | Tensor) -> SampleStreams:
    return SampleStreams.keyed(seed, index, "oscillation-analysis")


def membrane_traces(
    model: nn.Module, image: Tensor, *, seed: int = 0, count: int = TRACE_NEURONS
) -> dict[str, Any]:
    """``H[t]`` and spikes of ``count`` neurons of the first oscillating layer on ``image``
    (``[1, C, H, W]``), with and without the oscillation, and the threshold they meet; lists
    over neurons of lists over the T steps (potentials dimensionless, V_th = 1 by default)."""
    layer = oscillating_layers(model)[0]
    recorded: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: recorded.append(args[0].detach()))
    try:
        with torch.no_grad(), sample_streams(_streams(seed, [0])):
            model(image)
    finally:
        handle.remove()
    current = recorded[0]  # [T, 1, ...]: the layer's input current, the same for both runs
    with torch.no_grad(), sample_streams(_streams(seed, [0])):
        on = layer.run(current, record=True)
    with torch.no_grad(), sample_streams(_streams(seed, [0])), without_oscillation(layer):
        off = layer.run(current, record=True)
    with sample_streams(_streams(seed, [0])):
        state = layer.initial_state(current[0])  # the phase the runs drew (their first draw)
    assert on.h is not None and off.h is not None
    h_on, h_off = on.h.flatten(1), off.h.flatten(1)  # [T, N]
    s_on, s_off = on.spikes.flatten(1), off.spikes.flatten(1)
    picked = (h_off.max(0).values - layer.v_threshold).abs().argsort()[:count]
    steps = current.shape[0]
    like = {"dtype": current.dtype, "device": current.device}
    osc = torch.stack(
        [
            torch.as_tensor(layer._oscillation(t, state, backward=False), **like).expand_as(current[0])
            for t in range(steps)
        ]
    ).flatten(1)[:, picked]
    threshold = layer.v_threshold + (osc if layer.target == "threshold" else torch.zeros_like(osc))

    def columns(values: Tensor) -> list[list[float]]:
        return [[float(v) for v in values[:, i]] for i in range(values.shape[1])]

    return {
        "layer": 1,  # the first oscillating layer
        "layer_neurons": int(h_on.shape[1]),
        "neurons": [int(i) for i in picked],
        "target": layer.target,
        "steps": list(range(steps)),
        "with_oscillation": {"potential": columns(h_on[:, picked]), "spikes": columns(s_on[:, picked])},
        "without_oscillation": {"potential": columns(h_off[:, picked]), "spikes": columns(s_off[:, picked])},
        "oscillation": columns(osc),
        "threshold": columns(threshold),
        "changed_spike_trains": float((s_on != s_off).any(0).float().mean()),
    }


def gradient_cosines(
    model: nn.Module, x: Tensor, y: Tensor, *, seed: int = 0, batch_size: int = 256
) -> Tensor:
    """Per sample ``[B]``: cosine similarity of the input gradient of the cross-entropy loss as
    the model hands it out (BPTT through its own backward) and through its true forward; NaN
    where either gradient is zero. ``x`` ``[B, ...]`` in [0, 1], ``y`` ``[B]``."""
    out = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        index = torch.arange(start, start + len(xb))
        grads = [
            Oracle(model, spec).loss_and_grad(xb, yb, cross_entropy_loss, _streams(seed, index))[1].flatten(1)
            for spec in (BPTT, TRUE_FORWARD)
        ]
        norms = grads[0].norm(dim=1) * grads[1].norm(dim=1)
        cos = (grads[0] * grads[1]).sum(1) / norms.clamp_min(1e-30)
        out.append(torch.where(norms > 0, cos.clamp(-1.0, 1.0), torch.full_like(cos, math.nan)).cpu())
    return torch.cat(out)


def _summary(cosines: Tensor) -> dict[str, Any]:
    kept = [float(c) for c in cosines if not math.isnan(float(c))]
    summary: dict[str, Any] = {"samples": len(cosines), "zero_gradient": len(cosines) - len(kept)}
    if not kept:
        return {**summary, "mean": None, "median": None, "min": None, "max": None, "negative": None}
    return {
        **summary,
        "mean": statistics.fmean(kept),
        "median": statistics.median(kept),
        "min": min(kept),
        "max": max(kept),
        "negative": sum(c < 0 for c in kept) / len(kept),
    }


def analyze_run(
    run_dir: str | Path,
    *,
    samples: int = 200,
    seed: int = 0,
    data_root: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Traces and gradient cosines of one trained run on its first ``samples`` test samples (the
    fixed subset ``evaluate --limit`` uses).

    Raises:
        UsageError: the run has no oscillating neurons.
    """
    from spikeshield.runs import load_run
    from spikeshield.training import resolve_device

    dev = resolve_device(device)
    run = load_run(run_dir, limit=samples, data_root=data_root, device=dev)
    model, config = run.model, run.config
    if not oscillating_layers(model):
        raise UsageError(
            f"oscillation analysis: {run_dir} has no oscillating neurons (neuron {config.neuron!r}); "
            "it needs a run trained with 'oscillating-lif'"
        )
    x, y = run.test_set.tensors()
    x, y = x.to(dev), y.to(dev)
    cosines = gradient_cosines(model, x, y, seed=seed)
    return {
        "run": str(run_dir),
        "label": Path(run_dir).name,
        "neuron": config.neuron,
        "neuron_options": config.neuron_options,
        "model": config.model,
        "dataset": config.dataset,
        "time_steps": config.time_steps,
        "fake_backward": has_fake_gradient(model),
        "samples": len(x),
        "seed": seed,
        "cosine": _summary(cosines),
        "cosines": [float(c) for c in cosines],
        "traces": membrane_traces(model, x[:1], seed=seed),
    }


def findings(results: list[dict[str, Any]]) -> list[str]:
    """What the numbers say, one line per run."""
    lines = []
    for r in results:
        c = r["cosine"]
        traces = (
            f"the oscillation changes {r['traces']['changed_spike_trains']:.0%} of layer 1's spike trains"
        )
        if c["median"] is None:
            lines.append(f"{r['label']}: every input gradient is zero; {traces}")
            continue
        what = (
            "fake backward"
            if r["fake_backward"]
            else "no fake backward: the handed-out gradient is the true one"
        )
        lines.append(
            f"{r['label']} ({what}): cosine(handed-out, true input gradient) over {c['samples']} test "
            f"samples: median {c['median']:.3f}, mean {c['mean']:.3f}, min {c['min']:.3f}, "
            f"{c['negative']:.0%} negative; {traces}"
        )
    return lines


def run_oscillation_analysis(
    runs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    note: str = "",
    **options: Any,
) -> dict[str, Any]:
    """:func:`analyze_run` on every run; writes ``oscillation.json``, ``oscillation_traces.png``
    and ``oscillation_cosine.png`` under ``out_dir`` (an earlier analysis there is refused unless
    ``overwrite``). ``note`` (e.g. "REDUCED (CPU budget)") goes into the JSON and the titles."""
    if not runs:
        raise UsageError("oscillation analysis needs at least one run folder (--run DIR)")
    out = Path(out_dir)
    refuse_to_replace(
        [out / JSON_FILE, out / TRACES_FILE, out / COSINE_FILE], overwrite=overwrite, what="analysis"
    )
    results = [analyze_run(r, **options) for r in runs]
    ensure_dir(out)
    summary = {
        "format": "spikeshield-oscillation",
        "note": note,
        "runs": results,
        "findings": findings(results),
    }
    atomic_write_json(out / JSON_FILE, summary)
    figures = [plot_traces(summary, out / TRACES_FILE), plot_cosines(summary, out / COSINE_FILE)]
    return {**summary, "written": [str(out / JSON_FILE)] + [str(f) for f in figures if f]}


def _title(summary: dict[str, Any], text: str) -> str:
    return text + (f"\n{summary['note']}" if summary.get("note") else "")


def plot_traces(summary: dict[str, Any], path: Path) -> Path | None:
    """One row per run, one panel per traced neuron: H[t] with (solid) and without (dashed) the
    oscillation, the threshold (grey), spikes as triangles."""
    results = summary["runs"]
    count = max(len(r["traces"]["neurons"]) for r in results)
    made = subplots(len(results), count, figsize=(3.2 * count, 2.8 * len(results)), squeeze=False)
    if made is None:
        return None
    fig, axes = made
    for row, r in enumerate(results):
        tr = r["traces"]
        for col, neuron in enumerate(tr["neurons"]):
            ax = axes[row][col]
            for key, style, label in (
                ("with_oscillation", "-o", "with oscillation"),
                ("without_oscillation", "--s", "without"),
            ):
                potential, spikes = tr[key]["potential"][col], tr[key]["spikes"][col]
                (line,) = ax.plot(tr["steps"], potential, style, label=label, markersize=4)
                fired = [t for t, s in zip(tr["steps"], spikes, strict=True) if s > 0]
                ax.plot(fired, [max(potential) + 0.1] * len(fired), "v", color=line.get_color())
            ax.step(tr["steps"], tr["threshold"][col], where="mid", color="grey", label="threshold")
            ax.set_title(f"{r['label']}: neuron {neuron}", fontsize=8)
            ax.set_xlabel("t (step)", fontsize=8)
            ax.grid(alpha=0.3)
        axes[row][0].set_ylabel(f"H[t], layer {tr['layer']}", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        _title(
            summary, "Membrane potential before firing, with and without the oscillation (first test image)"
        ),
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_cosines(summary: dict[str, Any], path: Path) -> Path | None:
    """Histogram per run of the cosine between the handed-out and the true input gradient."""
    results = summary["runs"]
    made = subplots(1, 1, figsize=(7.0, 4.0))
    if made is None:
        return None
    fig, ax = made
    bins = [i / 20 - 1 for i in range(41)]
    for r in results:
        values = [c for c in r["cosines"] if not math.isnan(c)]
        median = r["cosine"]["median"]
        label = r["label"] + (f" (median {median:.2f})" if median is not None else "")
        ax.hist(values, bins=bins, alpha=0.5, label=label)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("cosine(handed-out input gradient, true input gradient)")
    ax.set_ylabel("test samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    first = results[0]
    ax.set_title(
        _title(
            summary,
            f"What the attacker is handed: {first['dataset']} / {first['model']}, "
            f"{first['samples']} test samples",
        ),
        fontsize=9,
    )
    fig.tight_layout()
    return save_figure(fig, path)
