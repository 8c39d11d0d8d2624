"""Named evaluation suites: a fixed list of attacks that makes numbers comparable and honest.

``rssnn-standard``
    The list of Ding, Pan, Liu, Yu & Huang ("Robust Stable Spiking Neural Networks", ICML 2024)
    and the papers that follow them, so our numbers line up with published tables: at ε = 8/255
    (L∞) FGSM; PGD-7, -10, -20, -40 with steps 2.55, 2, 1 and 0.5 /255 (uniform random start);
    APGD-CE and APGD-DLR with 10 steps; PGD-10 over ε = 10, 20, …, 100 /255; Gaussian noise over
    σ. Each is its own record, with the usual gradient-masking checks. A different ``eps``
    scales the four PGD step sizes with it.

``reliable``
    The number a defence is credited with: per sample, the worst case over APGD-CE, APGD-DLR
    (Croce & Hein, ICML 2020), for models with a fake backward (the oscillation defence) APGD-CE
    and APGD-DLR through the true forward, SA-PGD with the adaptive-sharpness surrogate and A
    searched (Wang et al., arXiv 2512.22522, 2025), for fake-backward models SA-PGD through the
    true forward and a transfer attack from an undefended twin, and the Square attack (black
    box) last. A sample is robust only if every member failed on it.
    Cheap the way AutoAttack is: each member attacks only the samples every earlier member
    failed on; A is searched on the first ``search.samples`` of those (each A tried is one run
    on them, same random starts, so the runs are paired), stops early once nothing can change
    (an A fools them all, or, with no other sample left, every one is fooled by some A), and the
    chosen A then attacks the rest once; a fooled sample is never queried again inside an APGD
    or SA-PGD run. Every result says which member broke each sample (``broken_by``), what each
    member cost and fooled, and what the A search tried.

    Checks: ε = 0 reproduces clean accuracy (every member at ε = 0: a single step or two queries
    suffice, nothing can move); a larger ε leaves no more samples robust (the white-box members);
    the black-box and transfer members add no more than a standard error on top of the white-box
    ones (paired on the samples they attacked: a material, significant gain means the gradients
    are masked); SA-PGD with twice the steps, or one more restart, fools no significantly more of
    the first ``check_samples`` samples it attacked (if it does, it is rerun so on every surviving
    sample, and the record says so); PGD without random start at a large ε, through SA-PGD's
    gradient (ASSG at the chosen A), reaches ≤ 5 %.
    The checks reuse what the members produced and stop what is decided: the clean predictions
    and each member's per-sample results are the base of every comparison (nothing the members
    ran is run again); "one more restart" is SA-PGD's own run plus a single extra restart from a
    fresh random start on the samples that run left robust (not the first restart replayed);
    the large-ε probe attacks only clean-correct samples, drops each one at its first
    misclassified iterate and ends once all are fooled. The doubled-steps run cannot reuse the
    member's run (the step-size schedule depends on the number of steps) and is made in full.

Both record every setting, the gradient, the seed and the time taken.
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.attacks.assg import SharpnessSearch, search_sharpness
from spikeshield.attacks.base import Attack, build_attack
from spikeshield.attacks.checks import (
    LARGE_EPS,
    MORE_RESTARTS,
    MORE_STEPS,
    Evidence,
    large_eps,
    large_eps_probe,
    run_checks,
)
from spikeshield.attacks.evaluate import (
    _Record,
    _Setup,
    attack_subset,
    check_fresh_state,
    clean_correct,
    envelope,
    evaluate_robustness,
    input_range,
    make_setup,
    preflight,
    skipped_checks,
)
from spikeshield.attacks.gradient import AttackerGradient, has_fake_gradient, resolve_gradient
from spikeshield.attacks.transfer import ann_twin
from spikeshield.data.base import ArrayDataset
from spikeshield.errors import UsageError
from spikeshield.preserve import preserved
from spikeshield.registry import Registry

Suite = Callable[..., dict[str, Any]]
SUITES: Registry[Suite] = Registry("evaluation suite")

RSSNN_EPS = 8 / 255
#: (steps, step size in 1/255 at ε = 8/255) of the RSSNN list's PGD runs
RSSNN_PGD = ((7, 2.55), (10, 2.0), (20, 1.0), (40, 0.5))
RSSNN_SWEEP = tuple(k / 255 for k in range(10, 101, 10))
RSSNN_SIGMAS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
#: the options ``rssnn-standard`` passes on to evaluate_robustness (the rest of its arguments it sets)
RSSNN_OPTIONS = frozenset(inspect.signature(evaluate_robustness).parameters) - {
    "model", "dataset", "attacks", "eps", "noises"
}  # fmt: skip


def evaluate_suite(model: nn.Module, dataset: ArrayDataset, suite: str, **options: Any) -> dict[str, Any]:
    """Run the evaluation suite ``suite`` (see :data:`SUITES`) on ``model`` and ``dataset``.

    Returns the same JSON-able result as :func:`~spikeshield.attacks.evaluate_robustness`
    (records, checks, warnings) with a ``suite`` entry: its name, settings and wall time.
    The model is left exactly as it was.

    Raises:
        UsageError: an unknown suite, or an option the suite does not take (named, with the
            ones it takes).
    """
    run = SUITES.get(suite)
    takes = inspect.signature(run).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in takes.values()):
        extra = sorted(set(options) - {n for n in takes if n not in ("model", "dataset")})
        if extra:
            known = ", ".join(n for n in takes if n not in ("model", "dataset"))
            raise UsageError(f"{suite} does not take {', '.join(extra)} (its options: {known})")
    start = time.perf_counter()
    result = run(model, dataset, **options)
    result["suite"]["seconds"] = time.perf_counter() - start
    return result


# ---------------------------------------------------------------------------- rssnn-standard
@SUITES.register("rssnn-standard", help="the RSSNN papers' list at eps 8/255: FGSM, PGD-7/10/20/40, APGD")
def rssnn_standard(
    model: nn.Module,
    dataset: ArrayDataset,
    *,
    eps: float | Sequence[float] = RSSNN_EPS,
    sigmas: Sequence[float] = RSSNN_SIGMAS,
    **options: Any,
) -> dict[str, Any]:
    """The RSSNN evaluation list (Ding et al., ICML 2024), each attack its own record.

    Args:
        eps: the main budget (L∞; default 8/255), a number or a sequence of one (as the other
            suites and :func:`~spikeshield.attacks.evaluate_robustness` take budgets); the PGD
            step sizes scale with it. The PGD-10 sweep over 10..100/255 is fixed.
        sigmas: the Gaussian noise levels.
        options: passed to :func:`~spikeshield.attacks.evaluate_robustness` (gradient, seed,
            batch size, checks, ...).

    Raises:
        UsageError: not one budget in (0, 1); an option ``evaluate_robustness`` does not take
            (e.g. ``steps``, ``queries`` or ``source``: the list's attacks are fixed and it has
            no transfer member).
    """
    if isinstance(eps, Sequence) and not isinstance(eps, (str, bytes)):
        if len(eps) != 1:
            raise UsageError(f"rssnn-standard takes one budget eps (a number or a list of one), got {eps!r}")
        eps = eps[0]
    if not validate.is_finite_number(eps) or not 0 < eps < 1:
        raise UsageError(f"rssnn-standard takes one budget eps in (0, 1), got {eps!r}")
    eps = float(eps)
    extra = sorted(set(options) - RSSNN_OPTIONS)
    if extra:
        raise UsageError(
            f"rssnn-standard does not take {', '.join(extra)}: its attacks and their settings are fixed "
            f"and it has no transfer member (it takes eps, sigmas, {', '.join(sorted(RSSNN_OPTIONS))})"
        )
    scale = eps / RSSNN_EPS
    attacks: list[tuple[Attack, list[float]]] = [(build_attack("fgsm"), [eps])]
    attacks += [(build_attack("pgd", steps=n, step_size=a / 255 * scale), [eps]) for n, a in RSSNN_PGD]
    attacks += [(build_attack(name, steps=10), [eps]) for name in ("apgd-ce", "apgd-dlr")]
    attacks += [(build_attack("pgd", steps=10), list(RSSNN_SWEEP))]
    result = evaluate_robustness(
        model, dataset, attacks=attacks, noises={"gaussian": list(sigmas)}, **options
    )
    result["suite"] = {
        "name": "rssnn-standard",
        "eps": eps,
        "pgd": [{"steps": n, "step_size": a / 255 * scale} for n, a in RSSNN_PGD],
        "apgd_steps": 10,
        "eps_sweep": list(RSSNN_SWEEP),
        "sigmas": list(sigmas),
        "source": "Ding et al., Robust Stable Spiking Neural Networks, ICML 2024 (their evaluation list)",
    }
    return result


# ---------------------------------------------------------------------------- reliable
@dataclass(frozen=True)
class Member:
    """One attack of the ``reliable`` suite."""

    name: str
    attack: Attack
    gradient: AttackerGradient
    kind: str  # white-box, black-box or transfer

    @property
    def searched(self) -> bool:
        return self.attack.uses_gradient and self.gradient.needs_search


RELIABLE_MEMBERS = (
    "apgd-ce",
    "apgd-dlr",
    "apgd-ce+true",
    "apgd-dlr+true",
    "sa-pgd+assg",
    "sa-pgd+true",
    "transfer",
    "square",
)


def _members(
    model: nn.Module,
    names: Sequence[str] | None,
    *,
    steps: int,
    queries: int,
    gradient: AttackerGradient,
    assg: float | None,
    source: nn.Module | None,
) -> tuple[list[Member], list[str]]:
    """The suite's members in order (the defence-aware ones only for fake-gradient models; the
    APGD members through the true gradient not twice, when ``gradient`` already is it)."""
    fake = has_fake_gradient(model)
    wanted = list(names) if names is not None else [n for n in RELIABLE_MEMBERS if fake or "true" not in n]
    if names is None and not fake:
        wanted.remove("transfer")
    if names is None and gradient.name == "true":
        wanted = [n for n in wanted if not (n.startswith("apgd") and n.endswith("+true"))]
    for name in wanted:
        if name not in RELIABLE_MEMBERS:
            raise UsageError(f"unknown reliable member {name!r}; choose from {', '.join(RELIABLE_MEMBERS)}")
    sharp = resolve_gradient("assg" if assg is None else f"assg:{assg}")
    true = resolve_gradient("true")
    warnings: list[str] = []
    if "transfer" in wanted and source is None:
        source = ann_twin(model).eval()
        warnings.append(
            "transfer member: source = the model's ANN twin with the weights as copied (not fitted)"
        )

    def white(name: str, attack: str, through: AttackerGradient) -> Callable[[], Member]:
        return lambda: Member(name, build_attack(attack, steps=steps), through, "white-box")

    build: dict[str, Callable[[], Member]] = {
        "apgd-ce": white("apgd-ce", "apgd-ce", gradient),
        "apgd-dlr": white("apgd-dlr", "apgd-dlr", gradient),
        "apgd-ce+true": white("apgd-ce+true", "apgd-ce", true),
        "apgd-dlr+true": white("apgd-dlr+true", "apgd-dlr", true),
        "sa-pgd+assg": white("sa-pgd+assg", "sa-pgd", sharp),
        "sa-pgd+true": white("sa-pgd+true", "sa-pgd", true),
        "transfer": lambda: Member(
            "transfer",
            build_attack(
                "transfer", base="apgd-ce", steps=steps, source=source, source_name="undefended twin"
            ),
            gradient,
            "transfer",
        ),
        "square": lambda: Member("square", build_attack("square", queries=queries), gradient, "black-box"),
    }
    ordered = [n for n in RELIABLE_MEMBERS if n in wanted]
    return [build[n]() for n in ordered], warnings


@dataclass
class _Outcome:
    """The suite at one ε: who is still robust, who broke whom, what each member did."""

    robust: Tensor
    broken_by: list[str | None]
    members: list[dict[str, Any]]
    stages: dict[str, Tensor]  # robust after each member, by member name
    #: robust after each member had it run once with its chosen settings (the searched member:
    #: the chosen A alone, without the other A tried on the search samples)
    alone: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    search: dict[str, Any] | None = None
    chosen: AttackerGradient | None = None
    seconds: float = 0.0
    model_calls: int = 0
    attacked: int = 0


def _searched_run(
    setup: _Setup, dataset: ArrayDataset, idx: Tensor, member: Member, attack: Attack
) -> tuple[Tensor, Tensor, dict[str, Any], AttackerGradient, int]:
    """The member with A searched on the first ``search.samples`` of ``idx`` (per-sample worst
    case over every A tried there), then the chosen A on the rest. Returns the samples' results
    (aligned with ``idx``), those of the chosen A alone, the search record, the chosen
    gradient and the model calls."""
    limit = setup.search.samples
    probe, rest = (idx, idx[:0]) if limit is None else (idx[:limit], idx[limit:])
    still = torch.ones(len(probe), dtype=torch.bool)
    tried: dict[float, Tensor] = {}
    calls = 0

    def robust(a: float) -> int:
        nonlocal calls
        gradient = member.gradient.with_sharpness(a)
        rec = attack_subset(setup, dataset, probe, member.name, attack, f"assg A={a:.4g}", gradient)
        tried[a] = rec.correct
        still.logical_and_(rec.correct)
        calls += rec.model_calls
        return int(rec.correct.sum())

    found = search_sharpness(robust, setup.search, settled=lambda: len(rest) == 0 and not bool(still.any()))
    chosen = member.gradient.with_sharpness(found.best)
    rec = attack_subset(setup, dataset, rest, member.name, attack, f"{member.name}@{attack.eps:g}", chosen)
    return (
        torch.cat([still, rec.correct]),
        torch.cat([tried[found.best], rec.correct]),
        found.record(setup.search, len(probe)),
        chosen,
        calls + rec.model_calls,
    )


def _zero_budget(attack: Attack) -> Attack:
    """The member at ε = 0: one step or two queries (at ε = 0 nothing can move anyway)."""
    options = {k: v for k, v in (("steps", 1), ("queries", 2)) if hasattr(attack, k)}
    return dataclasses.replace(attack, eps=0.0, **options)


def _run_members(
    setup: _Setup, dataset: ArrayDataset, clean: Tensor, members: list[Member], eps: float
) -> _Outcome:
    robust = clean.clone()
    out = _Outcome(robust, [None if c else "misclassified clean" for c in clean.tolist()], [], {})
    for member in members:
        idx = robust.nonzero().squeeze(1)
        attack = member.attack.at(eps) if eps > 0 else _zero_budget(member.attack)
        t0 = time.perf_counter()
        info: dict[str, Any] = {"member": member.name, "kind": member.kind, "attacked": len(idx)}
        gradient = member.gradient.with_sharpness(setup.search.midpoint)  # unless searched below
        if len(idx) and member.searched and eps > 0:
            correct, alone, out.search, out.chosen, calls = _searched_run(setup, dataset, idx, member, attack)
            gradient = out.chosen
        elif len(idx):
            rec = attack_subset(setup, dataset, idx, member.name, attack, f"{member.name}@{eps:g}", gradient)
            correct = alone = rec.correct
            calls = rec.model_calls
        else:
            correct = alone = torch.ones(0, dtype=torch.bool)
            calls = 0
        out.alone[member.name] = robust.clone()
        out.alone[member.name][idx[~alone]] = False
        fooled = idx[~correct]
        robust[fooled] = False
        for i in fooled.tolist():
            out.broken_by[i] = member.name
        seconds = time.perf_counter() - t0
        out.seconds += seconds
        out.model_calls += calls
        out.attacked += len(idx)
        out.stages[member.name] = robust.clone()
        info.update(
            settings=attack.settings(),
            gradient=",".join(gradient.describe()["gradient_members"])
            if attack.uses_gradient
            else attack.settings()["attack_kind"],
            fooled=len(fooled),
            accuracy_after=int(robust.sum()) / len(robust),
            seconds=seconds,
            model_calls=calls,
        )
        out.members.append(info)
    return out


def _record(setup: _Setup, eps: float, steps: int, out: _Outcome) -> _Record:
    info: dict[str, Any] = {
        "kind": "attack",
        "attack": "reliable",
        "attack_kind": "ensemble",
        "eps": eps,
        "norm": "linf",
        "gradient": "per member",
        "gradient_members": [m["gradient"] for m in out.members],
        "steps": steps,
        "step_size": None,
        "restarts": 1,
        "random_start": True,
        "loss": "per member",
        "eot_samples": setup.eot_samples,
        "seed": setup.seed,
        "members": out.members,
        "fooled_by_member": {m["member"]: m["fooled"] for m in out.members},
        "broken_by": out.broken_by,
    }
    if out.search is not None:
        info["assg_search"] = out.search
    return _Record(info, out.robust, out.seconds, out.model_calls, out.attacked)


@SUITES.register(
    "reliable", help="per-sample worst case: APGD-CE, APGD-DLR, SA-PGD+ASSG (A searched), Square"
)
def reliable(
    model: nn.Module,
    dataset: ArrayDataset,
    *,
    eps: float | Sequence[float] = (RSSNN_EPS,),
    steps: int | None = None,
    queries: int = 1000,
    members: Sequence[str] | None = None,
    assg: float | None = None,
    search: SharpnessSearch | None = None,
    source: nn.Module | None = None,
    gradient: str | AttackerGradient = "bptt",
    eot_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    bounds: tuple[float, float] = (0.0, 1.0),
    event_values: str | None = None,
    checks: bool = True,
    check_samples: int = 500,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Per-sample worst case over the members (module docstring), at each budget of ``eps`` (L∞;
    one number or a sequence).

    Args:
        steps: of APGD and SA-PGD (default 100; 50 for a stochastic model, as the paper).
        queries: Square's query budget per sample.
        members: a subset of :data:`RELIABLE_MEMBERS` (default: all that apply to the model).
        assg: a fixed A for the SA-PGD member (default: searched, ``search``).
        source: the transfer member's source model (default: the model's ANN twin as copied).
        gradient: the attacker gradient of ``apgd-ce``, ``apgd-dlr`` and ``transfer`` (default
            BPTT through the own surrogate); the ``+true`` members use the true forward.
        eot_samples: default 10 for a stochastic model (Poisson inputs, noisy neurons), else 1.

    Raises:
        InputGradientError: if a member's input gradient is zero everywhere or not finite.
    """
    start = time.perf_counter()
    one = isinstance(eps, numbers.Real) and not isinstance(eps, bool)
    if one or (isinstance(eps, Tensor) and eps.ndim == 0):
        eps = [eps]  # one budget (a Python, NumPy or 0-d torch number)
    try:
        budgets = sorted({float(e) for e in eps})
    except (TypeError, ValueError):
        raise UsageError(f"reliable needs budgets eps: a number or a sequence of them, got {eps!r}") from None
    if not budgets or any(not 0 <= e < 1 for e in budgets):
        raise UsageError(f"reliable needs budgets eps in [0, 1), got {list(eps)!r}")
    validate.positive_int("check_samples", check_samples)
    with preserved(model):
        model.eval()
        first, _ = next(dataset.batches(min(16, len(dataset)), device=device))
        stochastic = check_fresh_state(model, first, seed)["stochastic"]
    setup = make_setup(
        model,
        dataset,
        gradient=gradient,
        eot_samples=eot_samples if eot_samples is not None else (10 if stochastic else 1),
        seed=seed,
        batch_size=batch_size,
        device=device,
        bounds=bounds,
        event_values=event_values,
        progress=progress,
        search=search,
    )
    steps = steps if steps is not None else (50 if stochastic else 100)
    suite, warnings = _members(
        model, members, steps=steps, queries=queries, gradient=setup.attacker, assg=assg, source=source
    )
    levels = [0.0, *budgets] if checks and 0.0 not in budgets else budgets
    with preserved(model):
        model.eval()
        state = preflight(setup, dataset, [m.gradient for m in suite if m.attack.uses_gradient])
        warnings += state.pop("warnings")
        clean = clean_correct(setup, dataset)
        outcomes = {}
        for e in levels:
            outcomes[e] = _run_members(setup, dataset, clean, suite, e)
            log(
                f"reliable eps {e:g}: {int(outcomes[e].robust.sum())}/{len(clean)} robust "
                f"({outcomes[e].seconds:.0f}s)"
            )
        attack_seconds = sum(o.seconds for o in outcomes.values())
        records = [_record(setup, e, steps, outcomes[e]) for e in levels]
        report = skipped_checks()
        if checks:
            t0 = time.perf_counter()
            report = _checks(setup, dataset, clean, suite, outcomes, records, check_samples)
            report["check_seconds"] = time.perf_counter() - t0
        warnings += report.pop("warnings", [])
    result = envelope(setup, dataset, clean, state, records, report, warnings, start)
    result["gradient"] = "per member"
    result["gradient_members"] = sorted({g for r in records for g in r.info["gradient_members"]})
    result["suite"] = {
        "name": "reliable",
        "eps": budgets,
        "members": [m.name for m in suite],
        "steps": steps,
        "queries": queries,
        "assg": "searched" if assg is None else assg,
        "search": dataclasses.asdict(setup.search),
        "attack_seconds": attack_seconds,
        "source": "worst case in the spirit of AutoAttack (Croce & Hein 2020) with ASSG + SA-PGD "
        "(Wang et al., arXiv 2512.22522, 2025)",
    }
    return result


