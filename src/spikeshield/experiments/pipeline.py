"""One cell's work: :func:`train_cell` (resumable) and :func:`evaluate` (the one evaluation path).

``spikeshield evaluate``, ``spikeshield experiment`` and ``spikeshield run`` all evaluate a
trained run through :func:`evaluate`: it loads the run, builds the attacks, calls
:func:`~spikeshield.attacks.evaluate_robustness` (a named suite, ``--suite``, runs
:func:`~spikeshield.attacks.evaluate_suite` instead), measures the model's firing rate on the same
clean samples (:func:`~spikeshield.analysis.firing_rates.model_firing_rates`) and writes
``robustness.json`` / ``.csv`` / PNGs into a folder of their own,
``RUN/evaluations/<gradient or suite>-<settings hash>/``. A second evaluation with other settings
therefore never replaces the first; one with the same settings on the same weights (SHA-256 of
the tensors of ``model.safetensors``) is reused instead of redone, unless ``overwrite`` is asked for.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from spikeshield.analysis.firing_rates import model_firing_rates
from spikeshield.analysis.robustness import (
    EVALUATIONS_DIR,
    ROBUSTNESS_FILE,
    clear_evaluation,
    read_evaluation,
    write_robustness,
)
from spikeshield.attacks import (
    ATTACKS,
    CORRUPTIONS,
    SUITES,
    SharpnessSearch,
    ann_twin,
    build_attack,
    corrupt,
    evaluate_robustness,
    evaluate_suite,
    fit_twin,
)
from spikeshield.attacks.gradient import has_fake_gradient
from spikeshield.data import dataset_info, load_dataset
from spikeshield.environment import environment
from spikeshield.errors import DataError, UsageError
from spikeshield.experiments.plan import Cell, Plan
from spikeshield.io import refuse_to_replace
from spikeshield.kernels import backends_used
from spikeshield.runs import (
    LoadedRun,
    check_source_run,
    load_model,
    load_run,
    read_config,
    same_weights,
    weights_digest,
)
from spikeshield.training import accuracy, resolve_device, train
from spikeshield.training.trainer import dataset_options_for

DEFAULT_ATTACKS = ("fgsm", "pgd")
DEFAULT_NOISE_LEVELS = {
    "gaussian": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    "uniform": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    "salt-pepper": (0.0, 0.05, 0.1, 0.2, 0.3),
    "event-drop": (0.0, 0.2, 0.4, 0.6, 0.8),
    "event-insert": (0.0, 0.05, 0.1, 0.2, 0.5),
    "spatial-jitter": (0.0, 0.5, 1.0, 2.0, 3.0),
}


def default_eps(norm: str, channels: int) -> list[float]:
    """The default sweep: MNIST-scale budgets for 1-channel inputs, CIFAR-scale otherwise."""
    if norm == "linf":
        return [0.0, 0.05, 0.1, 0.2, 0.3] if channels == 1 else [0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255]
    return [0.0, 0.5, 1.0, 1.5, 2.0, 3.0] if channels == 1 else [0.0, 0.25, 0.5, 1.0]


def suite_options(suite: str) -> tuple[str, ...]:
    """The attack options a named suite takes (``steps``, ``queries``); it fixes the others."""
    return () if suite == "rssnn-standard" else ("steps", "queries")


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides an evaluation's numbers; hashed to name its folder and to reuse it."""

    attacks: tuple[str, ...] = ()
    eps: tuple[float, ...] | None = None
    """Budgets; None: :func:`default_eps` for the norm and the input's channels."""
    norm: str = "linf"
    attack_options: dict[str, Any] = field(default_factory=dict)
    """``steps``, ``step_size``, ``schedule``, ``restarts``, ``queries`` (passed where accepted)."""
    gradient: str = "bptt"
    eot_samples: int | None = 1
    """EOT passes per query; None (suites only): the suite's default."""
    noises: dict[str, tuple[float, ...]] = field(default_factory=dict)
    limit: int | None = None
    batch_size: int = 256
    seed: int = 0
    source: str | None = None
    """Transfer attack: the run folder whose model crafts the examples (default: the ANN twin)."""
    twin_epochs: int = 1
    checks: bool = True
    check_samples: int = 500
    suite: str | None = None
    """A named evaluation suite (:data:`~spikeshield.attacks.SUITES`) instead of ``attacks``."""
    assg_rounds: int = 8
    """Rounds of the search over ASSG's A (``--gradient assg``, the ``reliable`` suite)."""
    assg_samples: int | None = 100
    """Samples each A of that search is tried on."""
    split: str = "test"
    """``test``, or ``holdout``: the training samples the run did not train on (a validation set,
    for choosing among runs without looking at the test set; see :func:`spikeshield.load_run`)."""

    @classmethod
    def from_request(
        cls,
        *,
        attacks: list[str] | None,
        noises: list[str] | None,
        levels: list[float] | None,
        eps: list[float] | None,
        attack_options: dict[str, Any],
        suite: str | None = None,
        **settings: Any,
    ) -> EvalSettings:
        """``spikeshield evaluate``'s defaults: FGSM and PGD plus Gaussian noise when neither
        ``attacks`` nor ``noises`` is given; each noise at ``levels`` or its default levels;
        ``attack_options`` that are None are left to each attack's default. With ``suite``, the
        suite's own attacks (no ``attacks``, ``noises``, ``levels``; L∞)."""
        if suite is not None:
            return cls._suite_request(suite, attacks, noises, levels, eps, attack_options, settings)
        if settings.get("eot_samples", 1) is None:
            settings["eot_samples"] = 1
        for name in noises or []:
            if _is_number(name):
                raise UsageError(
                    f"--corruption takes names ({', '.join(CORRUPTIONS.names())}), got {name!r}; "
                    f"levels go to --levels, e.g. --corruption gaussian --levels {name}"
                )
        if levels is not None and not noises:
            shown = " ".join(f"{v:g}" for v in levels)
            raise UsageError(
                f"--levels {shown} sets the levels of the random corruptions, and none was named: "
                f"add --corruption NAME (e.g. --corruption gaussian --levels {shown}); attack budgets "
                "are --eps"
            )
        if attacks is None and noises is None:
            attacks, noises = list(DEFAULT_ATTACKS), ["gaussian"]
        for name in attacks or []:
            ATTACKS.get(name)
        noise_plan = {
            n: tuple(levels if levels is not None else DEFAULT_NOISE_LEVELS.get(n, (0.0, 0.1, 0.2)))
            for n in noises or []
        }
        return cls(
            attacks=tuple(attacks or ()),
            eps=None if eps is None else tuple(eps),
            attack_options={k: v for k, v in attack_options.items() if v is not None},
            noises=noise_plan,
            **settings,
        )

    @classmethod
    def _suite_request(
        cls,
        suite: str,
        attacks: list[str] | None,
        noises: list[str] | None,
        levels: list[float] | None,
        eps: list[float] | None,
        attack_options: dict[str, Any],
        settings: dict[str, Any],
    ) -> EvalSettings:
        SUITES.get(suite)
        flags = (("--attack", attacks), ("--corruption", noises), ("--levels", levels))
        given = [flag for flag, value in flags if value]
        if given:
            raise UsageError(
                f"--suite {suite} runs its own fixed list of attacks and no random corruptions; "
                f"drop {', '.join(given)}"
            )
        if settings.get("norm", "linf") != "linf":
            raise UsageError(f"--suite {suite} attacks under the L-inf norm only; drop --norm")
        options = {k: v for k, v in attack_options.items() if v is not None}
        extra = sorted(set(options) - set(suite_options(suite)))
        if extra:
            names = ", ".join(e.replace("_", " ") for e in extra)
            flags = " ".join("--" + e.replace("_", "-") for e in extra)  # the command line's spelling
            raise UsageError(f"--suite {suite} fixes its {names}; drop {flags}")
        if suite == "rssnn-standard" and eps is not None and len(eps) != 1:
            raise UsageError(f"--suite rssnn-standard takes one --eps (its main budget), got {len(eps)}")
        return cls(suite=suite, eps=None if eps is None else tuple(eps), attack_options=options, **settings)

    def resolved(self, channels: int) -> EvalSettings:
        """The settings with the default ε sweep filled in (``channels``: of the model's input) and
        every budget and level a float, so equal settings always hash alike."""
        if self.suite is not None:  # a suite's default budget is its own
            return replace(self, eps=None if self.eps is None else tuple(float(e) for e in self.eps))
        eps = self.eps if self.eps is not None else tuple(default_eps(self.norm, channels))
        noises = {k: tuple(float(v) for v in levels) for k, levels in self.noises.items()}
        return replace(self, eps=tuple(float(e) for e in eps), noises=noises)

    def digest(self) -> str:
        # settings added later count only when they differ from their default, so that earlier
        # evaluations keep their hash (and are reused)
        body = {k: v for k, v in asdict(self).items() if not (k in _LATER and v == _LATER[k])}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def folder_name(self) -> str:
        name = self.suite if self.suite is not None else self.gradient
        slug = "".join(c if c.isalnum() or c in "-." else "-" for c in name)
        split = "holdout-" if self.split == "holdout" else ""
        return f"{slug}-{split}{self.digest()[:12]}"

    @property
    def sharpness_search(self) -> SharpnessSearch:
        return SharpnessSearch(rounds=self.assg_rounds, samples=self.assg_samples)


