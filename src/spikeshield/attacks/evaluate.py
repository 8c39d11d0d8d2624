"""Robustness evaluation: attacks and noise over a test set, batched, with gradient-masking checks.

:func:`evaluate_robustness` runs every attack at every ε and every corruption at every level
on the same samples, one batch at a time (only one batch's graph is ever alive), and returns
a JSON-able record: clean accuracy, one record per attack and level with every setting
(gradient, steps, step size, ε, norm, restarts, EOT samples, seed), the gradient-masking checks
of :mod:`spikeshield.attacks.checks` and a "gradient masking suspected" verdict.

Conventions:

- **Robust accuracy** counts a sample only if it is classified correctly both clean and on
  every adversarial point tried for it (AutoAttack's convention). Samples misclassified clean
  are not attacked. With ``adaptive`` gradients, each gradient member attacks the samples all
  earlier members failed on: the per-sample worst case. When a convergence check fails (twice
  the steps or one more restart fooled significantly more samples), the attack is rerun with
  the stronger settings on every sample and ε > 0 and the record reports the per-sample worst
  case of both runs (its ``strengthened`` field says so).
- **A sample's result never depends on its batch mates.** Every random draw — corruption noise,
  random starts, Square's windows, restarts, a stochastic model's own noise under EOT and at
  prediction — comes from the sample's own stream, keyed by the seed and the sample's index in
  the evaluated set (:mod:`spikeshield.streams`): the batch size and the short last batch change
  nothing. Event-frame corruptions take the meaning of a frame value from the dataset's
  ``meta["event_values"]`` (or ``event_values``), never from the batch.
- **Stochastic models** (Poisson encoder, noisy neurons, random oscillation phase): every
  prediction of a sample (clean, noisy, adversarial) is made with the same draws, so ε = 0
  reproduces clean accuracy exactly and comparisons are paired. Attacks on them should use EOT
  (``eot_samples`` > 1); a warning says so otherwise.
- **The model is left exactly as it was** (every module's mode, every parameter and buffer),
  also when the evaluation fails half-way (:func:`spikeshield.preserve.preserved`).
- The model must start from a fresh neuron state on every call; this is checked before the
  evaluation (two identical calls must agree, under the same seed for stochastic models).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from spikeshield import validate
from spikeshield.attacks.assg import SharpnessSearch, search_sharpness
from spikeshield.attacks.base import Attack, build_attack, per_sample_norm
from spikeshield.attacks.checks import (
    Evidence,
    PlanEntry,
    Sweep,
    gather_evidence,
    gather_true_gradient,
    run_checks,
)
from spikeshield.attacks.events import EVENT_VALUES
from spikeshield.attacks.gradient import BPTT, AttackerGradient, has_fake_gradient, resolve_gradient
from spikeshield.attacks.noise import CORRUPTIONS, corrupt
from spikeshield.attacks.oracle import Oracle
from spikeshield.attacks.preflight import InputGradientError, assert_input_gradient
from spikeshield.data.base import ArrayDataset
from spikeshield.errors import SpikeshieldError, UsageError
from spikeshield.preserve import preserved
from spikeshield.progress import Progress
from spikeshield.runtime import configure_threads
from spikeshield.streams import SampleStreams, derive_seed, sample_streams

__all__ = ["StateLeakError", "check_fresh_state", "derive_seed", "evaluate_robustness", "seeded"]


class StateLeakError(SpikeshieldError):
    """The model's output depends on earlier calls: neuron state leaks between calls."""


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global RNG seeded to ``seed``, restoring the caller's RNG after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def check_fresh_state(model: nn.Module, x: Tensor, seed: int = 0) -> dict[str, bool]:
    """Check that ``model`` starts from a fresh state on every call (the model is left as it was).

    Two identical calls (under two different random seeds) must give identical scores; if they
    do not, two calls under the same random seed must (then the model is stochastic, not leaking
    state). Raises :class:`StateLeakError` otherwise. Returns ``{"stochastic": ...}``. Every
    call runs under a seed derived from ``seed``: the caller's random state is not touched.
    """

    def call(*tag: object) -> Tensor:
        with seeded(derive_seed(seed, "fresh-state", *tag), x.device):
            return model(x)

    with preserved(model):
        if torch.equal(call(1), call(2)):
            return {"stochastic": False}
        third = call(3)
        call(4)  # a call in between must not matter either
        fourth = call(3)
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
    strengthened: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Setup:
    """What every pass of one evaluation shares."""

    model: nn.Module
    attacker: AttackerGradient
    eot_samples: int
    seed: int
    batch_size: int
    device: torch.device
    bounds: tuple[float, float]
    event_values: str
    progress: bool | None
    search: SharpnessSearch = field(default_factory=SharpnessSearch)
    #: the attacker gradient with ASSG's searched A, per (plan key, ε)
    resolved: dict[tuple[Any, float], AttackerGradient] = field(default_factory=dict)
    #: the search behind each entry of ``resolved``
    searches: dict[tuple[Any, float], dict[str, Any]] = field(default_factory=dict)

    def attacker_for(self, key: Any, eps: float) -> AttackerGradient:
        """The gradient an attack keyed ``key`` uses at ``eps``: with ASSG's A as searched for it,
        else (ε = 0, the large-ε probe: nothing was searched) the midpoint of the search range."""
        resolved = self.resolved.get((key, eps))
        if resolved is not None:
            return resolved
        return (
            self.attacker.with_sharpness(self.search.midpoint)
            if self.attacker.needs_search
            else self.attacker
        )


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