# ---------------------------------------------------------------------------- reliable: checks
def _stage(
    records: list[_Record], stage: str, label: str, outcomes: dict[float, _Outcome], alone: bool = False
) -> list[_Record]:
    """Per-ε records of the suite's robustness after member ``stage`` (``alone``: with that
    member run once with its chosen settings)."""
    out = []
    for rec in records:
        outcome = outcomes[rec.info["eps"]]
        info = dict(rec.info, attack=label)
        out.append(_Record(info, (outcome.alone if alone else outcome.stages)[stage]))
    return out


def _checks(
    setup: _Setup,
    dataset: ArrayDataset,
    clean: Tensor,
    suite: list[Member],
    outcomes: dict[float, _Outcome],
    records: list[_Record],
    check_samples: int,
) -> dict[str, Any]:
    """The gradient-masking checks on the suite (module docstring), through the usual check
    functions: the white-box members together play the iterative attack, the black-box and
    transfer members the attacks that must not do better, SA-PGD the primary attack."""
    white = [m for m in suite if m.kind == "white-box"]
    other = [m for m in suite if m.kind != "white-box"]
    evidence = Evidence(clean, [], [], setup.attacker)
    if white:
        ensemble = build_attack("ensemble", members=tuple(m.attack.name for m in white))
        ensemble.name = "reliable (white-box members)"  # how the checks' details call it
        evidence.attacks.append(
            (ensemble, _stage(records, white[-1].name, "reliable: white-box members", outcomes))
        )
    if other:
        evidence.attacks.append((other[-1].attack, _stage(records, other[-1].name, "reliable", outcomes)))
    primary = next((m for m in suite if m.name == "sa-pgd+assg"), None) or (white[-1] if white else None)
    if primary is None:
        return run_checks(evidence)
    _primary_evidence(setup, dataset, suite, primary, outcomes, records, evidence, check_samples)
    report = run_checks(evidence)
    report["warnings"] += _strengthen_suite(setup, dataset, primary, outcomes, records, report["checks"])
    return report


