"""``spikeshield evaluate``: load a trained run, evaluate its robustness, write the files."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import spikeshield
from spikeshield.analysis.robustness import write_robustness
from spikeshield.attacks import (
    ATTACKS,
    SUITES,
    SharpnessSearch,
    ann_twin,
    build_attack,
    evaluate_robustness,
    evaluate_suite,
    fit_twin,
)
from spikeshield.attacks.gradient import has_fake_gradient
from spikeshield.data import load_dataset
from spikeshield.errors import UsageError
from spikeshield.io import read_json
from spikeshield.models import SpikingModel
from spikeshield.training import TrainConfig, build_model_for, load_model_weights, resolve_device
from spikeshield.training.trainer import CONFIG_FILE, MODEL_FILE

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


def load_run(run_dir: str | Path) -> tuple[TrainConfig, SpikingModel]:
    """The config and trained model of a run folder (weights checked against the spec)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UsageError(f"run folder {run} does not exist")
    saved = read_json(run / CONFIG_FILE, "run config")
    if not isinstance(saved, dict) or "train" not in saved:
        raise UsageError(f"{run / CONFIG_FILE} is not a spikeshield run config")
    config = TrainConfig.from_dict(saved["train"])
    model = build_model_for(config)
    load_model_weights(run / MODEL_FILE, model, model.spec)
    return config, model


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _source_commit() -> str | None:
    """The git commit of the spikeshield source in use (``+dirty`` if modified), if it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", str(here.parent)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    """Where a result was measured (timings depend on it, and on the load at the time)."""
    env: dict[str, Any] = {
        "spikeshield": spikeshield.__version__,
        "source_commit": _source_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if hasattr(os, "getloadavg"):
        env["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return env


def _transfer_source(
    model: SpikingModel,
    config: TrainConfig,
    root: str | None,
    test_set: Any,
    source: str | Path | None,
    twin_epochs: int,
    seed: int,
    batch_size: int,
    dev: torch.device,
    progress: bool | None,
    log: Callable[[str], None],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The transfer attack's source: the run ``source``, else the model's ANN twin fine-tuned
    for ``twin_epochs`` on the training set. Returns the model (eval mode) and what it is."""
    if source is not None:
        _, source_model = load_run(source)
        return source_model.to(dev).eval(), {"source": f"run {source}", "model": source_model.spec}
    twin = ann_twin(model).to(dev)
    log(f"fitting the ANN twin for {twin_epochs} epoch(s) …")
    train_set = load_dataset(config.dataset, "train", root, **config.dataset_options)
    fit = fit_twin(twin, train_set, epochs=twin_epochs, seed=seed, device=dev, progress=progress)
    from spikeshield.training import accuracy

    twin_acc = accuracy(twin, test_set, batch_size, dev)
    name = f"ANN twin (rate units, fine-tuned {twin_epochs} epoch(s))"
    log(f"ANN twin: test accuracy {twin_acc:.4f}")
    return twin.eval(), {"source": name, "fit": fit, "test_accuracy": twin_acc}


def evaluate_run(
    run_dir: str | Path,
    *,
    attacks: Sequence[str] | None = None,
    eps: Sequence[float] | None = None,
    norm: str = "linf",
    steps: int | None = None,
    step_size: float | None = None,
    schedule: str | None = None,
    restarts: int | None = None,
    gradient: str = "bptt",
    eot_samples: int = 1,
    sharpness_search: SharpnessSearch | None = None,
    queries: int | None = None,
    noises: Sequence[str] | None = None,
    levels: Sequence[float] | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    source: str | Path | None = None,
    twin_epochs: int = 1,
    checks: bool = True,
    check_samples: int = 500,
    data_root: str | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
    command: str = "",
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[Path]]:
    """Evaluate a run folder and write ``robustness.json`` / ``.csv`` / PNGs; returns the result."""
    start = time.perf_counter()
    env = environment()
    if levels is not None and not noises:
        raise UsageError("--levels needs --noise NAME")
    if attacks is None and noises is None:
        attacks, noises = list(DEFAULT_ATTACKS), ["gaussian"]
    attacks = list(attacks or [])
    noises = list(noises or [])
    for name in attacks:
        ATTACKS.get(name)
    config, model = load_run(run_dir)
    dev = resolve_device(device)
    model.to(dev)
    root = data_root if data_root is not None else config.data_root
    test_set = load_dataset(config.dataset, "test", root, limit=limit, **config.dataset_options)
    channels = model.input_shape[0]
    eps_list = list(eps) if eps is not None else default_eps(norm, channels)
    noise_plan = {
        n: list(levels) if levels is not None else list(DEFAULT_NOISE_LEVELS.get(n, (0.0, 0.1, 0.2)))
        for n in noises
    }

    options: dict[str, Any] = {
        k: v
        for k, v in dict(
            steps=steps, step_size=step_size, schedule=schedule, restarts=restarts, queries=queries
        ).items()
        if v is not None
    }
    source_info: dict[str, Any] | None = None
    if "transfer" in attacks:
        source_model, source_info = _transfer_source(
            model, config, root, test_set, source, twin_epochs, seed, batch_size, dev, progress, log
        )
        options.update(source=source_model, source_name=source_info["source"])
    templates = [build_attack(name, strict=False, eps=0.0, norm=norm, **options) for name in attacks]
    result = evaluate_robustness(
        model,
        test_set,
        attacks=templates,
        eps=eps_list,
        noises=noise_plan,
        gradient=gradient,
        eot_samples=eot_samples,
        seed=seed,
        batch_size=batch_size,
        device=dev,
        checks=checks,
        check_samples=check_samples,
        sharpness_search=sharpness_search,
        progress=progress,
        log=log,
    )
    return _write(result, run_dir, config, model, limit, command, env, start, source_info, out_dir)


