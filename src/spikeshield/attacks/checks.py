"""Honesty checks run with every robustness evaluation.

Each check has a status (``pass``, ``fail``, ``skipped``) and a category:

- ``consistency``: ε = 0 (and noise level 0) reproduce clean accuracy *exactly*, sample by
  sample. A failure means the evaluation itself is wrong.
- ``masking``: the signs of gradient masking / obfuscated gradients (Athalye, Carlini & Wagner
  2018; Carlini et al. 2019, "On evaluating adversarial robustness"): accuracy not
  non-increasing in ε for an iterative attack; a single-step attack beating an iterative one;
  a black-box or transfer attack beating the white-box ones; more steps or restarts *helping*
  the model; accuracy not reaching ~0 (≤ 5 %) at a large ε (L∞ 0.5, L2 0.5·√d) with PGD from
  the clean point (no random start, so any success is the gradient's). Any failure sets
  ``gradient_masking_suspected``.
- ``convergence``: more steps lowered accuracy beyond noise — the reported attack had not
  converged (a warning: report the stronger one).

"Beyond noise" means by more than ``2·sqrt((a(1−a) + b(1−b))/n) + 1/n`` for accuracies a, b
on n samples (about two standard errors of their difference).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield.attacks.base import Attack, build_attack
from spikeshield.attacks.gradient import AttackerGradient
from spikeshield.data.base import ArrayDataset

#: accuracy at the large-ε probe above which gradient masking is suspected
LARGE_EPS_MAX_ACCURACY = 0.05


def tolerance(a: float, b: float, n: int) -> float:
    """The noise allowance when comparing accuracies ``a`` and ``b`` measured on ``n`` samples."""
    return 2.0 * math.sqrt((a * (1 - a) + b * (1 - b)) / n) + 1.0 / n


def _check(name: str, category: str, status: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"check": name, "category": category, "status": status, "detail": detail, **extra}


def _head(dataset: ArrayDataset, count: int) -> ArrayDataset:
    """The first ``count`` samples (the same ones the main records start with)."""
    if count >= len(dataset):
        return dataset
    return ArrayDataset(
        dataset.images[:count],
        dataset.labels[:count],
        scale=dataset.scale,
        info=dataset.info,
        meta=dataset.meta,
    )


def _acc(correct: Tensor) -> float:
    return int(correct.sum()) / correct.numel()


def run_checks(
    *,
    model: nn.Module,
    dataset: ArrayDataset,
    records: Sequence[Any],
    clean_correct: Tensor,
    plan: Sequence[tuple[int, Attack, Sequence[float]]],
    attacker: AttackerGradient,
    sweep: Callable[[ArrayDataset, list[tuple[int, Attack, list[float]]], str], dict[str, Any]],
    check_samples: int,
    large_eps: Callable[[str], float],
    stochastic: bool,
) -> dict[str, Any]:
    """All checks on the main records, plus the extra budget and large-ε runs on a subset."""
    n = len(clean_correct)
    clean_acc = _acc(clean_correct)
    checks: list[dict[str, Any]] = []
    warnings: list[str] = []
    attack_records = [r for r in records if r.info["kind"] == "attack"]
    noise_records = [r for r in records if r.info["kind"] == "noise"]

    # ---- consistency: ε = 0 and noise level 0 are the clean accuracy, sample by sample
    zero = [r for r in attack_records if r.info["eps"] == 0] + [
        r for r in noise_records if r.info["level"] == 0
    ]
    if zero:
        bad = [r for r in zero if not torch.equal(r.correct, clean_correct)]
        label = ", ".join(sorted({r.info.get("attack") or r.info.get("noise") for r in zero}))
        if bad:
            detail = "; ".join(
                f"{r.info.get('attack') or r.info.get('noise')}: {_acc(r.correct):.4f} "
                f"vs clean {clean_acc:.4f}"
                for r in bad
            )
            checks.append(_check("zero-budget-equals-clean", "consistency", "fail", detail))
            warnings.append(
                f"evaluation inconsistent: a zero budget does not reproduce clean accuracy ({detail})"
            )
        else:
            checks.append(
                _check(
                    "zero-budget-equals-clean", "consistency", "pass", f"{label} at 0 = clean {clean_acc:.4f}"
                )
            )
    else:
        checks.append(
            _check("zero-budget-equals-clean", "consistency", "skipped", "no zero budget was evaluated")
        )

    # ---- monotone in ε for iterative attacks
    iterative = [(i, t) for i, t, _ in plan if t.iterative and t.kind in ("white-box", "ensemble")]
    by_attack: dict[int, list[Any]] = {}
    index = 0
    for i, _t, levels in plan:
        by_attack[i] = attack_records[index : index + len(levels)]
        index += len(levels)
    if iterative:
        problems, seen = [], []
        for i, t in iterative:
            recs = sorted(by_attack[i], key=lambda r: r.info["eps"])
            seen.append(t.name)
            for lo, hi in itertools.pairwise(recs):
                a, b = _acc(lo.correct), _acc(hi.correct)
                if b > a + tolerance(a, b, n):
                    problems.append(
                        f"{t.name}: {b:.4f} at eps {hi.info['eps']:g} > {a:.4f} at {lo.info['eps']:g}"
                    )
        checks.append(
            _check(
                "accuracy-non-increasing-in-eps",
                "masking",
                "fail" if problems else "pass",
                "; ".join(problems) or f"{', '.join(seen)} non-increasing within noise",
            )
        )
    else:
        checks.append(_check("accuracy-non-increasing-in-eps", "masking", "skipped", "no iterative attack"))

    # ---- single-step vs iterative, black-box vs white-box, at each shared ε > 0
    def accs(kind_test: Callable[[Attack], bool]) -> dict[tuple[str, float], list[tuple[str, float]]]:
        out: dict[tuple[str, float], list[tuple[str, float]]] = {}
        for i, t, _levels in plan:
            if kind_test(t):
                for r in by_attack[i]:
                    if r.info["eps"] > 0:
                        out.setdefault((r.info["norm"], r.info["eps"]), []).append((t.name, _acc(r.correct)))
        return out

    single = accs(lambda t: t.kind == "white-box" and not t.iterative)
    multi = accs(lambda t: t.kind in ("white-box", "ensemble") and t.iterative)
    blind = accs(lambda t: t.kind in ("black-box", "transfer"))
    white = accs(lambda t: t.kind in ("white-box", "ensemble"))
    for name, weak, strong, label in (
        ("single-step-not-better-than-iterative", single, multi, "single-step"),
        ("black-box-not-better-than-white-box", blind, white, "black-box/transfer"),
    ):
        shared = sorted(set(weak) & set(strong))
        if not shared:
            checks.append(
                _check(name, "masking", "skipped", f"no {label} and comparison attack at a shared eps > 0")
            )
            continue
        problems = []
        for key in shared:
            best_strong = min(strong[key], key=lambda p: p[1])
            for attack_name, a in weak[key]:
                if a < best_strong[1] - tolerance(a, best_strong[1], n):
                    problems.append(
                        f"{attack_name} {a:.4f} < {best_strong[0]} {best_strong[1]:.4f} "
                        f"at eps {key[1]:g} ({key[0]})"
                    )
        checks.append(
            _check(
                name,
                "masking",
                "fail" if problems else "pass",
                "; ".join(problems) or f"at eps {', '.join(f'{k[1]:g}' for k in shared)}",
            )
        )

    # ---- more steps / restarts, and the large-ε probe, on the first check_samples samples
    primary = next(
        (
            (i, t)
            for i, t, _ in plan
            if t.kind in ("white-box", "ensemble") and t.iterative and hasattr(t, "steps")
        ),
        None,
    )
    if primary is None:
        for name in (
            "more-steps-do-not-help-the-model",
            "more-restarts-do-not-help-the-model",
            "large-eps-reaches-zero",
        ):
            checks.append(_check(name, "masking", "skipped", "no iterative gradient attack"))
    else:
        i, template = primary
        subset = _head(dataset, check_samples)
        k = len(subset)
        candidates = [r for r in by_attack[i] if r.info["eps"] > 0]
        extra: list[tuple[int, Attack, list[float]]] = []
        if candidates:
            ref = min(candidates, key=lambda r: abs(_acc(r.correct) - clean_acc / 2))
            eps = ref.info["eps"]
            base_acc = _acc(ref.correct[:k])
            extra.append((0, template.with_options(steps=2 * template.steps), [eps]))
            if hasattr(template, "restarts"):
                extra.append((1, template.with_options(restarts=template.restarts + 1), [eps]))
        probe_eps = large_eps(template.norm)
        probe_steps = max(getattr(template, "steps", 10), 10)
        probe = build_attack("pgd", eps=probe_eps, norm=template.norm, steps=probe_steps, random_start=False)
        extra.append((2, probe, [probe_eps]))
        out = sweep(subset, extra, "budget")
        extra_records = out["records"]
        if candidates:
            more_steps = extra_records[0]
            a = _acc(more_steps.correct)
            tol = tolerance(a, base_acc, k)
            status = "fail" if a > base_acc + tol else "pass"
            detail = (
                f"{template.name} eps {eps:g} on {k} samples: {template.steps} steps {base_acc:.4f}, "
                f"{2 * template.steps} steps {a:.4f}"
            )
            checks.append(_check("more-steps-do-not-help-the-model", "masking", status, detail, accuracy=a))
            if a < base_acc - tol:
                checks.append(_check("attack-converged", "convergence", "fail", detail))
                warnings.append(
                    f"not converged: doubling {template.name}'s steps lowered accuracy beyond noise "
                    f"({detail}); "
                    "report the stronger attack"
                )
            else:
                checks.append(_check("attack-converged", "convergence", "pass", detail))
            if hasattr(template, "restarts"):
                more_restarts = extra_records[1]
                a = _acc(more_restarts.correct)
                status = "fail" if a > base_acc + tolerance(a, base_acc, k) else "pass"
                detail = (
                    f"{template.name} eps {eps:g} on {k} samples: "
                    f"{template.restarts} restart(s) {base_acc:.4f}, "
                    f"{template.restarts + 1} restarts {a:.4f}"
                )
                checks.append(
                    _check("more-restarts-do-not-help-the-model", "masking", status, detail, accuracy=a)
                )
            else:
                checks.append(
                    _check(
                        "more-restarts-do-not-help-the-model",
                        "masking",
                        "skipped",
                        f"{template.name} has no restarts",
                    )
                )
        else:
            for name in ("more-steps-do-not-help-the-model", "more-restarts-do-not-help-the-model"):
                checks.append(_check(name, "masking", "skipped", "no eps > 0 evaluated"))
        probe_acc = _acc(extra_records[-1].correct)
        checks.append(
            _check(
                "large-eps-reaches-zero",
                "masking",
                "pass" if probe_acc <= LARGE_EPS_MAX_ACCURACY else "fail",
                f"PGD-{probe_steps} without random start, {attacker.name} gradient, eps {probe_eps:g} "
                f"({template.norm}) on {k} samples: accuracy {probe_acc:.4f} "
                f"(must be <= {LARGE_EPS_MAX_ACCURACY})",
                accuracy=probe_acc,
            )
        )

    failed = [c for c in checks if c["status"] == "fail" and c["category"] == "masking"]
    reasons = [f"{c['check']}: {c['detail']}" for c in failed]
    if failed:
        warnings.insert(0, "gradient masking suspected: " + " | ".join(reasons))
    return {
        "checks": checks,
        "gradient_masking_suspected": bool(failed),
        "reasons": reasons,
        "warnings": warnings,
    }