def _primary_evidence(
    setup: _Setup,
    dataset: ArrayDataset,
    suite: list[Member],
    member: Member,
    outcomes: dict[float, _Outcome],
    records: list[_Record],
    evidence: Evidence,
    check_samples: int,
) -> None:
    """The extra runs of the primary member on those of the first ``check_samples`` samples it
    attacked, and the large-ε probe.

    - twice the steps: the member with ``2·steps`` on those samples (same key: each sample
      starts from the same random point; the chosen A);
    - one more restart: the member's own run (already made: the chosen A alone, ``alone``) is
      the first restarts, so only the extra restart runs, on the samples that run left robust,
      from a fresh random start (its streams keyed by the restart's number) — the samples a
      restart ``runs + 1`` would attack, attacked as it would (a sample fooled by the member's
      run stays fooled), without rerunning the restarts already made;
    - the large-ε probe (PGD-20 without random start, :func:`~.checks.large_eps_probe`) on the
      clean-correct ones of the first samples, through the primary member's gradient: it asks
      whether the suite's strongest gradient works, not the model's own. It stops each sample
      at its first misclassified iterate and ends once all are fooled.
    """
    primary_records = _stage(records, member.name, member.name, outcomes, alone=True)
    evidence.primary = (member.attack, primary_records)
    evidence.key = member.name
    k = evidence.samples = min(check_samples, len(dataset))
    candidates = [r for r in primary_records if r.info["eps"] > 0]
    if candidates:
        clean_acc = int(evidence.clean.sum()) / len(evidence.clean)
        evidence.ref = min(
            candidates, key=lambda r: abs(int(r.correct.sum()) / len(r.correct) - clean_acc / 2)
        )
        e = evidence.ref.info["eps"]
        outcome = outcomes[e]
        i = suite.index(member)
        before = (evidence.clean if i == 0 else outcome.stages[suite[i - 1].name])[:k]
        idx = before.nonzero().squeeze(1)
        gradient = outcome.chosen or member.gradient.with_sharpness(setup.search.midpoint)
        attack = member.attack.at(e)
        longer = attack.with_options(steps=2 * attack.steps)
        rec = attack_subset(setup, dataset, idx, member.name, longer, f"check: {MORE_STEPS}", gradient)
        correct = before.clone()
        correct[idx] = rec.correct
        evidence.extra[MORE_STEPS] = _Record({"eps": e}, correct)
        main = evidence.ref.correct[:k]
        restarted = _one_more_restart(setup, dataset, member, attack, main, gradient)
        evidence.extra[MORE_RESTARTS] = _Record({"eps": e}, restarted)
    evidence.input_range = input_range(dataset, setup.bounds)
    probe_eps = large_eps("linf", dataset[0][0].numel(), evidence.input_range)
    evidence.probe = large_eps_probe(probe_eps, "linf", 20)
    ref = outcomes[evidence.ref.info["eps"]] if evidence.ref is not None else None
    gradient = (ref.chosen if ref is not None else None) or member.gradient.with_sharpness(
        setup.search.midpoint
    )
    evidence.attacker = gradient
    head = evidence.clean[:k].nonzero().squeeze(1)
    rec = attack_subset(setup, dataset, head, LARGE_EPS, evidence.probe, "check: large eps", gradient)
    correct = evidence.clean[:k].clone()
    correct[head] = rec.correct
    evidence.extra[LARGE_EPS] = _Record({"eps": probe_eps}, correct)


