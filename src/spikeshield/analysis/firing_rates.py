"""Firing rates: of single neurons against their leak, and of trained models on data.

:func:`model_firing_rates` measures the mean firing rate of every spiking layer of a trained
model on a dataset (the pipeline records it with every evaluation, so that robustness can be
plotted against it). The rest of this module is the neuron-level analysis: IF, exponential LIF
(rate vs τ) and linear-leak LIF (rate vs λ).

Che et al. (ICACT 2023) claim the firing rate of a linear-leak LIF neuron is inversely related to
its leak parameter. This analysis simulates each neuron for constant and for random input
currents, puts the closed-form rate beside the simulated one, and reports where the inverse
relation holds and where it stops holding.

Closed forms (V_th = 1 by default, hard reset to 0, rest 0, constant input I):

* IF: V_n = n·I, so it fires every n* = ⌈V_th/I⌉ steps: rate 1/⌈V_th/I⌉ (soft reset: I/V_th).
* exponential LIF (decay_input): V_n = I(1 − (1 − 1/τ)^n); it fires iff I > V_th, every
  n* = ⌈ln(1 − V_th/I) / ln(1 − 1/τ)⌉ steps.
* linear LIF with its floor at rest: V_1 = I, V_n = I + (n − 1)(I − λ); it fires iff I > λ
  (and at every step once I ≥ V_th), every n* = 1 + ⌈(V_th − I)/(I − λ)⌉ steps. Without a floor
  and with soft reset, the rate is (I − λ)/V_th exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield.attacks.evaluate import seeded
from spikeshield.data.base import ArrayDataset
from spikeshield.errors import UsageError
from spikeshield.io import atomic_write_json, ensure_dir, refuse_to_replace
from spikeshield.neurons import build_neuron
from spikeshield.neurons.base import SpikingNeuron
from spikeshield.preserve import preserved
from spikeshield.streams import SampleStreams, derive_seed, sample_streams

# 0.0173 … 1.9673: off the 0.05 lattice of the leaks, so no level sits exactly on a firing
# threshold (V_th − I)/(I − λ) ∈ ℕ, where float rounding alone would decide the spike
DEFAULT_CURRENTS = tuple(round(0.0173 + 0.05 * i, 4) for i in range(40))
DEFAULT_LEAKS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
DEFAULT_TAUS = (1.5, 2.0, 4.0, 8.0, 16.0)


def spiking_layers(model: nn.Module) -> list[tuple[str, SpikingNeuron]]:
    """The model's spiking neuron modules, outermost only, in registration order."""
    found: list[tuple[str, SpikingNeuron]] = []
    for name, module in model.named_modules():
        inside = any(name.startswith(f"{outer}.") for outer, _ in found)
        if isinstance(module, SpikingNeuron) and not inside:
            found.append((name, module))
    return found