def _write(
    result: dict[str, Any],
    run_dir: str | Path,
    config: TrainConfig,
    model: SpikingModel,
    limit: int | None,
    command: str,
    env: dict[str, Any],
    start: float,
    source_info: dict[str, Any] | None,
    out_dir: str | Path | None,
) -> tuple[dict[str, Any], list[Path]]:
    """Add what was evaluated and where, and write the files."""
    result = {
        "run": str(run_dir),
        "model": model.spec,
        "dataset": config.dataset,
        "split": "test",
        "limit": limit,
        "command": command,
        "environment": env,
        **result,
        "total_seconds": time.perf_counter() - start,
    }
    if source_info is not None:
        result["transfer_source"] = source_info
    title = f"{config.model}/{config.neuron} T={config.time_steps} on {config.dataset}"
    written = write_robustness(result, out_dir if out_dir is not None else run_dir, title=title)
    return result, written


def evaluate_suite_run(
    run_dir: str | Path,
    suite: str,
    *,
    eps: Sequence[float] | None = None,
    steps: int | None = None,
    queries: int | None = None,
    gradient: str = "bptt",
    eot_samples: int | None = None,
    sharpness_search: SharpnessSearch | None = None,
    limit: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    source: str | Path | None = None,
    twin_epochs: int = 1,
    checks: bool = True,
    check_samples: int = 500,
    data_root: str | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
    command: str = "",
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[Path]]:
    """``spikeshield evaluate --suite NAME``: run a named suite on a run folder and write the
    same files as :func:`evaluate_run`. ``eps``: rssnn-standard takes one budget (default
    8/255), reliable one or more (default 8/255). The transfer member of ``reliable`` (models
    with a fake backward) crafts on ``source``, else on the ANN twin fine-tuned ``twin_epochs``."""
    start = time.perf_counter()
    env = environment()
    SUITES.get(suite)
    config, model = load_run(run_dir)
    dev = resolve_device(device)
    model.to(dev)
    root = data_root if data_root is not None else config.data_root
    test_set = load_dataset(config.dataset, "test", root, limit=limit, **config.dataset_options)
    options: dict[str, Any] = dict(
        gradient=gradient, seed=seed, batch_size=batch_size, device=dev, checks=checks,
        check_samples=check_samples, progress=progress, log=log,
    )  # fmt: skip
    source_info: dict[str, Any] | None = None
    if suite == "rssnn-standard":
        if steps is not None or queries is not None:
            raise UsageError("--suite rssnn-standard fixes its steps and queries; drop --steps/--queries")
        if eps is not None and len(eps) != 1:
            raise UsageError(f"--suite rssnn-standard takes one --eps (its main budget), got {len(eps)}")
        options.update(eot_samples=eot_samples or 1, sharpness_search=sharpness_search)
        if eps is not None:
            options["eps"] = eps[0]
    else:
        options.update(eot_samples=eot_samples, search=sharpness_search)
        options.update(
            {k: v for k, v in dict(eps=eps, steps=steps, queries=queries).items() if v is not None}
        )
        if has_fake_gradient(model):
            source_model, source_info = _transfer_source(
                model, config, root, test_set, source, twin_epochs, seed, batch_size, dev, progress, log
            )
            options["source"] = source_model
    result = evaluate_suite(model, test_set, suite, **options)
    return _write(result, run_dir, config, model, limit, command, env, start, source_info, out_dir)
