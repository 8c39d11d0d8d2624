"""Robustness evaluation: attacks and noise over a test set, batched, with honesty checks.

:func:`evaluate_robustness` runs every attack at every ε and every corruption at every level
on the same samples, one batch at a time (only one batch's graph is ever alive), and returns
a JSON-able record: clean accuracy, one record per attack and level with every setting
(gradient, steps, step size, ε, norm, restarts, EOT samples, seed), the honesty checks of
:mod:`spikeshield.attacks.checks` and a "gradient masking suspected" verdict.

Conventions:

- **Robust accuracy** counts a sample only if it is classified correctly both clean and on
  every adversarial point tried for it (AutoAttack's convention). Samples misclassified clean
  are not attacked. With ``adaptive`` gradients, each gradient member attacks the samples all
  earlier members failed on: the per-sample worst case.
- **Stochastic models** (Poisson encoder, noisy neurons, random oscillation phase): every
  prediction of a batch (clean, noisy, adversarial) is made under the same random seed, so
  ε = 0 reproduces clean accuracy exactly and comparisons are paired. Attacks on them should
  use EOT (``eot_samples`` > 1); a warning says so otherwise.
- The model must start from a fresh neuron state on every call; this is checked before the
  evaluation (two identical calls must agree, under the same seed for stochastic models).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield.attacks.base import Attack, build_attack, per_sample_norm
from spikeshield.attacks.checks import run_checks
from spikeshield.attacks.gradient import BPTT, AttackerGradient, resolve_gradient
from spikeshield.attacks.noise import CORRUPTIONS, corrupt
from spikeshield.attacks.oracle import Oracle
from spikeshield.data.base import ArrayDataset
from spikeshield.errors import SpikeshieldError, UsageError
from spikeshield.progress import Progress
from spikeshield.runtime import configure_threads


class StateLeakError(SpikeshieldError):
    """The model's output depends on earlier calls: neuron state leaks between calls."""