def input_range(dataset: ArrayDataset, bounds: tuple[float, float]) -> tuple[float, float]:
    """The valid input range of an evaluation: the threat model's ``bounds`` where they are
    finite ([0, 1] for images); an open bound (event frames of counts: [0, ∞)) is replaced by
    the evaluated data's own extreme (its largest count)."""
    low, high = bounds
    if math.isfinite(low) and math.isfinite(high):
        return float(low), float(high)
    images = dataset.to_float(dataset.images)
    low = float(low) if math.isfinite(low) else float(images.min())
    high = float(high) if math.isfinite(high) else max(float(images.max()), low)
    return low, high


def _noise_plan(noises: Mapping[str, Sequence[float]] | None) -> dict[str, list[float]]:
    plan: dict[str, list[float]] = {}
    for name, levels in (noises or {}).items():
        CORRUPTIONS.get(name)  # a clear error for unknown names
        plan[name.strip().lower().replace("_", "-")] = sorted({float(level) for level in levels})
    return plan


def _event_values(event_values: str | None, dataset: ArrayDataset) -> str:
    value = event_values if event_values is not None else dataset.meta.get("event_values", "counts")
    if value not in EVENT_VALUES:
        raise UsageError(f"event values must be one of {', '.join(EVENT_VALUES)}, got {value!r}")
    return value


def _budgets(values: float | Sequence[float]) -> list[float]:
    """The budgets ``values`` (one number or a sequence of them), sorted, without repeats."""
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    bad = UsageError(f"eps must be a number or a sequence of numbers, got {values!r}")
    if isinstance(values, (str, bytes, bool)):
        raise bad
    try:
        out = sorted({float(e) for e in values})
    except (TypeError, ValueError):
        raise bad from None
    for e in out:
        if not math.isfinite(e) or e < 0:
            raise UsageError(f"eps must be finite and >= 0, got {e}")
    return out


def make_setup(
    model: nn.Module,
    dataset: ArrayDataset,
    *,
    gradient: str | AttackerGradient = "bptt",
    eot_samples: int = 1,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    bounds: tuple[float, float] = (0.0, 1.0),
    event_values: str | None = None,
    progress: bool | None = None,
    search: SharpnessSearch | None = None,
) -> _Setup:
    """Check an evaluation's common arguments and bundle them (shared with the suites)."""
    configure_threads()  # keeps an explicit choice; see spikeshield.runtime
    device = torch.device(device) if not isinstance(device, torch.device) else device
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    if len(dataset) == 0:
        raise UsageError("the evaluation set is empty")
    attacker = resolve_gradient(gradient, model)
    Oracle(model, BPTT, eot_samples, bounds)  # validates eot_samples and bounds
    values = _event_values(event_values, dataset)
    return _Setup(
        model,
        attacker,
        eot_samples,
        seed,
        batch_size,
        device,
        bounds,
        values,
        progress,
        search or SharpnessSearch(),
    )