@torch.no_grad()
def model_firing_rates(
    model: nn.Module,
    dataset: ArrayDataset,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Measured firing rate of a model's spiking layers on the clean samples of ``dataset``.

    For layer l with N_l neurons per sample, spikes S_l of shape ``[T, B, ...]`` over the B
    samples and T time steps::

        r_l = Σ S_l / (T · B · N_l)          (spikes per neuron per time step, in [0, 1])
        r   = Σ_l Σ S_l / Σ_l (T · B · N_l)  (every spiking neuron counted once)

    Measured in eval mode without gradients; a stochastic model (Poisson encoder, noisy
    neurons) draws sample i's noise from its own stream keyed by ``seed`` and i, so the figure
    does not depend on ``batch_size``. The model is left exactly as it was.

    Returns:
        ``{"mean": r, "spikes_per_sample": Σ_l Σ S_l / B, "samples": B, "time_steps": T,
        "neurons": Σ_l N_l, "layers": [{"name", "neurons", "rate"}, ...]}``.

    Raises:
        UsageError: the model has no spiking neuron, or ``dataset`` is empty.
    """
    layers = spiking_layers(model)
    if not layers:
        raise UsageError("the model has no spiking neuron layer: there is no firing rate to measure")
    if len(dataset) == 0:
        raise UsageError("cannot measure firing rates on an empty dataset")
    totals = {name: [0.0, 0, 0] for name, _ in layers}  # spikes, neurons per sample, T

    def record(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, spikes: Tensor) -> None:
            total = totals[name]
            total[0] += float(spikes.sum(dtype=torch.float64))
            total[1], total[2] = spikes[0, 0].numel(), spikes.shape[0]

        return hook

    dev = torch.device(device)
    start = 0
    with preserved(model):
        model.eval()
        handles = [module.register_forward_hook(record(name)) for name, module in layers]
        try:
            for x, _ in dataset.batches(batch_size, device=dev):
                streams = SampleStreams.keyed(seed, range(start, start + len(x)), "firing-rate")
                with seeded(derive_seed(seed, "firing-rate"), dev), sample_streams(streams):
                    model(x)
                start += len(x)
        finally:
            for handle in handles:
                handle.remove()
    return _rate_summary(totals, start)


def _rate_summary(totals: dict[str, list[Any]], samples: int) -> dict[str, Any]:
    spikes = sum(t[0] for t in totals.values())
    steps = max(t[2] for t in totals.values())
    slots = sum(t[1] * t[2] for t in totals.values()) * samples
    return {
        "mean": spikes / slots,
        "spikes_per_sample": spikes / samples,
        "samples": samples,
        "time_steps": steps,
        "neurons": sum(t[1] for t in totals.values()),
        "layers": [
            {"name": name, "neurons": t[1], "rate": t[0] / (t[1] * t[2] * samples)}
            for name, t in totals.items()
        ],
    }


def if_rate(current: float, v_threshold: float = 1.0) -> float:
    """Hard-reset IF under constant input."""
    if current <= 0:
        return 0.0
    return 1.0 / math.ceil(v_threshold / current - 1e-12)


def exponential_lif_rate(current: float, tau: float, v_threshold: float = 1.0) -> float:
    """Hard-reset exponential LIF (decay_input form) under constant input."""
    if current <= v_threshold:
        return 0.0
    steps = math.ceil(math.log(1.0 - v_threshold / current) / math.log(1.0 - 1.0 / tau) - 1e-12)
    return 1.0 / max(steps, 1)


def linear_lif_rate(current: float, leak: float, v_threshold: float = 1.0, floor: bool = True) -> float:
    """Linear-leak LIF under constant input: hard reset with the floor at rest, or (floor=False)
    soft reset without a floor, whose rate is exactly (I − λ)/V_th."""
    if not floor:
        return min(max((current - leak) / v_threshold, 0.0), 1.0)
    if current >= v_threshold:
        return 1.0
    if current <= leak:
        return 0.0
    return 1.0 / (1 + math.ceil((v_threshold - current) / (current - leak) - 1e-12))


def simulate_rates(
    neuron: str, currents: torch.Tensor, steps: int, noise_std: float = 0.0, seed: int = 0, **options: Any
) -> torch.Tensor:
    """Mean firing rate over ``steps`` for each input level (constant, or i.i.d. Gaussian around it)."""
    n = build_neuron(neuron, **options).double()
    drive = currents.double().view(1, -1).expand(steps, -1)
    if noise_std > 0:
        gen = torch.Generator().manual_seed(seed)
        drive = drive + noise_std * torch.randn(drive.shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        return n(drive.unsqueeze(1).contiguous()).mean(dim=(0, 1))


def rate_vs_leak(
    currents: Sequence[float] = DEFAULT_CURRENTS,
    leaks: Sequence[float] = DEFAULT_LEAKS,
    taus: Sequence[float] = DEFAULT_TAUS,
    steps: int = 2000,
    noise_std: float = 0.3,
    seed: int = 0,
) -> dict[str, Any]:
    """Simulated and analytic rates for IF, exponential LIF over ``taus`` and linear LIF over
    ``leaks``; constant inputs, and Gaussian inputs of std ``noise_std`` around each level."""
    if steps < 10:
        raise UsageError(f"steps must be >= 10, got {steps}")
    if not currents or not leaks or not taus:
        raise UsageError("currents, leaks and taus must not be empty")
    if any(t <= 1 for t in taus):
        raise UsageError(f"every tau must be > 1, got {list(taus)}")
    if any(lam < 0 for lam in leaks):
        raise UsageError(f"every leak must be >= 0, got {list(leaks)}")
    grid = torch.tensor(list(currents), dtype=torch.float64)
    xs = [float(c) for c in currents]

    def curve(neuron: str, analytic: list[float] | None, **options: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"simulated": simulate_rates(neuron, grid, steps, **options).tolist()}
        if analytic is not None:
            out["analytic"] = analytic
        out["random_input"] = simulate_rates(
            neuron, grid, steps, noise_std=noise_std, seed=seed, **options
        ).tolist()
        return out

    result: dict[str, Any] = {
        "currents": xs,
        "steps": steps,
        "noise_std": noise_std,
        "v_threshold": 1.0,
        "reset": "hard to 0 (linear LIF also: soft reset without floor)",
        "if": curve("if", [if_rate(c) for c in xs]),
        "lif": {str(t): curve("lif", [exponential_lif_rate(c, t) for c in xs], tau=t) for t in taus},
        "linear_lif": {
            str(lam): curve("linear-lif", [linear_lif_rate(c, lam) for c in xs], leak=lam) for lam in leaks
        },
        "linear_lif_soft_no_floor": {
            str(lam): curve(
                "linear-lif",
                [linear_lif_rate(c, lam, floor=False) for c in xs],
                leak=lam,
                floor=None,
                reset="soft",
            )
            for lam in leaks
        },
    }
    result["findings"] = findings(result, leaks, taus)
    return result


def _max_gap(curve: dict[str, Any]) -> float:
    return max(abs(a - b) for a, b in zip(curve["simulated"], curve["analytic"]))


def _ranges(values: list[float]) -> str:
    return f"{min(values):g}–{max(values):g}" if values else "none"


def findings(result: dict[str, Any], leaks: Sequence[float], taus: Sequence[float]) -> dict[str, Any]:
    """Where the rate falls, stays or rises as the leak parameter grows, from the data."""
    xs = result["currents"]
    lin = [result["linear_lif"][str(lam)] for lam in leaks]

    def trend(curves: list[dict[str, Any]], key: str) -> dict[str, Any]:
        falls, flat, rises = [], [], []
        for i, c in enumerate(xs):
            rates = [cv[key][i] for cv in curves]
            if any(b > a + 1e-9 for a, b in itertools.pairwise(rates)):
                rises.append(c)
            elif rates[-1] < rates[0] - 1e-9:
                falls.append(c)
            else:
                flat.append(c)
        return {"falls": falls, "unchanged": flat, "rises": rises}

    trends = {
        "linear_lif_vs_leak_constant_input": trend(lin, "simulated"),
        "linear_lif_vs_leak_random_input": trend(lin, "random_input"),
        "lif_vs_tau_constant_input": trend([result["lif"][str(t)] for t in taus], "simulated"),
        "lif_vs_tau_random_input": trend([result["lif"][str(t)] for t in taus], "random_input"),
    }
    lines = []
    for name, t in trends.items():
        what, _, inputs = name.partition("_vs_")
        param, _, kind = inputs.partition("_")
        lines.append(
            f"{what} as {param} grows ({kind.replace('_', ' ')}): rate falls for I in {_ranges(t['falls'])} "
            f"({len(t['falls'])} levels), unchanged for {len(t['unchanged'])} levels "
            f"({_ranges(t['unchanged'])}), rises for {len(t['rises'])}"
        )
    return {
        **trends,
        "max_gap_simulated_vs_analytic": {
            "if": _max_gap(result["if"]),
            "lif": max(_max_gap(result["lif"][str(t)]) for t in taus),
            "linear_lif": max(_max_gap(cv) for cv in lin),
            "linear_lif_soft_no_floor": max(
                _max_gap(result["linear_lif_soft_no_floor"][str(lam)]) for lam in leaks
            ),
        },
        "summary": lines,
    }


def plot_rate_vs_leak(result: dict[str, Any], path: str | Path) -> Path | None:
    """Four panels: linear LIF vs I (per λ), linear LIF with random input, exponential LIF vs I
    (per τ), and rate against λ at a few input levels (the inverse relation)."""
    from spikeshield.analysis.plots import save_figure, subplots

    made = subplots(1, 4, figsize=(19, 4.2))
    if made is None:
        return None
    fig, axes = made
    xs = result["currents"]
    ax = axes[0]
    for lam, cv in result["linear_lif"].items():
        line = ax.plot(xs, cv["simulated"], "o", ms=3, label=f"λ={lam} simulated")[0]
        ax.plot(xs, cv["analytic"], "-", color=line.get_color(), lw=1, alpha=0.8)
    ax.plot(xs, result["if"]["simulated"], "k--", lw=1, label="IF")
    ax.set_title("linear LIF, constant input (lines: closed form)")
    ax = axes[1]
    for lam, cv in result["linear_lif"].items():
        ax.plot(xs, cv["random_input"], "-", label=f"λ={lam}")
    ax.set_title(f"linear LIF, input I + N(0, {result['noise_std']}²)")
    ax = axes[2]
    for tau, cv in result["lif"].items():
        line = ax.plot(xs, cv["simulated"], "o", ms=3, label=f"τ={tau}")[0]
        ax.plot(xs, cv["analytic"], "-", color=line.get_color(), lw=1, alpha=0.8)
    ax.set_title("exponential LIF, constant input")
    for ax in axes[:3]:
        ax.set_xlabel("input current I (V_th = 1)")
        ax.set_ylabel("spikes per step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[3]
    leaks = [float(k) for k in result["linear_lif"]]
    for target in (0.3, 0.5, 0.7, 0.9, 1.2):
        i = min(range(len(xs)), key=lambda j: abs(xs[j] - target))
        line = ax.plot(
            leaks,
            [result["linear_lif"][k]["simulated"][i] for k in result["linear_lif"]],
            "o-",
            label=f"I={xs[i]:g}",
        )[0]
        ax.plot(
            leaks,
            [result["linear_lif"][k]["random_input"][i] for k in result["linear_lif"]],
            "x:",
            color=line.get_color(),
            alpha=0.7,
        )
    ax.set_title("rate vs leak λ (o: constant, x: random input)")
    ax.set_xlabel("leak λ")
    ax.set_ylabel("spikes per step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def run_rate_vs_leak(out_dir: str | Path, *, overwrite: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Compute, write ``rate_vs_leak.json`` and ``rate_vs_leak.png`` under ``out_dir`` (an earlier
    analysis there is refused unless ``overwrite``). Returns the result, to which ``written`` is
    added: the files written (no PNG without matplotlib)."""
    refuse_to_replace(
        [Path(out_dir) / "rate_vs_leak.json", Path(out_dir) / "rate_vs_leak.png"],
        overwrite=overwrite,
        what="analysis",
    )
    out = ensure_dir(out_dir)
    result = rate_vs_leak(**kwargs)
    atomic_write_json(out / "rate_vs_leak.json", result)
    figure = plot_rate_vs_leak(result, out / "rate_vs_leak.png")
    result["written"] = [str(out / "rate_vs_leak.json"), *([str(figure)] if figure else [])]
    return result