def derive_seed(*parts: object) -> int:
    """A 31-bit seed derived from ``parts`` (stable across runs and platforms)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global RNG seeded to ``seed``, restoring the caller's RNG after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def check_fresh_state(model: nn.Module, x: Tensor, seed: int = 0) -> dict[str, bool]:
    """Check that ``model`` starts from a fresh state on every call.

    Two identical calls must give identical scores; if they do not, two calls under the same
    random seed must (then the model is stochastic, not leaking state). Raises
    :class:`StateLeakError` otherwise. Returns ``{"stochastic": ...}``.
    """
    first, second = model(x), model(x)
    if torch.equal(first, second):
        return {"stochastic": False}
    device = x.device
    with seeded(seed, device):
        third = model(x)
    model(x)  # a call in between must not matter either
    with seeded(seed, device):
        fourth = model(x)
    if torch.equal(third, fourth):
        return {"stochastic": True}
    raise StateLeakError(
        "the model gives different outputs for the same input under the same random seed: its state "
        "leaks from one call to the next (every call must start from a fresh neuron state)"
    )


@dataclass
class _Record:
    """Accumulates one attack-and-ε (or noise-and-level) over the batches."""

    info: dict[str, Any]
    correct: Tensor
    seconds: float = 0.0
    model_calls: int = 0
    attacked: int = 0
    member_fooled: dict[str, int] | None = None


def _budget_violation(
    x_adv: Tensor, x: Tensor, eps: float, norm: str, bounds: tuple[float, float]
) -> str | None:
    """Why ``x_adv`` is outside the threat model, or None."""
    delta = (x_adv - x).float()
    size = (
        float(delta.abs().flatten(1).max(1).values.max())
        if norm == "linf"
        else float(per_sample_norm(delta).max())
    )
    if size > eps * (1 + 1e-5) + 1e-5:
        return f"perturbation of size {size:.6g} exceeds eps = {eps:g} ({norm})"
    low, high = bounds
    if float(x_adv.min()) < low - 1e-6 or float(x_adv.max()) > high + 1e-6:
        return f"adversarial input leaves the input box [{low}, {high}]"
    return None


def large_eps(norm: str, input_numel: int) -> float:
    """The budget of the large-ε probe: half the pixel range per pixel (L∞ 0.5, L2 0.5·√d)."""
    return 0.5 if norm == "linf" else 0.5 * math.sqrt(input_numel)


def evaluate_robustness(
    model: nn.Module,
    dataset: ArrayDataset,
    *,
    attacks: Sequence[Attack | str] = (),
    eps: Sequence[float] = (),
    noises: Mapping[str, Sequence[float]] | None = None,
    gradient: str | AttackerGradient = "bptt",
    eot_samples: int = 1,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    bounds: tuple[float, float] = (0.0, 1.0),
    checks: bool = True,
    check_samples: int = 500,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset`` under ``attacks`` × ``eps`` and ``noises`` × levels.

    Args:
        attacks: attack names or :class:`Attack` templates (their own ``eps`` is replaced by
            each value of ``eps``).
        eps: budgets; with ``checks`` an ε = 0 run is added to the first gradient attack if
            missing (it must reproduce clean accuracy exactly).
        noises: ``{corruption name: levels}``.
        gradient: the attacker gradient (see :mod:`spikeshield.attacks.gradient`).
        eot_samples: gradient/score passes averaged per query (EOT), for stochastic models.
        seed: every random choice derives from it (recorded).
        checks: run the honesty checks (also the extra budget and large-ε runs on the first
            ``check_samples`` samples).
    """
    configure_threads()  # keeps an explicit choice; see spikeshield.runtime
    device = torch.device(device) if not isinstance(device, torch.device) else device
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    if len(dataset) == 0:
        raise UsageError("the evaluation set is empty")
    templates = [build_attack(a) if isinstance(a, str) else a for a in attacks]
    eps_list = sorted({float(e) for e in eps})
    for e in eps_list:
        if not math.isfinite(e) or e < 0:
            raise UsageError(f"eps must be finite and >= 0, got {e}")
    if templates and not eps_list:
        raise UsageError("attacks were asked for but no eps values were given")
    noise_plan: dict[str, list[float]] = {}
    for name, levels in (noises or {}).items():
        CORRUPTIONS.get(name)  # a clear error for unknown names
        noise_plan[name.strip().lower().replace("_", "-")] = sorted({float(level) for level in levels})
    attacker = resolve_gradient(gradient, model)
    Oracle(model, BPTT, eot_samples, bounds)  # validates eot_samples and bounds

    was_training = model.training
    model.eval()
    try:
        first_x, _ = next(dataset.batches(min(16, len(dataset)), device=device))
        state = check_fresh_state(model, first_x, seed)
        warnings: list[str] = []
        if state["stochastic"] and eot_samples == 1 and templates:
            warnings.append(
                "the model is stochastic but was attacked without EOT (eot_samples = 1): "
                "gradient attacks may be weakened; use --eot N"
            )
        # the zero-budget check runs on the first iterative gradient attack (else the first gradient one)
        gradient_attacks = [t for t in templates if t.uses_gradient]
        zero_for = next(
            (t for t in gradient_attacks if t.iterative), gradient_attacks[0] if gradient_attacks else None
        )
        plan: list[tuple[int, Attack, list[float]]] = []
        for i, template in enumerate(templates):
            levels = list(eps_list)
            if checks and template is zero_for and 0.0 not in levels:
                levels = [0.0, *levels]
            plan.append((i, template, levels))

        start = time.perf_counter()
        n = len(dataset)
        result = _sweep(
            model,
            dataset,
            plan,
            noise_plan,
            attacker,
            eot_samples=eot_samples,
            seed=seed,
            batch_size=batch_size,
            device=device,
            bounds=bounds,
            progress=progress,
            desc="robustness",
        )
        clean_correct = result["clean"]
        records = result["records"]
        log(f"main sweep: {time.perf_counter() - start:.1f}s")
        check_report: dict[str, Any] = {
            "checks": [],
            "gradient_masking_suspected": None,  # unknown: not checked
            "reasons": [],
            "warnings": ["the honesty checks were skipped: gradient masking was not looked for"],
        }
        if checks:
            check_report = run_checks(
                model=model,
                dataset=dataset,
                records=records,
                clean_correct=clean_correct,
                plan=plan,
                attacker=attacker,
                sweep=lambda sub, sub_plan, tag: _sweep(
                    model,
                    sub,
                    sub_plan,
                    {},
                    attacker,
                    eot_samples=eot_samples,
                    seed=derive_seed(seed, tag),
                    batch_size=batch_size,
                    device=device,
                    bounds=bounds,
                    progress=progress,
                    desc=f"check: {tag}",
                ),
                check_samples=check_samples,
                large_eps=lambda norm: large_eps(norm, first_x[0].numel()),
                stochastic=state["stochastic"],
            )
        warnings += check_report.pop("warnings", [])
    finally:
        model.train(was_training)

    return {
        "format": "spikeshield-robustness",
        "format_version": 1,
        "samples": n,
        "clean_accuracy": int(clean_correct.sum()) / clean_correct.numel(),
        "clean_correct": int(clean_correct.sum()),
        "stochastic_model": state["stochastic"],
        **attacker.describe(),
        "eot_samples": eot_samples,
        "seed": seed,
        "batch_size": batch_size,
        "bounds": list(bounds),
        "robust_accuracy_convention": "correct on the clean input and on every adversarial point tried",
        "records": [public_record(r) for r in records],
        **check_report,
        "warnings": warnings,
        "seconds": time.perf_counter() - start,
    }