def preflight(setup: _Setup, dataset: ArrayDataset, gradients: Sequence[AttackerGradient]) -> dict[str, Any]:
    """Before attacking (model in eval mode): the model must start from a fresh state on every
    call, and its input gradient on the first batch must be finite and not zero everywhere
    (:func:`~spikeshield.attacks.preflight.assert_input_gradient`) under each attacker gradient
    of ``gradients``. Of an ``adaptive`` gradient, every member is checked: a member without a
    gradient adds a warning (the others still attack), all of them without one is the error.
    Returns ``{"stochastic": ..., "warnings": [...]}``."""
    x, y = next(dataset.batches(min(16, len(dataset)), device=setup.device))
    state: dict[str, Any] = {**check_fresh_state(setup.model, x, setup.seed), "warnings": []}
    streams = SampleStreams.keyed(setup.seed, range(len(y)), "preflight")
    for attacker in gradients:
        errors = []
        members = attacker.with_sharpness(setup.search.midpoint).members
        for member in members:
            try:
                with seeded(derive_seed(setup.seed, "preflight"), setup.device):
                    assert_input_gradient(
                        setup.model,
                        x,
                        y,
                        member,
                        eot_samples=setup.eot_samples,
                        bounds=setup.bounds,
                        streams=streams,
                    )
            except InputGradientError as exc:
                errors.append(exc)
        if len(errors) == len(members):
            raise errors[0]
        state["warnings"] += [
            f"gradient member without a usable gradient (it fools nothing): {e}" for e in errors
        ]
    return state