def _extra_restart(member: str, attack: Attack) -> tuple[tuple[str, str], Attack]:
    """Restart number ``runs + 1`` of ``member``'s ``attack`` run on its own: its plan key (its
    streams, the same for the check and for a stronger rerun, so at the check's ε a sample meets
    the same restart in both) and the attack with one run."""
    once = attack.with_options(restarts=1) if hasattr(attack, "restarts") else attack
    return (member, f"restart {attack.runs + 1}"), once


def _one_more_restart(
    setup: _Setup,
    dataset: ArrayDataset,
    member: Member,
    attack: Attack,
    main: Tensor,
    gradient: AttackerGradient,
) -> Tensor:
    """Robust after the member's run (``main``: robust per sample of the first samples, False
    where it fooled them or never attacked them) and one more restart: restart ``runs + 1``, one
    run of ``attack`` from a fresh random start, on the samples ``main`` left robust only."""
    survivors = main.nonzero().squeeze(1)
    key, once = _extra_restart(member.name, attack)
    rec = attack_subset(setup, dataset, survivors, key, once, f"check: {key[1]}", gradient)
    correct = main.clone()
    correct[survivors] = rec.correct
    return correct


def _strengthen_suite(
    setup: _Setup,
    dataset: ArrayDataset,
    member: Member,
    outcomes: dict[float, _Outcome],
    records: list[_Record],
    checks: list[dict[str, Any]],
) -> list[str]:
    """If the primary member had not converged, rerun it with the stronger settings on every
    surviving sample at every ε > 0; the records report the per-sample worst case. When only one
    more restart was needed, the rerun is that restart alone (the restarts already made are the
    member's own run, which every survivor already withstood), keyed as the check's restart: at
    the check's ε a sample meets the same restart in both."""
    failed = [c for c in checks if c["category"] == "convergence" and c["status"] == "fail"]
    if not failed:
        return []
    stronger: dict[str, Any] = {}
    for c in failed:
        stronger.update(c["stronger_settings"])
    for rec in records:
        e = rec.info["eps"]
        if e == 0:
            continue
        outcome = outcomes[e]
        idx = rec.correct.nonzero().squeeze(1)
        gradient = outcome.chosen or member.gradient.with_sharpness(setup.search.midpoint)
        t0 = time.perf_counter()
        if set(stronger) == {"restarts"}:  # the restart the check ran, on every survivor
            key, attack = _extra_restart(member.name, member.attack.at(e))
        else:
            key, attack = member.name, member.attack.at(e).with_options(**stronger)
        run = attack_subset(setup, dataset, idx, key, attack, "stronger rerun", gradient)
        fooled = idx[~run.correct]
        rec.correct[fooled] = False
        for i in fooled.tolist():
            rec.info["broken_by"][i] = f"{member.name} (stronger rerun)"
        rec.seconds += time.perf_counter() - t0
        rec.model_calls += run.model_calls
        rec.strengthened = {
            "because": [c["check"] for c in failed],
            "stronger_settings": stronger,
            "robust_accuracy": "per-sample worst case of the suite and a stronger rerun of its primary",
            "fooled_only_by_stronger_run": len(fooled),
        }
    settings = ", ".join(f"{k}={v}" for k, v in stronger.items())
    return [
        f"{member.name} had not converged ({', '.join(c['check'] for c in failed)} failed): it was rerun "
        f"with {settings} on every sample still robust, and each record is the per-sample worst case"
    ]