def public_record(record: _Record) -> dict[str, Any]:
    """The JSON-able form of a record: settings, accuracy with its standard error, costs."""
    total = len(record.correct)
    correct = int(record.correct.sum())
    # an exact fraction, as spikeshield.training.accuracy (and a run's metrics.json)
    acc = int(record.correct.sum()) / record.correct.numel()
    out = dict(record.info)
    out.update(
        accuracy=acc,
        stderr=math.sqrt(acc * (1 - acc) / total),
        correct=correct,
        total=total,
        seconds=record.seconds,
    )
    if record.info["kind"] == "attack":
        out["model_calls_per_attacked_sample"] = (
            record.model_calls / record.attacked if record.attacked else 0.0
        )
        if record.member_fooled is not None:
            out["fooled_by_gradient_member"] = record.member_fooled
    return out


def _attack_info(attack: Attack, attacker: AttackerGradient, eot_samples: int, seed: int) -> dict[str, Any]:
    settings = attack.settings()
    info: dict[str, Any] = {"kind": "attack", **settings}
    info.setdefault("steps", 1)
    info.setdefault("step_size", None)
    info.setdefault("restarts", 1)
    info.setdefault("random_start", False)
    if attack.uses_gradient:
        info.update(attacker.describe())
    else:
        info.update(
            gradient="none (scores only)" if attack.kind == "black-box" else "source model's",
            gradient_members=[],
        )
    info.update(eot_samples=eot_samples, seed=seed)
    return info


def _sweep(
    model: nn.Module,
    dataset: ArrayDataset,
    plan: Sequence[tuple[int, Attack, Sequence[float]]],
    noise_plan: Mapping[str, Sequence[float]],
    attacker: AttackerGradient,
    *,
    eot_samples: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    bounds: tuple[float, float],
    progress: bool | None,
    desc: str,
) -> dict[str, Any]:
    """One pass over ``dataset``: clean, every noise level, every attack at every ε."""
    n = len(dataset)
    clean = torch.zeros(n, dtype=torch.bool)
    records: list[_Record] = []
    noise_index: dict[tuple[str, float], _Record] = {}
    for name, levels in noise_plan.items():
        for level in levels:
            info = {"kind": "noise", "noise": name, "level": level, "seed": seed}
            noise_index[(name, level)] = _Record(info, torch.zeros(n, dtype=torch.bool))
            records.append(noise_index[(name, level)])
    attack_index: dict[tuple[int, float], _Record] = {}
    for i, template, levels in plan:
        for e in levels:
            attack = template.at(e)
            rec = _Record(
                _attack_info(attack, attacker, eot_samples, seed),
                torch.zeros(n, dtype=torch.bool),
                member_fooled={m.name: 0 for m in attacker.members}
                if attacker.adaptive and attack.uses_gradient
                else None,
            )
            attack_index[(i, e)] = rec
            records.append(rec)

    batches = Progress(
        dataset.batches(batch_size, device=device),
        total=-(-n // batch_size),
        desc=desc,
        enabled=progress,
        unit="batch",
    )
    offset = 0
    for b, (x, y) in enumerate(batches):
        rows = slice(offset, offset + len(y))
        offset += len(y)
        eval_seed = derive_seed(seed, "eval", b)

        def predict(inputs: Tensor, eval_seed: int = eval_seed) -> Tensor:
            with seeded(eval_seed, device), torch.no_grad():
                return model(inputs).argmax(1)

        clean_ok = predict(x) == y
        clean[rows] = clean_ok.cpu()
        for (name, level), rec in noise_index.items():
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(derive_seed(seed, "noise", name, level, b))
            rec.correct[rows] = (predict(corrupt(name, x, level, gen)) == y).cpu()
            rec.seconds += time.perf_counter() - t0
        for i, template, levels in plan:
            for e in levels:
                rec = attack_index[(i, e)]
                attack = template.at(e)
                t0 = time.perf_counter()
                ok = clean_ok.clone()
                members = attacker.members if attack.uses_gradient else (BPTT,)
                for g, member in enumerate(members):
                    idx = ok.nonzero().squeeze(1)
                    if len(idx) == 0:
                        break
                    oracle = Oracle(model, member, eot_samples, bounds)
                    gen = torch.Generator().manual_seed(derive_seed(seed, "attack", i, e, g, b))
                    with seeded(derive_seed(seed, "attack-rng", i, e, g, b), device):
                        x_adv = attack.perturb(oracle, x[idx], y[idx], gen).detach()
                    problem = _budget_violation(x_adv, x[idx], e, attack.norm, bounds)
                    if problem:
                        raise RuntimeError(f"attack {attack.name!r} broke its threat model: {problem}")
                    x_full = x.clone()
                    x_full[idx] = x_adv
                    still = predict(x_full) == y
                    if rec.member_fooled is not None:
                        rec.member_fooled[member.name] += int((ok & ~still).sum())
                    ok &= still
                    rec.model_calls += oracle.forward_calls + oracle.gradient_calls
                    rec.attacked += len(idx)
                rec.correct[rows] = ok.cpu()
                rec.seconds += time.perf_counter() - t0
                if batches.enabled:
                    batches.set(attack=f"{attack.name}@{e:g}")
    return {"clean": clean, "records": records}