#: settings added after evaluations were first hashed, with their defaults
_LATER: dict[str, Any] = {"suite": None, "assg_rounds": 8, "assg_samples": 100, "split": "test"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Evaluation(NamedTuple):
    """One evaluation of a run: its result (``robustness.json``), folder, files, and whether it was reused."""

    result: dict[str, Any]
    folder: Path
    files: list[Path]
    reused: bool


def _input_runs(run_dir: Path, settings: EvalSettings) -> dict[str, Path]:
    """The runs whose weights an evaluation is made from, by the key of their digest in its
    ``inputs`` (part of the reuse check besides the settings)."""
    runs = {"weights_sha256": run_dir}
    if settings.source is not None and ("transfer" in settings.attacks or settings.suite == "reliable"):
        runs["source_weights_sha256"] = check_source_run(settings.source)
    return runs


def _same_inputs(recorded: Any, inputs: dict[str, str], runs: dict[str, Path]) -> bool:
    """Whether an earlier evaluation's ``inputs`` name the same weights (a digest of the file's
    bytes, as evaluations recorded before, counts too: :func:`~spikeshield.runs.same_weights`)."""
    return (
        isinstance(recorded, dict)
        and set(recorded) == set(inputs)
        and all(same_weights(recorded[k], runs[k], inputs[k]) for k in inputs)
    )


def _previous(
    folder: Path, settings: EvalSettings, inputs: dict[str, str], runs: dict[str, Path], overwrite: bool
) -> Evaluation | None:
    """A finished evaluation in ``folder`` with these settings and inputs (reuse it), or None.

    A folder holding another evaluation, or a damaged ``robustness.json``, is refused unless
    ``overwrite`` (its files are removed only once the new evaluation has finished, so a failure
    leaves the old one in place)."""
    path = folder / ROBUSTNESS_FILE
    if not path.exists() and not path.is_symlink():
        # files of an evaluation's names beside no robustness.json are not ours to replace
        refuse_to_replace(sorted(folder.glob("robustness*")), overwrite=overwrite, what="output")
        return None
    try:
        saved = read_evaluation(path)
    except DataError as exc:
        if overwrite:
            return None
        raise DataError(f"{exc} (pass --overwrite to replace this evaluation)") from None
    same_settings = saved.get("settings_sha256") == settings.digest()
    if same_settings and _same_inputs(saved.get("inputs"), inputs, runs) and not overwrite:
        return Evaluation(saved, folder, sorted(p for p in folder.iterdir() if p.is_file()), True)
    if not overwrite:
        raise UsageError(
            f"{folder} already holds an evaluation with other settings or weights; "
            "pass --overwrite to replace it, or choose another --out"
        )
    return None


def _transfer_source(
    settings: EvalSettings,
    run: LoadedRun,
    root: str | None,
    dev: torch.device,
    progress: bool | None,
    log: Callable[[str], None],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A transfer attack's source model (eval mode): the run ``settings.source``, else the
    model's ANN twin fine-tuned ``settings.twin_epochs``; and what it is."""
    if settings.source is not None:
        source = load_model(settings.source).to(dev).eval()
        return source, {"source": f"run {settings.source}", "model": source.spec}
    twin = ann_twin(run.model).to(dev)
    log(f"fitting the ANN twin for {settings.twin_epochs} epoch(s) …")
    config = run.config
    train_set = load_dataset(config.dataset, "train", root, **dataset_options_for(config))
    fit = fit_twin(
        twin,
        train_set,
        epochs=settings.twin_epochs,
        seed=settings.seed,
        device=dev,
        progress=progress,
    )
    twin_acc = accuracy(twin, run.test_set, settings.batch_size, dev)
    name = f"ANN twin (rate units, fine-tuned {settings.twin_epochs} epoch(s))"
    log(f"ANN twin: test accuracy {twin_acc:.4f}")
    return twin.eval(), {"source": name, "fit": fit, "test_accuracy": twin_acc}


def _templates(
    settings: EvalSettings,
    run: LoadedRun,
    root: str | None,
    dev: torch.device,
    progress: bool | None,
    log: Callable[[str], None],
) -> tuple[list[Any], dict[str, Any] | None]:
    """The attack templates, with the transfer attack's source model built (another run or the ANN twin)."""
    options: dict[str, Any] = dict(settings.attack_options)
    info = None
    if "transfer" in settings.attacks:
        source, info = _transfer_source(settings, run, root, dev, progress, log)
        options.update(source=source, source_name=info["source"])
    attacks = [
        build_attack(a, strict=False, eps=0.0, norm=settings.norm, **options) for a in settings.attacks
    ]
    return attacks, info


def _suite(
    settings: EvalSettings,
    run: LoadedRun,
    root: str | None,
    dev: torch.device,
    progress: bool | None,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The named suite of ``settings`` on the run (the ``reliable`` suite's transfer member, for
    a model with a fake backward, crafts on :func:`_transfer_source`)."""
    assert settings.suite is not None
    if settings.suite == "reliable" and not has_fake_gradient(run.model):
        given = [flag for flag, on in (("--source", settings.source is not None),
                                       ("--twin-epochs", settings.twin_epochs != 1)) if on]  # fmt: skip
        if given:
            raise UsageError(
                f"{' and '.join(given)} {'set' if len(given) > 1 else 'sets'} the source of --suite "
                "reliable's transfer member, which it "
                "runs only on a model with a fake backward (the oscillation defence), and this run's "
                f"model has none; drop {' '.join(given)}"
            )
    options: dict[str, Any] = dict(
        gradient=settings.gradient, seed=settings.seed, batch_size=settings.batch_size, device=dev,
        checks=settings.checks, check_samples=settings.check_samples, progress=progress, log=log,
        bounds=_bounds(run),
    )  # fmt: skip
    info = None
    if settings.suite == "rssnn-standard":
        options.update(eot_samples=settings.eot_samples or 1, sharpness_search=settings.sharpness_search)
        if settings.eps is not None:
            options["eps"] = settings.eps[0]
    else:
        options.update(
            settings.attack_options, eot_samples=settings.eot_samples, search=settings.sharpness_search
        )
        if settings.eps is not None:
            options["eps"] = list(settings.eps)
        if has_fake_gradient(run.model):
            options["source"], info = _transfer_source(settings, run, root, dev, progress, log)
    return evaluate_suite(run.model, run.test_set, settings.suite, **options), info


def _check_noises_fit(settings: EvalSettings, run: LoadedRun) -> None:
    """Each corruption of the sweep, at each level, tried on one evaluation sample before any
    work: an event corruption of images was found only after the transfer attack's ANN twin had
    been fitted (new-user trial). Raises the corruption's own :class:`UsageError`."""
    if not settings.noises or len(run.test_set) == 0:
        return
    x, _ = run.test_set[0]
    values = run.test_set.meta.get("event_values", "counts")
    for name, levels in settings.noises.items():
        for level in levels:
            corrupt(name, x.unsqueeze(0), level, torch.Generator().manual_seed(0), values=values)


def _bounds(run: LoadedRun) -> tuple[float, float]:
    """The input range attacks keep to: [0, 1] for images; event frames of counts are bounded
    below by 0 only (an attack on them moves counts, which [0, 1] would clip)."""
    counts = run.test_set.meta.get("event_values") == "counts"
    return (0.0, math.inf) if counts else (0.0, 1.0)


def _sweep(
    settings: EvalSettings,
    run: LoadedRun,
    attacks: list[Any],
    dev: torch.device,
    progress: bool | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """:func:`~spikeshield.attacks.evaluate_robustness` of the run under the settings."""
    return evaluate_robustness(
        run.model,
        run.test_set,
        bounds=_bounds(run),
        attacks=attacks,
        eps=settings.eps or (),
        noises={k: list(v) for k, v in settings.noises.items()},
        gradient=settings.gradient,
        eot_samples=settings.eot_samples,
        seed=settings.seed,
        batch_size=settings.batch_size,
        device=dev,
        checks=settings.checks,
        check_samples=settings.check_samples,
        sharpness_search=settings.sharpness_search,
        progress=progress,
        log=log,
    )


def evaluate(
    run_dir: str | Path,
    settings: EvalSettings,
    *,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    data_root: str | None = None,
    device: str = "auto",
    command: str = "",
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> Evaluation:
    """Evaluate a trained run under ``settings``; the one path behind evaluate, experiment and run.

    Writes into ``out_dir`` if given, else ``run_dir/evaluations/<gradient>-<hash>/``. Reuses a
    finished evaluation with the same settings and weights; refuses to replace another one
    unless ``overwrite``. Raises :class:`UsageError` for bad settings or a missing run.
    """
    start = time.perf_counter()
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    env = environment(dev)
    config = read_config(run_dir)
    settings = settings.resolved(dataset_info(config.dataset).input_shape[0])
    runs = _input_runs(run_dir, settings)
    inputs = {key: weights_digest(run) for key, run in runs.items()}
    folder = Path(out_dir) if out_dir is not None else run_dir / EVALUATIONS_DIR / settings.folder_name()
    previous = _previous(folder, settings, inputs, runs, overwrite)
    if previous is not None:
        return previous
    run = load_run(run_dir, limit=settings.limit, data_root=data_root, device=dev, split=settings.split)
    root = data_root if data_root is not None else config.data_root
    _check_noises_fit(settings, run)
    if settings.suite is not None:
        result, source_info = _suite(settings, run, root, dev, progress, log)
    else:
        attacks, source_info = _templates(settings, run, root, dev, progress, log)
        result = _sweep(settings, run, attacks, dev, progress, log)
    env["kernels"] = backends_used(run.model)  # fused C / Triton / reference loop, per neuron
    rates = model_firing_rates(
        run.model, run.test_set, batch_size=settings.batch_size, device=dev, seed=settings.seed
    )
    log(f"mean firing rate on the {rates['samples']} clean samples: {rates['mean']:.4f} spikes/neuron/step")
    result = {
        "run": str(run_dir),
        "model": run.model.spec,
        "dataset": config.dataset,
        "split": settings.split,
        "limit": settings.limit,
        "command": command,
        "environment": env,
        "settings": asdict(settings),
        "settings_sha256": settings.digest(),
        "inputs": inputs,
        **result,
        "firing_rate": rates,
        "total_seconds": time.perf_counter() - start,
    }
    if source_info is not None:
        result["transfer_source"] = source_info
    if overwrite:
        clear_evaluation(folder)  # no file of the replaced evaluation stays beside the new set
    title = f"{config.model}/{config.neuron} T={config.time_steps} on {config.dataset}"
    title += " (held-out training samples)" if settings.split == "holdout" else ""
    return Evaluation(result, folder, write_robustness(result, folder, title=title), False)


# ---------------------------------------------------------------------------- one grid cell
def cell_settings(
    protocol: dict[str, Any], gradient: str, *, with_noise: bool, split: str = "test"
) -> EvalSettings:
    """An experiment protocol's settings under one attacker gradient (noise sweeps only with the
    first). On the ``holdout`` split (validation, for choosing settings) the gradient-masking
    checks are left to the test evaluations."""
    return EvalSettings(
        attacks=tuple(protocol["attacks"]),
        eps=tuple(float(e) for e in protocol["eps"]),
        norm=protocol["norm"],
        attack_options={"steps": int(protocol["steps"])},
        gradient=gradient,
        noises={k: tuple(float(v) for v in levels) for k, levels in protocol["noises"].items()}
        if with_noise
        else {},
        limit=protocol["limit"],
        batch_size=int(protocol["batch_size"]),
        seed=int(protocol["seed"]),
        check_samples=int(protocol["check_samples"]),
        checks=split == "test",
        split=split,
    )


#: ``reliable``'s options in an experiment file that set the search over ASSG's A (as
#: ``spikeshield evaluate --assg-rounds --assg-samples``), not its attacks
SEARCH_OPTIONS = ("assg_rounds", "assg_samples")


def suite_search_options(suite: str) -> tuple[str, ...]:
    """The options of :data:`SEARCH_OPTIONS` an experiment file may give the named suite (only
    ``reliable`` searches A); the one place that knows which suite takes them."""
    return SEARCH_OPTIONS if suite == "reliable" else ()


def suite_settings(protocol: dict[str, Any], suite: str) -> EvalSettings:
    """An experiment protocol's settings for the named suite ``protocol["suites"][suite]`` (its
    options, ``reliable`` only: ``steps``, ``queries`` and :data:`SEARCH_OPTIONS`): the
    protocol's budgets (``rssnn-standard``: its one non-zero budget), samples, batch size, seed
    and checks; the suite's own EOT default."""
    eps = [float(e) for e in protocol["eps"]]
    if suite == "rssnn-standard":
        eps = [e for e in eps if e > 0]
    options = dict(protocol["suites"][suite])
    search = {k: options.pop(k) for k in suite_search_options(suite) if k in options}
    return EvalSettings.from_request(
        suite=suite,
        attacks=None,
        noises=None,
        levels=None,
        eps=eps,
        attack_options=options,
        **search,
        norm=protocol["norm"],
        eot_samples=None,
        limit=protocol["limit"],
        batch_size=int(protocol["batch_size"]),
        seed=int(protocol["seed"]),
        check_samples=int(protocol["check_samples"]),
    )


def cell_evaluations(plan: Plan, cell: Cell) -> list[EvalSettings]:
    """The evaluations a cell gets: one per attacker gradient of its dataset's protocol, then one
    per attacker gradient of its ``validation`` protocol (if any) on the held-out training
    samples, then one per named suite (``suites``, on the test samples)."""
    protocol = plan.dataset(cell.dataset).evaluate
    splits = [("test", protocol)]
    if protocol.get("validation"):
        splits.append(("holdout", protocol["validation"]))
    per_gradient = [
        cell_settings(p, g, with_noise=k == 0, split=split)
        for split, p in splits
        for k, g in enumerate(p["gradients"])
    ]
    return per_gradient + [suite_settings(protocol, s) for s in protocol.get("suites", {})]


def train_cell(
    plan: Plan,
    cell: Cell,
    out: Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train one cell into its run folder, continuing an interrupted run; returns its metrics.

    The cell's training mode (registered in :mod:`spikeshield.training.modes`) decides how."""
    run_dir = plan.run_dir(out, cell)
    metrics = train(
        plan.train_config(cell, data_root, device), run_dir, resume=True, progress=progress, log=log
    )
    if not metrics.get("complete"):
        raise UsageError(f"{run_dir}: training did not complete")
    return metrics


def evaluate_cell(
    plan: Plan,
    cell: Cell,
    out: Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> list[Evaluation]:
    """Evaluate one trained cell under its protocol (reusing finished evaluations)."""
    run_dir = plan.run_dir(out, cell)
    return [
        evaluate(
            run_dir,
            s,
            data_root=data_root,
            device=device,
            progress=progress,
            log=log,
            command=f"experiment {plan.name}",
        )
        for s in cell_evaluations(plan, cell)
    ]
