"""Gradient-masking checks run with every robustness evaluation.

Each check is one small function in :data:`CHECKS`; each returns one record
``{"check", "category", "status", "detail", ...}`` with status ``pass``, ``fail`` or
``skipped`` and a category:

- ``consistency``: ε = 0 (and noise level 0) reproduce clean accuracy *exactly*, sample by
  sample. A failure means the evaluation itself is wrong.
- ``masking``: the signs of gradient masking / obfuscated gradients (Athalye, Carlini & Wagner,
  ICML 2018; Carlini et al. 2019, "On evaluating adversarial robustness"): a larger ε leaving
  more samples robust for an iterative attack; a single-step attack beating an iterative one; a
  black-box or transfer attack beating the white-box ones; more steps or restarts *helping* the
  model; accuracy not reaching ~0 (≤ 5 %) at a large ε (half the valid input range per value,
  :func:`large_eps`: L∞ 0.5 and L2 0.5·√d for images in [0, 1]) with PGD from the clean point
  (no random start, so any success is the gradient's; a sample counts as fooled at its first
  misclassified iterate and is not queried again, :func:`large_eps_probe`). Any failure sets
  ``gradient_masking_suspected``.
- ``convergence``: doubling the steps or adding a restart fooled significantly more samples —
  the attack had not converged. The evaluation then reports the stronger result (see
  :func:`spikeshield.attacks.evaluate_robustness`).

**Paired comparisons.** Every comparison of two attacks is made on the *same* samples, so it is
a paired test on the discordant samples — those fooled by exactly one of the two. Run A counts
as stronger than run B when both hold:

- *significant*: under "equally strong" each discordant sample is equally likely to go either
  way, so the count fooled only by A is Binomial(discordant, ½); the one-sided exact (McNemar)
  p-value must be below :data:`ALPHA`;
- *material*: the net gain, (fooled only by A − fooled only by B) / n, exceeds the standard
  error ``sqrt(b(1 − b)/n)`` of B's accuracy b — a smaller shift would move B's reported figure
  by less than its own sampling error. This matters for nested runs (one more restart only
  ever adds fooled samples, so any 7 of them would be "significant" whatever n is).

An unpaired tolerance on the two accuracies (about two standard errors of their difference)
ignores that the runs share their samples: it let PGD-10 50.7 % vs PGD-20 43.3 % on the same
300 samples pass as noise, where the paired test sees 22 samples fooled by one run only, all by
the stronger one (p = 2⁻²²).

**A backward that differs from the forward.** A model whose neurons hand out the gradient of
something else than their forward (the oscillation defence's fake backward, see
:func:`spikeshield.neurons.true_gradient`) can mislead an attack while every check above passes:
with a mild fake oscillation PGD at a large ε still reaches 0 %, yet PGD-10 overstated robust
accuracy by 44 points on the oscillation grid (issue 15). For such a model the primary attack is
rerun on the first samples through the true forward's gradient (same random streams), at one ε
(:func:`true_gradient_record`), and paired with the primary's own record at that ε on those
samples; ``true-gradient-not-stronger`` fails, a masking sign, when that run fools significantly
and materially more samples (:func:`gather_true_gradient`).

*Which ε.* The rerun asks whether the handed-out gradient understates what the true one does. A
true-gradient attack can only beat the handed-out one on samples the latter left robust, and its
own success grows with ε, so its room to win — and the test's power — is largest at the largest
ε where the handed-out attack still claims robustness. The rerun therefore runs at the largest
evaluated ε > 0 at which the check *could* fail: where, were the true-gradient run to fool every
one of the first samples the handed-out run left robust, the paired rule above would call it
stronger (on 100 samples: at least 7 left robust, since 2⁻⁷ < ALPHA); if no ε qualifies, at the
largest ε > 0. At an ε where the handed-out attack already fools (nearly) everything there is
nothing to overstate and the test could not fire: a mild fake backward may fall to 0 % at the
largest budget of a wide sweep (L∞ 0.3 on MNIST) while overstating the smaller ones. The choice
looks only at the handed-out run, never at the true-gradient one, so it is one test at ALPHA, not
the best of several (no multiple-comparison correction is needed; testing every ε would need one
run per ε). The reference ε of the budget checks (accuracy nearest half the clean one) is the
wrong choice here: a strongly masked attack leaves ~95 % at every ε, so that ε is arbitrary — it
was 0.05 on the digits grid's strong fake backward at seed 1, where the true gradient fooled only
5 more of 100 images and the check passed a model whose robustness is 91 points of masking.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from spikeshield.attacks.base import Attack, build_attack
from spikeshield.attacks.gradient import AttackerGradient
from spikeshield.data.base import ArrayDataset

#: one-sided significance level of each paired comparison
ALPHA = 0.01
#: accuracy at the large-ε probe above which gradient masking is suspected
LARGE_EPS_MAX_ACCURACY = 0.05
#: the large-ε probe's budget as a share of the valid input range (L∞; L2: times √d)
LARGE_EPS_SHARE = 0.5
#: the names of the extra runs on the first ``check_samples`` samples
MORE_STEPS, MORE_RESTARTS, LARGE_EPS = "more-steps", "more-restarts", "large-eps"

PlanEntry = tuple[Any, Attack, Sequence[float]]
Sweep = Callable[[ArrayDataset, list[PlanEntry], str], dict[str, Any]]


def binomial_tail(k: int, n: int) -> float:
    """``P(X ≥ k)`` for ``X ~ Binomial(n, ½)``, exactly."""
    if k <= 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


@dataclass(frozen=True)
class Paired:
    """Two runs on the same samples (``True`` = still classified correctly, i.e. robust)."""

    first: Tensor
    second: Tensor

    @property
    def only_first(self) -> int:
        """Samples fooled by the first run and not by the second."""
        return int((~self.first & self.second).sum())

    @property
    def only_second(self) -> int:
        return int((self.first & ~self.second).sum())

    def _sides(self, side: str) -> tuple[int, int, Tensor]:
        """(fooled only by ``side``, fooled only by the other, the other's results)."""
        if side == "first":
            return self.only_first, self.only_second, self.second
        return self.only_second, self.only_first, self.first

    def p_value(self, side: str) -> float:
        """One-sided exact McNemar p-value of "run ``side`` fools more samples"."""
        wins, losses, _ = self._sides(side)
        return binomial_tail(wins, wins + losses)

    def standard_error(self, side: str) -> float:
        """The standard error of the *other* run's accuracy (the materiality threshold)."""
        other = _acc(self._sides(side)[2])
        return math.sqrt(other * (1 - other) / len(self.first))

    def stronger(self, side: str) -> bool:
        """Run ``side`` (``"first"`` or ``"second"``) fooled significantly and materially more."""
        wins, losses, _ = self._sides(side)
        net = (wins - losses) / len(self.first)
        return self.p_value(side) < ALPHA and net > self.standard_error(side)

    def verdict(self, side: str) -> str:
        wins, losses, _ = self._sides(side)
        p, se, n = self.p_value(side), self.standard_error(side), len(self.first)
        return (
            f"exact McNemar p = {p:.2g} ({'<' if p < ALPHA else '>='} {ALPHA:g}), "
            f"net {(wins - losses) / n:+.4f} vs standard error {se:.4f}"
        )

    def record(self) -> dict[str, Any]:
        return {
            "samples": len(self.first),
            "fooled_only_by_first": self.only_first,
            "fooled_only_by_second": self.only_second,
            "p_first_stronger": self.p_value("first"),
            "p_second_stronger": self.p_value("second"),
        }

    def describe(self, first: str, second: str) -> str:
        return (
            f"{first} {_acc(self.first):.4f}, {second} {_acc(self.second):.4f} on {len(self.first)} samples; "
            f"fooled only by {first}: {self.only_first}, only by {second}: {self.only_second}"
        )


def _acc(correct: Tensor) -> float:
    return int(correct.sum()) / correct.numel()


def _check(name: str, category: str, status: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"check": name, "category": category, "status": status, "detail": detail, **extra}


@dataclass
class Evidence:
    """What the checks look at: the main records and the extra runs on the first samples."""

    clean: Tensor
    attacks: list[tuple[Attack, list[Any]]]
    """Each planned attack with its records (one per ε, in the plan's order)."""
    noises: list[Any]
    attacker: AttackerGradient
    primary: tuple[Attack, list[Any]] | None = None
    """The first iterative gradient attack with steps (the one the extra runs vary)."""
    key: Any = None
    """The primary's plan key (its random streams are keyed by it)."""
    ref: Any = None
    """The primary's record whose accuracy is nearest half the clean one (ε > 0)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Records of the extra runs on the first ``samples`` samples, by name."""
    samples: int = 0
    probe: Attack | None = None
    input_range: tuple[float, float] = (0.0, 1.0)
    """The valid input range the large-ε probe's budget follows (:func:`large_eps`)."""


def large_eps(norm: str, input_numel: int, input_range: tuple[float, float] = (0.0, 1.0)) -> float:
    """The budget of the large-ε probe: half the valid input range ``(low, high)`` per value,
    ``ε∞ = (high − low)/2`` and ``ε₂ = ε∞·√d`` (d = ``input_numel``). Images in [0, 1]: 0.5 and
    0.5·√d; event frames of counts: half the largest count of the evaluated data (see
    :func:`spikeshield.attacks.evaluate.input_range`), so the probe can flatten a frame as 0.5
    can an image."""
    low, high = input_range
    eps = LARGE_EPS_SHARE * (high - low)
    return eps if norm == "linf" else eps * math.sqrt(input_numel)


def large_eps_probe(eps: float, norm: str, steps: int) -> Attack:
    """The large-ε probe: PGD of ``steps`` steps from the clean point (no random start, so any
    success is the gradient's) that stops each sample at its first misclassified iterate and
    ends once every sample is fooled (``stop_when_fooled``). A sample counts as fooled when some
    iterate inside the ε-ball misclassified it — an adversarial example, as APGD and SA-PGD count
    theirs; the samples never fooled take all ``steps`` steps, as without the stop. On a model
    that falls at that budget the probe costs a few steps instead of ``steps``."""
    return build_attack("pgd", eps=eps, norm=norm, steps=steps, random_start=False, stop_when_fooled=True)


def _attack_name(attack: Attack) -> str:
    steps = getattr(attack, "steps", None)
    return f"{attack.name}-{steps}" if steps and attack.iterative else attack.name


def _primary(attacks: list[tuple[Attack, list[Any]]]) -> tuple[Attack, list[Any]] | None:
    return next(
        (
            (t, recs)
            for t, recs in attacks
            if t.kind in ("white-box", "ensemble") and t.iterative and hasattr(t, "steps")
        ),
        None,
    )


def gather_evidence(
    *,
    dataset: ArrayDataset,
    records: Sequence[Any],
    clean: Tensor,
    plan: Sequence[PlanEntry],
    attacker: AttackerGradient,
    sweep: Sweep,
    check_samples: int,
    input_range: tuple[float, float],
) -> Evidence:
    """Group the main records and run the extra budget and large-ε runs on the first samples.

    The extra runs use the primary attack's own random streams (same seed, same key): with one
    more restart the first restarts replay the main run, and with twice the steps each sample
    starts from the same random point, so the comparisons isolate what was changed.
    """
    attack_records = iter(r for r in records if r.info["kind"] == "attack")
    attacks = [(t, [next(attack_records) for _ in levels]) for _k, t, levels in plan]
    evidence = Evidence(clean, attacks, [r for r in records if r.info["kind"] == "noise"], attacker)
    evidence.primary = _primary(attacks)
    if evidence.primary is None:
        return evidence
    template, recs = evidence.primary
    key = evidence.key = next(k for k, t, _ in plan if t is template)
    subset = _head(dataset, check_samples)
    evidence.samples = len(subset)
    clean_acc = _acc(clean)
    candidates = [r for r in recs if r.info["eps"] > 0]
    extra: list[PlanEntry] = []
    names: list[str] = []
    if candidates:
        evidence.ref = min(candidates, key=lambda r: abs(_acc(r.correct) - clean_acc / 2))
        eps = evidence.ref.info["eps"]
        extra.append((key, template.with_options(steps=2 * template.steps), [eps]))
        names.append(MORE_STEPS)
        if hasattr(template, "restarts"):
            extra.append((key, template.with_options(restarts=template.restarts + 1), [eps]))
            names.append(MORE_RESTARTS)
    evidence.input_range = input_range
    probe_eps = large_eps(template.norm, dataset[0][0].numel(), input_range)
    steps = max(getattr(template, "steps", 10), 10)
    evidence.probe = large_eps_probe(probe_eps, template.norm, steps)
    extra.append((LARGE_EPS, evidence.probe, [probe_eps]))
    names.append(LARGE_EPS)
    out = sweep(subset, extra, "budget")
    evidence.extra = dict(zip(names, out["records"], strict=True))
    return evidence


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


# ---------------------------------------------------------------------------- the checks
def zero_budget_equals_clean(ev: Evidence) -> dict[str, Any]:
    name = "zero-budget-equals-clean"
    zero = [r for _t, recs in ev.attacks for r in recs if r.info["eps"] == 0]
    zero += [r for r in ev.noises if r.info["level"] == 0]
    if not zero:
        return _check(name, "consistency", "skipped", "no zero budget was evaluated")
    label = ", ".join(sorted({r.info.get("attack") or r.info.get("noise") for r in zero}))
    bad = [r for r in zero if not torch.equal(r.correct, ev.clean)]
    if not bad:
        return _check(name, "consistency", "pass", f"{label} at 0 = clean {_acc(ev.clean):.4f}")
    detail = "; ".join(
        f"{r.info.get('attack') or r.info.get('noise')}: {_acc(r.correct):.4f} vs clean {_acc(ev.clean):.4f}"
        for r in bad
    )
    return _check(name, "consistency", "fail", detail)


def accuracy_non_increasing_in_eps(ev: Evidence) -> dict[str, Any]:
    """A larger ε must not leave significantly more samples robust (paired: same samples)."""
    name = "accuracy-non-increasing-in-eps"
    iterative = [(t, recs) for t, recs in ev.attacks if t.iterative and t.kind in ("white-box", "ensemble")]
    if not iterative:
        return _check(name, "masking", "skipped", "no iterative attack")
    problems, comparisons = [], []
    for t, recs in iterative:
        for lo, hi in itertools.pairwise(sorted(recs, key=lambda r: r.info["eps"])):
            pair = Paired(lo.correct, hi.correct)
            comparisons.append(pair.record())
            if pair.stronger("first"):
                problems.append(
                    f"{t.name}: "
                    + pair.describe(f"eps {lo.info['eps']:g}", f"eps {hi.info['eps']:g}")
                    + f" ({pair.verdict('first')})"
                )
    names = ", ".join(t.name for t, _ in iterative)
    detail = "; ".join(problems) or f"{names}: no larger eps left significantly more samples robust"
    return _check(name, "masking", "fail" if problems else "pass", detail, paired=comparisons)


def _weaker_not_better(ev: Evidence, name: str, label: str, weak: Callable[[Attack], bool]) -> dict[str, Any]:
    """Attacks selected by ``weak`` must not fool significantly more samples than the
    strongest (lowest accuracy) iterative white-box attack at the same ε and norm."""
    strong: dict[tuple[str, float], Any] = {}
    for t, recs in ev.attacks:
        if t.iterative and t.kind in ("white-box", "ensemble"):
            for r in recs:
                key = (r.info["norm"], r.info["eps"])
                if r.info["eps"] > 0 and (key not in strong or _acc(r.correct) < _acc(strong[key].correct)):
                    strong[key] = r
    problems, comparisons = [], []
    for t, recs in ev.attacks:
        if not weak(t):
            continue
        for r in recs:
            best = strong.get((r.info["norm"], r.info["eps"]))
            if best is None:
                continue
            pair = Paired(r.correct, best.correct)
            comparisons.append(pair.record())
            if pair.stronger("first"):
                problems.append(
                    pair.describe(t.name, best.info["attack"])
                    + f" at eps {r.info['eps']:g} ({r.info['norm']}; {pair.verdict('first')})"
                )
    if not comparisons:
        return _check(name, "masking", "skipped", f"no {label} and iterative attack at a shared eps > 0")
    detail = "; ".join(problems) or f"no {label} attack fooled significantly more samples"
    return _check(name, "masking", "fail" if problems else "pass", detail, paired=comparisons)


def single_step_not_better_than_iterative(ev: Evidence) -> dict[str, Any]:
    return _weaker_not_better(
        ev,
        "single-step-not-better-than-iterative",
        "single-step",
        lambda t: t.kind == "white-box" and not t.iterative,
    )


def black_box_not_better_than_white_box(ev: Evidence) -> dict[str, Any]:
    return _weaker_not_better(
        ev,
        "black-box-not-better-than-white-box",
        "black-box/transfer",
        lambda t: t.kind in ("black-box", "transfer"),
    )


#: the name of the extra run through the true forward's gradient (fake-backward models only)
TRUE_GRADIENT = "true-gradient"


def true_gradient_record(ev: Evidence) -> Any:
    """The primary's record the true-gradient rerun is made at and paired with: the largest ε > 0
    at which the check could fail — where the handed-out run left enough of the first
    ``ev.samples`` samples robust that the true-gradient run, were it to fool all of them, would
    be significantly and materially stronger (:meth:`Paired.stronger`; on 100 samples: ≥ 7
    robust) — else the largest ε > 0; None without a primary or an ε > 0. It depends on the
    handed-out run only (see the module docstring, "Which ε")."""
    if ev.primary is None:
        return None
    records = sorted((r for r in ev.primary[1] if r.info["eps"] > 0), key=lambda r: r.info["eps"])
    if not records:
        return None
    k = ev.samples or len(records[0].correct)

    def could_fail(record: Any) -> bool:
        head = record.correct[:k]
        return Paired(head, torch.zeros_like(head)).stronger("second")

    return next((r for r in reversed(records) if could_fail(r)), records[-1])


def gather_true_gradient(evidence: Evidence, dataset: ArrayDataset, sweep: Sweep | None) -> None:
    """For a model whose backward differs from its forward: the primary attack on the first
    samples at the ε of :func:`true_gradient_record` (the largest the check could fail at),
    through the true forward's gradient (``sweep`` runs it so; None when the model hands out its
    true gradient, or the attacker already follows the true forward). Same key and seed as the
    main run, so on those samples the two runs differ only in the gradient. One extra run."""
    record = true_gradient_record(evidence)
    if sweep is None or record is None:
        return
    plan = [(evidence.key, evidence.primary[0], [record.info["eps"]])]
    out = sweep(_head(dataset, evidence.samples), plan, "true gradient")
    evidence.extra[TRUE_GRADIENT] = out["records"][0]


def true_gradient_not_stronger(ev: Evidence) -> dict[str, Any]:
    """The attack through the true forward's gradient must not fool significantly more samples
    than through the gradient the model hands out (paired: the primary's record at the same ε
    on the same samples, same random starts; the ε of :func:`true_gradient_record`, recorded as
    ``eps``)."""
    name = "true-gradient-not-stronger"
    record = true_gradient_record(ev)
    if TRUE_GRADIENT not in ev.extra or record is None:
        reason = (
            "no iterative gradient attack"
            if ev.primary is None
            else "no eps > 0 evaluated"
            if record is None
            else "not run: no fake backward (the model hands out its forward's gradient), or the "
            "attack already follows the true forward (in the suites, a member does)"
        )
        return _check(name, "masking", "skipped", reason)
    attack = _attack_name(ev.primary[0])
    found = _variant(ev, TRUE_GRADIENT, f"{attack} [{ev.extra[TRUE_GRADIENT].info['gradient']}]", record)
    if isinstance(found, str):  # not reached: the run is made only with a primary and an ε > 0
        return _check(name, "masking", "skipped", found)
    pair, detail = found
    detail = f"{ev.attacker.name} gradient (handed out) vs the true forward's: {detail}"
    detail += f" ({pair.verdict('second')})"
    status = "fail" if pair.stronger("second") else "pass"
    return _check(
        name,
        "masking",
        status,
        detail,
        eps=record.info["eps"],
        accuracy=_acc(pair.second),
        paired=pair.record(),
    )


def _variant(ev: Evidence, run: str, what: str, main: Any = None) -> tuple[Paired, str] | str:
    """The primary attack's record ``main`` (default: the reference one) against its variant
    ``run`` on the first samples (paired), or why that cannot be checked."""
    if ev.primary is None:
        return "no iterative gradient attack"
    template = ev.primary[0]
    if run == MORE_RESTARTS and not hasattr(template, "restarts"):
        return f"{template.name} has no restarts"
    main = ev.ref if main is None else main
    if main is None:
        return "no eps > 0 evaluated"
    k = ev.samples
    pair = Paired(main.correct[:k], ev.extra[run].correct)
    base = _attack_name(template) + (f" x{template.restarts}" if run == MORE_RESTARTS else "")
    detail = f"{template.name} eps {main.info['eps']:g}: " + pair.describe(base, what)
    return pair, detail


def _more_helps_model(ev: Evidence, name: str, run: str, what: str) -> dict[str, Any]:
    found = _variant(ev, run, what)
    if isinstance(found, str):
        return _check(name, "masking", "skipped", found)
    pair, detail = found
    status = "fail" if pair.stronger("first") else "pass"
    detail += f" ({pair.verdict('first')})"
    return _check(name, "masking", status, detail, accuracy=_acc(pair.second), paired=pair.record())


def _more_helps_attack(
    ev: Evidence, name: str, run: str, what: str, stronger: dict[str, Any]
) -> dict[str, Any]:
    found = _variant(ev, run, what)
    if isinstance(found, str):
        return _check(name, "convergence", "skipped", found)
    pair, detail = found
    detail += f" ({pair.verdict('second')})"
    if not pair.stronger("second"):
        return _check(name, "convergence", "pass", detail, paired=pair.record())
    return _check(name, "convergence", "fail", detail, paired=pair.record(), stronger_settings=stronger)


def more_steps_do_not_help_the_model(ev: Evidence) -> dict[str, Any]:
    what = f"{2 * ev.primary[0].steps} steps" if ev.primary else ""
    return _more_helps_model(ev, "more-steps-do-not-help-the-model", MORE_STEPS, what)


def attack_converged(ev: Evidence) -> dict[str, Any]:
    """Doubling the steps must not fool significantly more samples."""
    steps = 2 * ev.primary[0].steps if ev.primary else 0
    return _more_helps_attack(ev, "attack-converged", MORE_STEPS, f"{steps} steps", {"steps": steps})


def more_restarts_do_not_help_the_model(ev: Evidence) -> dict[str, Any]:
    restarts = getattr(ev.primary[0], "restarts", 0) + 1 if ev.primary else 0
    return _more_helps_model(ev, "more-restarts-do-not-help-the-model", MORE_RESTARTS, f"x{restarts}")


def restarts_converged(ev: Evidence) -> dict[str, Any]:
    """One more restart must not fool significantly more samples."""
    restarts = getattr(ev.primary[0], "restarts", 0) + 1 if ev.primary else 0
    return _more_helps_attack(ev, "restarts-converged", MORE_RESTARTS, f"x{restarts}", {"restarts": restarts})


def large_eps_reaches_zero(ev: Evidence) -> dict[str, Any]:
    name = "large-eps-reaches-zero"
    if ev.primary is None or ev.probe is None:
        return _check(name, "masking", "skipped", "no iterative gradient attack")
    probe, acc = ev.probe, _acc(ev.extra[LARGE_EPS].correct)
    low, high = ev.input_range
    detail = (
        f"PGD-{getattr(probe, 'steps', 1)} without random start (first misclassified iterate), "
        f"{ev.attacker.name} gradient, eps "
        f"{probe.eps:g} ({probe.norm}; from the input range [{low:g}, {high:g}]) on {ev.samples} "
        f"samples: accuracy {acc:.4f} (must be <= {LARGE_EPS_MAX_ACCURACY})"
    )
    status = "pass" if acc <= LARGE_EPS_MAX_ACCURACY else "fail"
    return _check(
        name, "masking", status, detail, accuracy=acc, eps=probe.eps, norm=probe.norm, input_range=[low, high]
    )


Check = Callable[[Evidence], dict[str, Any]]

#: every check, in the order they are reported; a new check is one function added here
CHECKS: list[Check] = [
    zero_budget_equals_clean,
    accuracy_non_increasing_in_eps,
    single_step_not_better_than_iterative,
    black_box_not_better_than_white_box,
    true_gradient_not_stronger,
    more_steps_do_not_help_the_model,
    attack_converged,
    more_restarts_do_not_help_the_model,
    restarts_converged,
    large_eps_reaches_zero,
]


def run_checks(evidence: Evidence) -> dict[str, Any]:
    """Every check of :data:`CHECKS` on ``evidence``, with the verdict and the warnings."""
    checks = [check(evidence) for check in CHECKS]
    warnings = [
        f"evaluation inconsistent: a zero budget does not reproduce clean accuracy ({c['detail']})"
        for c in checks
        if c["category"] == "consistency" and c["status"] == "fail"
    ]
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