def evaluate_robustness(
    model: nn.Module,
    dataset: ArrayDataset,
    *,
    attacks: Sequence[Attack | str | tuple[Attack | str, Sequence[float]]] = (),
    eps: float | Sequence[float] = (),
    noises: Mapping[str, Sequence[float]] | None = None,
    gradient: str | AttackerGradient = "bptt",
    eot_samples: int = 1,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    bounds: tuple[float, float] = (0.0, 1.0),
    event_values: str | None = None,
    checks: bool = True,
    check_samples: int = 500,
    sharpness_search: SharpnessSearch | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset`` under ``attacks`` × ``eps`` and ``noises`` × levels.

    Args:
        attacks: attack names or :class:`Attack` templates (their own ``eps`` is replaced by
            each value of ``eps``), or ``(attack, budgets)`` pairs for an attack with its own
            budgets.
        eps: budgets, one number or a sequence; with ``checks`` an ε = 0 run is added to the
            first gradient attack if missing (it must reproduce clean accuracy exactly).
        noises: ``{corruption name: levels}``.
        gradient: the attacker gradient (see :mod:`spikeshield.attacks.gradient`). With ``assg``
            without A, A is searched for every gradient attack and ε > 0 on the first clean-
            correct samples (``sharpness_search``), and each record says what was tried.
        eot_samples: gradient/score passes averaged per query (EOT), for stochastic models.
        seed: every random choice derives from it and the sample's index (recorded).
        event_values: what an event-frame cell holds (``counts``, ``binary``, ``normalised``);
            default: the dataset's ``meta["event_values"]``, else ``counts``.
        checks: run the gradient-masking checks (also the extra budget and large-ε runs on the
            first ``check_samples`` samples, and the stronger rerun when an attack had not
            converged).

    Raises:
        InputGradientError: before any attack, if the input gradient of a batch is zero
            everywhere or not finite under the attacker's gradient (the message names the layer).
        StateLeakError: if the model keeps state from one call to the next.
        UsageError: if ``check_samples`` is not a positive integer.

    The model is left exactly as it was, also when this raises.
    """
    validate.positive_int("check_samples", check_samples)
    entries = [a if isinstance(a, tuple) else (a, None) for a in attacks]
    templates = [build_attack(a) if isinstance(a, str) else a for a, _ in entries]
    own_levels = [None if levels is None else _budgets(levels) for _, levels in entries]
    eps_list = _budgets(eps)
    if any(levels is None for levels in own_levels) and not eps_list:
        raise UsageError("attacks were asked for but no eps values were given")
    noise_plan = _noise_plan(noises)
    setup = make_setup(
        model,
        dataset,
        gradient=gradient,
        eot_samples=eot_samples,
        seed=seed,
        batch_size=batch_size,
        device=device,
        bounds=bounds,
        event_values=event_values,
        progress=progress,
        search=sharpness_search,
    )
    attacker = setup.attacker

    with preserved(model):
        model.eval()
        state = preflight(setup, dataset, [attacker] if any(t.uses_gradient for t in templates) else [])
        warnings: list[str] = state.pop("warnings")
        if state["stochastic"] and eot_samples == 1 and templates:
            warnings.append(
                "the model is stochastic but was attacked without EOT (eot_samples = 1): "
                "gradient attacks may be weakened; use --eot N"
            )
        plan = _plan(templates, own_levels, eps_list, checks)
        start = time.perf_counter()
        if attacker.needs_search:
            _search_plan(setup, dataset, plan, log)
        result = _sweep(setup, dataset, plan, noise_plan, "robustness")
        clean_correct, records = result["clean"], result["records"]
        log(f"main sweep: {time.perf_counter() - start:.1f}s")
        check_report = skipped_checks()
        if checks:
            evidence = gather_evidence(
                dataset=dataset,
                records=records,
                clean=clean_correct,
                plan=plan,
                attacker=attacker,
                sweep=lambda sub, sub_plan, tag: _sweep(setup, sub, sub_plan, {}, f"check: {tag}"),
                check_samples=check_samples,
                input_range=input_range(dataset, setup.bounds),
            )
            gather_true_gradient(evidence, dataset, _true_gradient_sweep(setup))
            check_report = run_checks(evidence)
            check_report["warnings"] += _strengthen(evidence, check_report["checks"], setup, dataset)
        warnings += check_report.pop("warnings", [])

    return envelope(setup, dataset, clean_correct, state, records, check_report, warnings, start)


def _true_gradient_sweep(setup: _Setup) -> Sweep | None:
    """For a model with a fake backward whose attacker does not already follow the true forward:
    a check sweep through the true forward's gradient (ASSG's searched A kept); else None."""
    true = setup.attacker.through_true_forward()
    if true is setup.attacker or not has_fake_gradient(setup.model):
        return None
    resolved = {k: g.through_true_forward() for k, g in setup.resolved.items()}
    true_setup = dataclasses.replace(setup, attacker=true, resolved=resolved)
    return lambda sub, sub_plan, tag: _sweep(true_setup, sub, sub_plan, {}, f"check: {tag}")


def skipped_checks() -> dict[str, Any]:
    """The check report of an evaluation whose gradient-masking checks were switched off."""
    return {
        "checks": [],
        "gradient_masking_suspected": None,  # unknown: not checked
        "reasons": [],
        "warnings": ["the gradient-masking checks were skipped: gradient masking was not looked for"],
    }


def envelope(
    setup: _Setup,
    dataset: ArrayDataset,
    clean: Tensor,
    state: dict[str, Any],
    records: Sequence[_Record],
    check_report: dict[str, Any],
    warnings: list[str],
    start: float,
) -> dict[str, Any]:
    """The JSON-able result of an evaluation (``spikeshield-robustness`` format 1)."""
    return {
        "format": "spikeshield-robustness",
        "format_version": 1,
        "samples": len(dataset),
        "clean_accuracy": int(clean.sum()) / clean.numel(),
        "clean_correct": int(clean.sum()),
        "stochastic_model": state["stochastic"],
        **setup.attacker.describe(),
        "eot_samples": setup.eot_samples,
        "seed": setup.seed,
        "random_streams": "per sample: derived from the seed and the sample's index in the evaluated set",
        "batch_size": setup.batch_size,
        "bounds": list(setup.bounds),
        "robust_accuracy_convention": "correct on the clean input and on every adversarial point tried",
        "records": [public_record(r) for r in records],
        **check_report,
        "warnings": warnings,
        "seconds": time.perf_counter() - start,
    }


def _plan(
    templates: list[Attack], own_levels: list[list[float] | None], eps_list: list[float], checks: bool
) -> list[PlanEntry]:
    """``(key, attack, levels)`` per attack (its own budgets, else ``eps_list``); with checks,
    ε = 0 is added to the first iterative gradient attack (else the first gradient one)."""
    gradient_attacks = [t for t in templates if t.uses_gradient]
    zero_for = next(
        (t for t in gradient_attacks if t.iterative), gradient_attacks[0] if gradient_attacks else None
    )
    plan: list[PlanEntry] = []
    for i, (template, own) in enumerate(zip(templates, own_levels, strict=True)):
        levels = list(eps_list if own is None else own)
        if checks and template is zero_for and 0.0 not in levels:
            levels = [0.0, *levels]
        plan.append((i, template, levels))
    return plan


def _strengthen(
    evidence: Evidence, checks: list[dict[str, Any]], setup: _Setup, dataset: ArrayDataset
) -> list[str]:
    """If a convergence check failed, rerun the primary attack with the stronger settings on
    every sample at every ε > 0, and make each of its records the per-sample worst case of both
    runs (said in the record's ``strengthened`` field). Returns the warnings."""
    failed = [c for c in checks if c["category"] == "convergence" and c["status"] == "fail"]
    if not failed or evidence.primary is None:
        return []
    stronger: dict[str, Any] = {}
    for c in failed:
        stronger.update(c["stronger_settings"])
    template, records = evidence.primary
    targets = [r for r in records if r.info["eps"] > 0]
    attack = template.with_options(**stronger)
    plan = [(evidence.key, attack, [r.info["eps"] for r in targets])]
    out = _sweep(setup, dataset, plan, {}, "stronger rerun")
    for rec, strong in zip(targets, out["records"], strict=True):
        before = rec.correct.clone()
        rec.correct &= strong.correct
        rec.seconds += strong.seconds
        rec.model_calls += strong.model_calls
        rec.strengthened = {
            "because": [c["check"] for c in failed],
            "stronger_settings": stronger,
            "robust_accuracy": "per-sample worst case of the run as configured and the stronger rerun",
            "accuracy_as_configured": int(before.sum()) / before.numel(),
            "accuracy_stronger_run": int(strong.correct.sum()) / strong.correct.numel(),
            "fooled_only_by_stronger_run": int((before & ~strong.correct).sum()),
        }
    settings = ", ".join(f"{k}={v}" for k, v in stronger.items())
    return [
        f"{template.name} had not converged ({', '.join(c['check'] for c in failed)} failed): its robust "
        f"accuracy at every eps > 0 is the per-sample worst case of the configured run and a rerun with "
        f"{settings} (see each record's 'strengthened'); the rerun itself was not checked for convergence"
    ]


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
        if record.strengthened is not None:
            out["strengthened"] = record.strengthened
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


def _noise_info(name: str, level: float, setup: _Setup) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": "noise", "noise": name, "level": level, "seed": setup.seed}
    if "values" in getattr(CORRUPTIONS.get(name), "options", ()):
        info["event_values"] = setup.event_values
    return info


def _new_record(setup: _Setup, key: Any, attack: Attack, n: int) -> _Record:
    """An empty record of ``attack`` (keyed ``key`` in the plan) over ``n`` samples."""
    attacker = setup.attacker_for(key, attack.eps)
    info = _attack_info(attack, attacker, setup.eot_samples, setup.seed)
    if attack.uses_gradient and (key, attack.eps) in setup.searches:
        info["assg_search"] = setup.searches[key, attack.eps]
    adaptive = attacker.adaptive and attack.uses_gradient
    return _Record(
        info,
        torch.zeros(n, dtype=torch.bool),
        member_fooled={m.name: 0 for m in attacker.members} if adaptive else None,
    )


def clean_correct(setup: _Setup, dataset: ArrayDataset) -> Tensor:
    """Which samples of ``dataset`` the model classifies correctly (paired draws, as everywhere)."""
    out = torch.zeros(len(dataset), dtype=torch.bool)
    offset = 0
    for x, y in dataset.batches(setup.batch_size, device=setup.device):
        index = torch.arange(offset, offset + len(y))
        out[index] = (_predict(setup, x, index) == y).cpu()
        offset += len(y)
    return out


def attack_subset(
    setup: _Setup,
    dataset: ArrayDataset,
    indices: Tensor,
    key: Any,
    attack: Attack,
    desc: str = "",
    attacker: AttackerGradient | None = None,
) -> _Record:
    """Attack samples ``indices`` of ``dataset`` (all classified correctly clean), in batches.

    Each sample's random streams are keyed by its index in ``dataset``, ``key`` and ε, as in
    the main sweep, so a sample gets the same attack whichever subset it is attacked in.
    ``attacker`` overrides the gradient (default: ``setup.attacker_for(key, ε)``). Returns a
    record whose ``correct`` is aligned with ``indices``.
    """
    if attacker is not None:
        setup = dataclasses.replace(setup, resolved={**setup.resolved, (key, attack.eps): attacker})
    rec = _new_record(setup, key, attack, len(indices))
    batches = Progress(
        range(0, len(indices), setup.batch_size),
        total=-(-len(indices) // setup.batch_size),
        desc=desc or f"{attack.name}@{attack.eps:g}",
        enabled=setup.progress,
        unit="batch",
    )
    for start in batches:
        index = indices[start : start + setup.batch_size]
        x = dataset.to_float(dataset.images.index_select(0, index)).to(setup.device)
        y = dataset.labels.index_select(0, index).to(setup.device)
        t0 = time.perf_counter()
        ok = torch.ones(len(y), dtype=torch.bool, device=setup.device)
        rec.correct[start : start + len(y)] = _attack_batch(setup, rec, key, attack, (x, y, index), ok).cpu()
        rec.seconds += time.perf_counter() - t0
    return rec


def _search_plan(
    setup: _Setup, dataset: ArrayDataset, plan: Sequence[PlanEntry], log: Callable[[str], None]
) -> None:
    """Search ASSG's A for every gradient attack of ``plan`` and ε > 0 on the first clean-correct
    samples (``setup.search.samples``), and record the result in ``setup``."""
    correct = clean_correct(setup, dataset).nonzero().squeeze(1)
    probe = correct[: setup.search.samples] if setup.search.samples is not None else correct
    for key, template, levels in plan:
        if not template.uses_gradient:
            continue
        for e in levels:
            if e == 0 or (key, e) in setup.resolved:
                continue
            attack = template.at(e)

            def robust(a: float, attack: Attack = attack, key: Any = key) -> int:
                gradient = setup.attacker.with_sharpness(a)
                rec = attack_subset(setup, dataset, probe, key, attack, f"assg A={a:.4g}", gradient)
                return int(rec.correct.sum())

            found = search_sharpness(robust, setup.search)
            setup.resolved[key, e] = setup.attacker.with_sharpness(found.best)
            setup.searches[key, e] = found.record(setup.search, len(probe))
            log(
                f"assg: {attack.name} eps {e:g}: A = {found.best:.4g} "
                f"({len(found.tried)} runs on {len(probe)} samples)"
            )


def _predict(setup: _Setup, inputs: Tensor, index: Tensor) -> Tensor:
    """Predicted classes of samples ``index`` of the evaluated set: every call makes the same
    random draws for a sample, so its clean and perturbed predictions are paired."""
    streams = SampleStreams.keyed(setup.seed, index, "eval")
    with seeded(derive_seed(setup.seed, "eval"), setup.device), sample_streams(streams), torch.no_grad():
        return setup.model(inputs).argmax(1)


def _attack_batch(
    setup: _Setup,
    rec: _Record,
    key: Any,
    attack: Attack,
    batch: tuple[Tensor, Tensor, Tensor],
    clean_ok: Tensor,
) -> Tensor:
    """Which samples of the batch stay correct under ``attack`` (each gradient member in turn
    attacks the samples no earlier member fooled)."""
    x, y, index = batch
    ok = clean_ok.clone()
    members = setup.attacker_for(key, attack.eps).members if attack.uses_gradient else (BPTT,)
    for g, member in enumerate(members):
        idx = ok.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        oracle = Oracle(setup.model, member, setup.eot_samples, setup.bounds)
        streams = SampleStreams.keyed(setup.seed, index[idx.cpu()], "attack", key, attack.eps, g)
        with seeded(derive_seed(setup.seed, "attack-rng", key, attack.eps, g), setup.device):
            x_adv = attack.perturb(oracle, x[idx], y[idx], streams).detach()
        problem = _budget_violation(x_adv, x[idx], attack.eps, attack.norm, setup.bounds)
        if problem:
            raise RuntimeError(f"attack {attack.name!r} broke its threat model: {problem}")
        fooled = idx[_predict(setup, x_adv, index[idx.cpu()]) != y[idx]]
        if rec.member_fooled is not None:
            rec.member_fooled[member.name] += len(fooled)
        ok[fooled] = False
        rec.model_calls += oracle.forward_calls + oracle.gradient_calls
        rec.attacked += len(idx)
    return ok


def _sweep(
    setup: _Setup,
    dataset: ArrayDataset,
    plan: Sequence[PlanEntry],
    noise_plan: Mapping[str, Sequence[float]],
    desc: str,
) -> dict[str, Any]:
    """One pass over ``dataset``: clean, every noise level, every attack at every ε.

    Records come noise first, then attacks in the plan's order. Sample ``i`` of ``dataset`` is
    sample ``i`` of the evaluated set (checks run on its first samples).
    """
    n = len(dataset)
    clean = torch.zeros(n, dtype=torch.bool)
    noise_runs = [
        (name, level, _Record(_noise_info(name, level, setup), torch.zeros(n, dtype=torch.bool)))
        for name, levels in noise_plan.items()
        for level in levels
    ]
    attack_runs = [
        (key, template.at(e), _new_record(setup, key, template.at(e), n))
        for key, template, levels in plan
        for e in levels
    ]
    batches = Progress(
        dataset.batches(setup.batch_size, device=setup.device),
        total=-(-n // setup.batch_size),
        desc=desc,
        enabled=setup.progress,
        unit="batch",
    )
    offset = 0
    for x, y in batches:
        index = torch.arange(offset, offset + len(y))
        offset += len(y)
        clean_ok = _predict(setup, x, index) == y
        clean[index] = clean_ok.cpu()
        for name, level, rec in noise_runs:
            t0 = time.perf_counter()
            streams = SampleStreams.keyed(setup.seed, index, "noise", name, level)
            noisy = corrupt(name, x, level, streams, values=setup.event_values)
            rec.correct[index] = (_predict(setup, noisy, index) == y).cpu()
            rec.seconds += time.perf_counter() - t0
        for key, attack, rec in attack_runs:
            t0 = time.perf_counter()
            rec.correct[index] = _attack_batch(setup, rec, key, attack, (x, y, index), clean_ok).cpu()
            rec.seconds += time.perf_counter() - t0
            if batches.enabled:
                batches.set(attack=f"{attack.name}@{attack.eps:g}")
    return {"clean": clean, "records": [r for *_, r in noise_runs] + [r for *_, r in attack_runs]}
