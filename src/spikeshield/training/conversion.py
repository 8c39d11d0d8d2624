"""Converted runs: a run folder whose model was converted, not trained, and how it was made.

A converted run is a normal run folder (``config.json``, ``model.safetensors``,
``metrics.json``) that ``evaluate``, ``report`` and :func:`spikeshield.load_run` read like any
other: its ``config.json`` describes the converted network (soft-reset ``if`` neurons at
T = N) and its training mode says how that network is made from a trained source, so
``train(config)`` reproduces it. One more file, ``conversion.json``, records the source run
(folder, settings, weights SHA-256, its own test accuracy), the conversion's settings and
scales, and the converted network's test accuracy at every N of the ``sweep``.

Two modes (:mod:`spikeshield.training.modes.noisy`, :mod:`~spikeshield.training.modes.ann2snn`)
subclass :class:`ConversionMode`; their :meth:`~ConversionMode.fit` trains the source into
``RUN/source/`` (plain BPTT, resumable) and converts it. :func:`convert_run` converts a source
run trained separately (``spikeshield convert``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.training.modes import TrainingMode, build_training_mode

if TYPE_CHECKING:
    from spikeshield.data import ArrayDataset
    from spikeshield.models import SpikingModel
    from spikeshield.training.config import TrainConfig

CONVERSION_FILE = "conversion.json"
SOURCE_DIR = "source"
#: ``spikeshield convert --to`` → the training mode that records the conversion
METHODS = {"multistep": "noisy", "ann2snn": "ann2snn"}
#: most samples × time steps in one batch of an accuracy sweep (T = 128 on a 28×28 cnn: 16 images)
SWEEP_STEP_SAMPLES = 2048


def sweep_steps(values: Sequence[int] | None) -> list[int]:
    """The time steps of an accuracy sweep, checked (each ≥ 1), sorted, without repeats."""
    if values is None:
        return []
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise UsageError(f"sweep must be a list of time steps, got {values!r}")
    return sorted({validate.positive_int("sweep time steps", v) for v in values})


def with_time_steps(model: SpikingModel, time_steps: int) -> SpikingModel:
    """The same network and weights run for ``time_steps`` steps (eval mode, same device)."""
    from spikeshield.models import model_from_spec

    other = model_from_spec({**model.spec, "time_steps": time_steps})
    other.load_state_dict(model.state_dict())
    return other.to(next(model.parameters()).device).eval()


class ConversionMode(TrainingMode):
    """A run made by training a source network with plain BPTT, then converting it to soft-reset
    IF neurons at the run's ``time_steps`` (the run's ``neuron`` must be ``if`` with
    ``reset = soft``). Subclasses say what the source is and how it converts.

    Options shared by both modes: ``threshold_scale`` θ (see
    :func:`spikeshield.models.conversion.fold_scales`); ``sweep``, the time steps at which the
    converted network's test accuracy is also measured; ``sweep_v_init``, other start
    potentials V[0] (fractions of V_th) to measure that sweep with, too (all recorded in
    ``conversion.json``; the run's own model keeps its neuron's ``v_init``).
    """

    #: the unit the source network is built from
    source_neuron: ClassVar[str] = ""
    #: ``spikeshield convert --to`` name of this conversion
    method: ClassVar[str] = ""

    def __init__(
        self,
        threshold_scale: float = 1.0,
        sweep: Sequence[int] | None = None,
        sweep_v_init: Sequence[float] | None = None,
    ) -> None:
        self.threshold_scale = validate.positive("threshold_scale", threshold_scale)
        self.sweep = sweep_steps(sweep)
        if isinstance(sweep_v_init, (str, bytes)) or not isinstance(sweep_v_init, (Sequence, type(None))):
            raise UsageError(f"sweep_v_init must be a list of fractions of V_th, got {sweep_v_init!r}")
        self.sweep_v_init = [
            validate.in_range("sweep_v_init", v, 0.0, 1.0, high_open=True) for v in sweep_v_init or []
        ]

    # ------------------------------------------------------------- what subclasses define
    def source_options(self, config: TrainConfig) -> dict[str, Any]:
        """The source neuron's options for a run with settings ``config``."""
        raise NotImplementedError

    def source_time_steps(self) -> int:
        return 1

    @classmethod
    def options_from_source(cls, source: TrainConfig) -> dict[str, Any]:
        """This mode's options that a source run's settings imply (``spikeshield convert``)."""
        return {}

    def convert(
        self, source: SpikingModel, config: TrainConfig, train_set: Callable[[], ArrayDataset]
    ) -> tuple[SpikingModel, dict[str, Any]]:
        """The converted network (neurons as in ``config``) and what the conversion found."""
        raise NotImplementedError

    # ------------------------------------------------------------- shared
    def check_config(self, config: TrainConfig) -> None:
        from spikeshield.models.conversion import check_if_options

        if config.neuron != "if":
            raise UsageError(
                f"training mode {config.mode!r} converts into soft-reset IF neurons: "
                f"set neuron = 'if' (with reset = 'soft'), got {config.neuron!r}"
            )
        check_if_options(config.neuron_options, f"training mode {config.mode!r}")

    def source_config(self, config: TrainConfig) -> TrainConfig:
        """The settings of the source run: ``config`` with the source neuron, its T, plain BPTT."""
        return dataclasses.replace(
            config,
            neuron=self.source_neuron,
            neuron_options=self.source_options(config),
            time_steps=self.source_time_steps(),
            mode="bptt",
            mode_options={},
        )

    def fit(
        self,
        config: TrainConfig,
        out: Path,
        *,
        resume: bool,
        progress: bool | None,
        log: Callable[[str], None],
        datasets: tuple[ArrayDataset, ArrayDataset] | None,
    ) -> dict[str, Any]:
        """Train the source into ``out/source`` (resumable), then convert it into ``out``."""
        from spikeshield.runs import load_model
        from spikeshield.training.trainer import _check_existing_run, train

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError(f"training mode {config.mode!r} does not run under torchrun yet")
        done = _check_existing_run(out, config, resume)
        if done is not None:
            log(f"{out}: run already complete (test accuracy {done['test_accuracy']:.4f})")
            return done
        if self.method == "ann2snn" or self.threshold_scale != 1.0:  # scales are folded: a chain only
            from spikeshield.models.conversion import chain
            from spikeshield.training.trainer import build_model_for

            chain(build_model_for(config))  # refused before any training
        source_dir = out / SOURCE_DIR
        source_config = self.source_config(config)
        train(source_config, source_dir, resume=resume, progress=progress, log=log, datasets=datasets)
        source = load_model(source_dir, source_config)
        return self.finish(config, out, source_dir, source, datasets=datasets, log=log)

    def finish(
        self,
        config: TrainConfig,
        out: Path,
        source_dir: Path,
        source: SpikingModel,
        *,
        datasets: tuple[ArrayDataset, ArrayDataset] | None = None,
        log: Callable[[str], None] = print,
    ) -> dict[str, Any]:
        """Convert the trained ``source`` (from ``source_dir``) and write the run folder ``out``."""
        from spikeshield.environment import environment
        from spikeshield.io import atomic_write_json, ensure_dir, read_json
        from spikeshield.runs import weights_digest
        from spikeshield.training.checkpoint import FORMAT_VERSION, save_model
        from spikeshield.training.evaluate import accuracy, resolve_device
        from spikeshield.training.trainer import CONFIG_FILE, METRICS_FILE, MODEL_FILE, build_model_for

        start = time.perf_counter()
        device = resolve_device(config.device)
        env = environment(device)
        train_set, test_set = _datasets(config, datasets)
        converted, details = self.convert(source.to(device).eval(), config, train_set)
        model = build_model_for(config).to(device).eval()  # exactly what loading the run rebuilds
        model.load_state_dict(converted.state_dict())
        acc = accuracy(model, test_set(), config.eval_batch_size, device)
        log(f"converted ({self.method}, T={config.time_steps}): test accuracy {acc:.4f}")
        sweep = self.run_sweep(model, source, config, train_set, test_set(), device, log)
        source_metrics = read_json(source_dir / METRICS_FILE, "source run metrics")
        record = {
            "method": self.method,
            "mode": config.mode,
            "mode_options": config.mode_options,
            "source_run": str(source_dir),
            "source_config": self.source_config(config).to_dict(),
            "source_weights_sha256": weights_digest(source_dir),
            "source_test_accuracy": source_metrics.get("test_accuracy"),
            "time_steps": config.time_steps,
            "neuron_options": config.neuron_options,
            "test_accuracy": acc,
            "test_samples": len(test_set()),
            "sweep": sweep,
            **details,
            "seconds": time.perf_counter() - start,
            "environment": env,
        }
        ensure_dir(out)
        atomic_write_json(out / CONVERSION_FILE, record)
        spec = model.spec
        saved = {"format_version": FORMAT_VERSION, "train": config.to_dict(), "model_spec": spec}
        atomic_write_json(out / CONFIG_FILE, {**saved, "environment": env})
        save_model(out / MODEL_FILE, model, spec)
        metrics = {
            **source_metrics,
            "complete": True,
            "test_accuracy": acc,
            "test_samples": len(test_set()),
            "neuron": config.neuron,
            "time_steps": config.time_steps,
            "environment": env,
        }
        atomic_write_json(out / METRICS_FILE, metrics)
        return metrics

    def run_sweep(
        self,
        model: SpikingModel,
        source: SpikingModel,
        config: TrainConfig,
        train_set: Callable[[], ArrayDataset],
        test_set: ArrayDataset,
        device: torch.device,
        log: Callable[[str], None],
    ) -> list[dict[str, Any]]:
        """Test accuracy of the converted network at every N of :attr:`sweep` (with the run's
        V[0]) and, for each other fraction in :attr:`sweep_v_init`, of the conversion redone with
        V[0] = that fraction of V_th. Batches hold at most :data:`SWEEP_STEP_SAMPLES` sample-steps."""
        from spikeshield.training.evaluate import accuracy

        threshold = float(config.neuron_options.get("v_threshold", 1.0))
        own = float(config.neuron_options.get("v_init", 0.0)) / threshold
        rows = []
        for fraction in dict.fromkeys([own, *self.sweep_v_init]):
            net = model
            if fraction != own:
                other = dataclasses.replace(
                    config, neuron_options={**config.neuron_options, "v_init": fraction * threshold}
                )
                net = self.convert(source, other, train_set)[0]
            for n in self.sweep:
                batch = max(1, min(config.eval_batch_size, SWEEP_STEP_SAMPLES // n))
                acc = accuracy(with_time_steps(net, n), test_set, batch, device)
                rows.append({"time_steps": n, "v_init": fraction, "accuracy": acc})
                log(f"  T={n}, V[0]={fraction:g}·V_th: test accuracy {acc:.4f}")
        return rows


def _datasets(
    config: TrainConfig, given: tuple[ArrayDataset, ArrayDataset] | None
) -> tuple[Callable[[], ArrayDataset], Callable[[], ArrayDataset]]:
    """Loaders of the run's training and test sets (loaded once, when first asked for)."""
    from spikeshield.data import load_dataset
    from spikeshield.training.trainer import dataset_options_for

    cache: dict[str, ArrayDataset] = {}
    if given is not None:
        cache["train"], cache["test"] = given

    def loader(split: str) -> Callable[[], ArrayDataset]:
        limit = config.limit_train if split == "train" else config.limit_test

        def load() -> ArrayDataset:
            if split not in cache:
                options = dataset_options_for(config)
                cache[split] = load_dataset(config.dataset, split, config.data_root, limit=limit, **options)
            return cache[split]

        return load

    return loader("train"), loader("test")


def _canonical(config: TrainConfig) -> dict[str, Any]:
    """Settings compared for "same source": neuron options as the neuron resolves them."""
    from spikeshield.neurons import build_neuron

    data = config.to_dict()
    data["neuron_options"] = build_neuron(config.neuron, **config.neuron_options).spec()
    for key in ("data_root", "device"):
        data.pop(key)
    return data


def _mode_name(method: str) -> str:
    """The training mode that records a ``method`` conversion."""
    if method not in METHODS:
        raise UsageError(f"unknown conversion {method!r}; choose from {', '.join(METHODS)}")
    return METHODS[method]


def converted_config(
    source: TrainConfig,
    method: str,
    time_steps: int,
    *,
    v_init: float = 0.5,
    options: dict[str, Any] | None = None,
) -> TrainConfig:
    """The settings of the run that converting a ``source`` run with ``method`` produces.

    ``options`` are the conversion mode's (``threshold_scale``, ``sweep``, ``percentile``, ...);
    the noise of a ``multistep`` conversion is read from the source's neuron.

    Raises:
        UsageError: an unknown method, or a source run whose neuron or mode cannot be converted.
    """
    from spikeshield.models.conversion import if_options
    from spikeshield.neurons import build_neuron

    mode_name = _mode_name(method)
    mode_cls = type(build_training_mode(mode_name, {}))
    if source.neuron != mode_cls.source_neuron:
        raise UsageError(
            f"--to {method} converts a run of '{mode_cls.source_neuron}' units; this run's neuron is "
            f"{source.neuron!r} (train one with --neuron {mode_cls.source_neuron} --time-steps 1)"
        )
    if source.mode != "bptt":
        raise UsageError(f"--to {method} converts a run trained with plain BPTT, not mode {source.mode!r}")
    v_threshold = getattr(build_neuron(source.neuron, **source.neuron_options), "v_threshold", 1.0)
    mode_options = {**mode_cls.options_from_source(source), **(options or {})}
    config = dataclasses.replace(
        source,
        neuron="if",
        neuron_options=if_options(v_threshold if method == "multistep" else 1.0, v_init),
        time_steps=time_steps,
        mode=mode_name,
        mode_options=mode_options,
    )
    rebuilt = build_training_mode(mode_name, mode_options).source_config(config)  # type: ignore[attr-defined]
    if rebuilt.time_steps != source.time_steps:
        raise UsageError(
            f"--to {method} needs a {mode_cls.source_neuron} run trained at T = {rebuilt.time_steps}; "
            f"this one has T = {source.time_steps}"
        )
    wanted, given = _canonical(rebuilt), _canonical(source)
    if wanted != given:
        differ = ", ".join(sorted(k for k in wanted.keys() | given.keys() if wanted.get(k) != given.get(k)))
        raise UsageError(
            f"--to {method} cannot record how this run was trained (its {differ} differ from what "
            "the conversion records); convert it in Python"
        )
    return config


def convert_run(
    run_dir: str | Path,
    out_dir: str | Path,
    method: str,
    time_steps: int,
    *,
    v_init: float = 0.5,
    options: dict[str, Any] | None = None,
    data_root: str | None = None,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Convert the trained run ``run_dir`` into a new run folder ``out_dir``; returns its metrics.

    ``method``: ``multistep`` (a ``noisy-if`` run → soft-reset IF, weights copied) or
    ``ann2snn`` (a ``relu`` run → soft-reset IF with robust-max normalisation). The source run
    is only read. ``out_dir`` must not hold a run.

    Raises:
        UsageError: N ≤ 0, bad options (checked before the source is read), a source that cannot
            be converted or has not finished training, an existing run in ``out_dir``.
    """
    from spikeshield.models.conversion import if_options
    from spikeshield.runs import load_model, missing_weights, read_config
    from spikeshield.training.trainer import CONFIG_FILE, METRICS_FILE, MODEL_FILE

    validate.positive_int("time steps", time_steps)
    if_options(v_init=v_init)  # what the caller typed is checked first
    build_training_mode(_mode_name(method), options or {})
    source = read_config(run_dir)
    if not (Path(run_dir) / MODEL_FILE).is_file():
        error = missing_weights(run_dir)
        if isinstance(error, UsageError):  # not finished
            error = UsageError(f"{error} (finish it with 'spikeshield train ... --resume' first)")
        raise error
    config = converted_config(source, method, time_steps, v_init=v_init, options=options)
    config = dataclasses.replace(config, device=device, data_root=data_root or source.data_root)
    mode = build_training_mode(config.mode, config.mode_options)
    assert isinstance(mode, ConversionMode)
    out = Path(out_dir)
    taken = [f for f in (CONFIG_FILE, MODEL_FILE, METRICS_FILE, CONVERSION_FILE) if (out / f).exists()]
    if taken:
        raise UsageError(f"{out} already holds a run ({', '.join(taken)}); choose another --out")
    return mode.finish(config, out, Path(run_dir), load_model(run_dir, source), log=log)


__all__ = [
    "CONVERSION_FILE",
    "METHODS",
    "SOURCE_DIR",
    "ConversionMode",
    "convert_run",
    "converted_config",
    "sweep_steps",
    "with_time_steps",
]
