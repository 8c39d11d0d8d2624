"""Backpropagation-through-time training, seeded, resumable, with atomic outputs.

A run folder holds::

    config.json            every setting, the model spec, versions (written first)
    checkpoint.safetensors weights + optimizer + RNG state after the last complete epoch
    metrics.json           per-epoch history; final test accuracy, train time, images/s
    model.safetensors      the final weights (with the model spec in its metadata)

``train(config, out, resume=True)`` continues a killed run from its last complete epoch and
ends with the same weights and metrics as an uninterrupted run (on CPU, same seed).

The defender trains the true model: a neuron that hands attackers a fake backward (the
oscillation defence, ``oscillating-lif`` with ``backward_*`` options) is trained through its
true forward's gradient (:func:`spikeshield.neurons.true_gradient` around every batch's loss).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikeshield.data import ArrayDataset, dataset_info, load_dataset
from spikeshield.data.augment import build_augmentation
from spikeshield.data.downsample import frame_shape
from spikeshield.environment import environment
from spikeshield.errors import CheckpointError, SpikeshieldError, UsageError
from spikeshield.io import atomic_write_json, ensure_dir
from spikeshield.kernels import backends_used
from spikeshield.models import SpikingModel, build_model
from spikeshield.neurons import true_gradient
from spikeshield.progress import Progress
from spikeshield.runtime import configure_threads
from spikeshield.training.checkpoint import (
    FORMAT_VERSION,
    check_fits,
    check_metadata,
    load_tensors,
    save_model,
    save_tensors,
)
from spikeshield.training.config import TrainConfig
from spikeshield.training.distributed import DistContext, init_distributed
from spikeshield.training.evaluate import resolve_device
from spikeshield.training.modes import TrainingMode, build_training_mode
from spikeshield.training.run_files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    parse_run_state,
    read_metrics,
    read_run_config,
)
from spikeshield.training.traces import learned_values


def build_model_for(config: TrainConfig) -> SpikingModel:
    """The model a config describes, shaped for its dataset."""
    info = dataset_info(config.dataset)
    return build_model(
        config.model,
        neuron=config.neuron,
        neuron_options=config.neuron_options,
        num_classes=info.num_classes,
        input_shape=frame_shape(info, config.dataset_options),
        time_steps=config.time_steps,
        encoder="events" if info.kind == "events" else config.encoder,
        readout=config.readout,
        voters=config.voters,
        normalize=info.normalize
        if (config.normalize and info.kind == "static" and config.encoder == "direct")
        else None,
        **config.model_options,
    )


def dataset_options_for(config: TrainConfig) -> dict[str, Any]:
    """The dataset options of a run; event datasets get one frame per time step (``frames``)."""
    options = dict(config.dataset_options)
    if dataset_info(config.dataset).kind == "events":
        frames = options.setdefault("frames", config.time_steps)
        if frames != config.time_steps:
            raise UsageError(
                f"dataset option frames={frames} differs from time_steps={config.time_steps}: an event "
                f"sample needs one frame per time step (drop frames= or use --time-steps {frames})"
            )
    return options


def loss_function(name: str, num_classes: int) -> Callable[[Tensor, Tensor], Tensor]:
    if name == "ce":
        return F.cross_entropy
    if name == "mse":
        return lambda out, y: F.mse_loss(out, F.one_hot(y, num_classes).to(out.dtype))
    raise UsageError(f"unknown loss {name!r}")


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=False
    )


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """Per-step learning rate: cosine from ``lr`` to 0 over the run, or constant."""
    if config.schedule == "constant" or total_steps <= 0:
        return config.lr
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * step / total_steps))


@dataclass
class RunState:
    epoch: int
    history: list[dict[str, Any]]
    train_seconds: float


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """Seed of one random stream of one epoch (stream 0: data order; 1 + rank: the model's noise).

    Re-seeding at every epoch from (seed, epoch) makes a resumed run draw exactly the numbers an
    uninterrupted one would, in one process or many, without carrying RNG state around.
    """
    return (seed * 1_000_003 + epoch * 10_007 + stream * 101) % (2**63 - 1)


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: RunState,
    config: TrainConfig,
) -> None:
    """Everything needed to resume after ``state.epoch`` complete epochs, in one atomic file.

    No RNG state is stored: every epoch re-seeds its streams with :func:`epoch_seed`."""
    tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                opt_scalars.setdefault(str(idx), {})[key] = value
    run_state = {
        "epoch": state.epoch,
        "history": state.history,
        "train_seconds": state.train_seconds,
        "param_groups": opt["param_groups"],
        "optim_scalars": opt_scalars,
        "config": config.to_dict(),
    }
    metadata = {
        "format": "spikeshield-checkpoint",
        "format_version": str(FORMAT_VERSION),
        "model_spec": json.dumps(getattr(model, "spec", {})),
        "run_state": json.dumps(run_state),
    }
    save_tensors(path, tensors, metadata)


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
) -> RunState:
    """Restore model and optimizer from :func:`save_checkpoint`'s file, checking it fits.

    Everything is checked before anything is loaded: a refused checkpoint leaves ``model``
    and ``optimizer`` as they were. The optimizer's hyperparameters come from ``config`` (the
    same settings, checked), never from the file; only its per-parameter state is restored.

    Raises:
        CheckpointError: the file is not such a checkpoint, was made with other settings, or
            its run state or tensors do not fit this model and optimizer.
    """
    tensors, metadata = load_tensors(path)
    check_metadata(path, metadata, "spikeshield-checkpoint", getattr(model, "spec", None))
    if "run_state" not in metadata:
        raise CheckpointError(f"{path}: checkpoint has no run state")
    run_state = parse_run_state(metadata["run_state"], f"{path}: run_state")
    diffs = settings_differences(run_state["config"], config)
    if diffs:
        raise CheckpointError(
            f"{path}: checkpoint was made with other settings ({', '.join(diffs)}); "
            "resume with the same flags"
        )
    if run_state["epoch"] > config.epochs:
        raise CheckpointError(f"{path}: run_state: epoch {run_state['epoch']} of a {config.epochs}-epoch run")
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    check_fits(path, model_state, model.state_dict())
    fresh = optimizer.state_dict()
    params = [p for p in model.parameters() if p.requires_grad]
    opt_state = _optimizer_state(path, tensors, run_state, params, config.optimizer)
    groups = run_state["param_groups"]
    if [g.get("params") for g in groups] != [g["params"] for g in fresh["param_groups"]]:
        raise CheckpointError(f"{path}: run_state: param_groups do not match this model's parameters")
    model.load_state_dict(model_state)
    optimizer.load_state_dict({"state": opt_state, "param_groups": fresh["param_groups"]})
    return RunState(run_state["epoch"], run_state["history"], run_state["train_seconds"])


OPTIMIZER_STATE = {
    "adam": {"step": False, "exp_avg": True, "exp_avg_sq": True},
    "sgd": {"momentum_buffer": True},
}
"""Per-parameter state of each optimizer once it has stepped: name -> has the parameter's shape
(else a scalar, e.g. Adam's step count)."""


def _optimizer_state(
    path: Path, tensors: dict[str, Tensor], run_state: dict[str, Any], params: list[Tensor], optimizer: str
) -> dict[int, dict[str, Any]]:
    """The optimizer's per-parameter state (tensors ``optim.<index>.<name>`` and the run
    state's ``optim_scalars``), checked against :data:`OPTIMIZER_STATE`: the names the
    optimizer keeps, for parameters that exist, each of its parameter's shape or a scalar."""

    def index(text: str, where: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) >= len(params):
            raise CheckpointError(f"{path}: {where} names parameter {text!r}; the model has {len(params)}")
        return int(text)

    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            idx_text, _, name = key[len("optim.") :].partition(".")
            state.setdefault(index(idx_text, f"tensor {key}"), {})[name] = value
    for idx_text, scalars in run_state["optim_scalars"].items():
        state.setdefault(index(idx_text, "run_state: optim_scalars"), {}).update(scalars)
    layout = OPTIMIZER_STATE[optimizer]
    for idx, entries in state.items():
        if set(entries) != set(layout):
            raise CheckpointError(
                f"{path}: optimizer state of parameter {idx} holds {sorted(entries)}, "
                f"{optimizer} keeps {sorted(layout)}"
            )
        for name, per_parameter in layout.items():
            shape = params[idx].shape if per_parameter else torch.Size()
            value = entries[name]
            if (value.shape if isinstance(value, Tensor) else torch.Size()) != shape:
                raise CheckpointError(
                    f"{path}: optimizer state {name} of parameter {idx} has shape "
                    f"{list(getattr(value, 'shape', []))}, expected {list(shape)}"
                )
    return state


LOCATION_SETTINGS = frozenset({"data_root"})


def settings_differences(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """Names of the settings in which a saved run's config differs from ``config``.

    The saved dict is completed with today's defaults first, so a run saved before a setting
    existed still resumes when that setting is left at its default.
    """
    # a setting that no longer exists (or a bad value) fails: then compare as saved, naming it below
    with contextlib.suppress(SpikeshieldError):
        saved = TrainConfig.from_file(saved, "saved settings").to_dict()
    wanted = json.loads(json.dumps(config.to_dict()))
    saved = json.loads(json.dumps(saved))
    # where the data lives is not a setting: the same files may be reached by another path
    return sorted(
        k for k in set(saved) | set(wanted) if k not in LOCATION_SETTINGS and saved.get(k) != wanted.get(k)
    )


def _check_existing_run(out: Path, config: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """Refuse to overwrite a run; on resume, insist on the same settings. Returns the metrics of
    an already complete run (nothing left to do), else None."""
    existing = [f for f in (CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE, METRICS_FILE) if (out / f).exists()]
    if existing and not resume:
        raise UsageError(
            f"{out} already holds a run ({', '.join(existing)}); "
            "pass --resume to continue it or choose another --out"
        )
    if resume and (out / CONFIG_FILE).exists():
        diffs = settings_differences(read_run_config(out)["train"], config)
        if diffs:
            raise UsageError(
                f"{out} was trained with other settings ({', '.join(diffs)}); resume with the same flags"
            )
        if (out / METRICS_FILE).exists():
            metrics = read_metrics(out / METRICS_FILE)
            if metrics["complete"]:
                if not (out / MODEL_FILE).exists():
                    from spikeshield.runs import missing_weights  # runs imports this module

                    raise missing_weights(out)  # "complete" with no weights: nothing to report
                return metrics
    return None


def _remove_stale_temporaries(out: Path) -> None:
    """Temp files left by a process killed in the middle of an atomic write."""
    for name in (CONFIG_FILE, CHECKPOINT_FILE, MODEL_FILE, METRICS_FILE):
        for stale in out.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()


@torch.no_grad()
def _count_correct(
    model: nn.Module, dataset: ArrayDataset, batch_size: int, device: torch.device, ctx: DistContext
) -> tuple[int, int]:
    """(correct, total) over this rank's share of ``dataset``, summed over all ranks."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = torch.zeros((), dtype=torch.long, device=device)
    for x, y in dataset.batches(batch_size, device=device, shard=(ctx.rank, ctx.world_size)):
        correct += (model(x).argmax(1) == y).sum()
        total += len(y)
    model.train()
    return int(ctx.sum(correct)), int(ctx.sum(total))


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    datasets: tuple[ArrayDataset, ArrayDataset] | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``out_dir``; returns the final metrics (also in ``metrics.json``).

    Refuses to overwrite a folder that already holds a run unless ``resume`` is set; with it,
    continues from the last complete epoch and ends with the same weights and metrics as an
    uninterrupted run. A run that fails before writing a file removes the folders it created
    (``out_dir`` and any missing parents). Under ``torchrun`` it trains data-parallel (see
    :mod:`spikeshield.training.distributed`).
    ``datasets`` (train, test) may be passed in to skip loading. The training mode
    (``config.mode``, :mod:`spikeshield.training.modes`) decides how.
    """
    mode = build_training_mode(config.mode, config.mode_options)
    out = Path(out_dir)
    created = [f for f in (out, *out.parents) if not f.exists() and not f.is_symlink()]  # deepest first
    try:
        return mode.fit(config, out, resume=resume, progress=progress, log=log, datasets=datasets)
    except BaseException:
        # a run that failed before writing anything leaves none of the folders it made behind
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (files were written) or not ours to remove
        raise


def bptt_train(
    config: TrainConfig,
    out: Path,
    mode: TrainingMode,
    *,
    resume: bool,
    progress: bool | None,
    log: Callable[[str], None],
    datasets: tuple[ArrayDataset, ArrayDataset] | None,
) -> dict[str, Any]:
    """The BPTT training loop of :func:`train`; each batch's loss comes from ``mode.batch_loss``."""
    configure_threads()  # keeps an explicit choice; see spikeshield.runtime
    ctx, device = init_distributed(resolve_device(config.device))
    try:
        return _train(config, out, mode, resume, progress, log, datasets, ctx, device)
    finally:
        ctx.close()


def _train(
    config: TrainConfig,
    out: Path,
    mode: TrainingMode,
    resume: bool,
    progress: bool | None,
    log: Callable[[str], None],
    datasets: tuple[ArrayDataset, ArrayDataset] | None,
    ctx: DistContext,
    device: torch.device,
) -> dict[str, Any]:
    if not ctx.is_main:
        log = lambda _msg: None  # noqa: E731
        progress = False
    else:
        ensure_dir(out)
    done = _check_existing_run(out, config, resume)
    if done is not None:
        log(f"{out}: run already complete (test accuracy {done['test_accuracy']:.4f})")
        return done
    if datasets is None:
        options = dataset_options_for(config)
        train_set = load_dataset(
            config.dataset, "train", config.data_root, limit=config.limit_train, **options
        )
        test_set = load_dataset(config.dataset, "test", config.data_root, limit=config.limit_test, **options)
    else:
        train_set, test_set = datasets
    torch.manual_seed(config.seed)
    model = build_model_for(config).to(device)
    spec = model.spec
    mode.setup(model)  # the mode's checks against the model, before anything is written
    optimizer = make_optimizer(config, model)
    loss_fn = loss_function(config.loss_name, model.num_classes)
    norm = dataset_info(config.dataset).normalize
    augment = build_augmentation(config.augment, fill=norm[0] if norm else None) if config.augment else None
    env = environment(device)
    env["world_size"] = ctx.world_size
    ckpt_path = out / CHECKPOINT_FILE
    state = RunState(0, [], 0.0)
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, model, optimizer, config)
        log(f"resuming {out} after epoch {state.epoch}")
    if ctx.is_main:
        _remove_stale_temporaries(out)
        atomic_write_json(
            out / CONFIG_FILE,
            {
                "format_version": FORMAT_VERSION,
                "train": config.to_dict(),
                "model_spec": spec,
                "environment": env,
            },
        )
    net: nn.Module = model
    if ctx.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    use_amp = config.amp and device.type == "cuda"

    for epoch in range(state.epoch, config.epochs):
        torch.manual_seed(epoch_seed(config.seed, epoch, 1 + ctx.rank))
        order_rng = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, 0))
        augment_rng = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, 1000 + ctx.rank))
        shared_rng = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, 2000))
        net.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = torch.zeros((), device=device, dtype=torch.long)
        step = epoch * steps_per_epoch
        batches = train_set.batches(
            config.batch_size,
            shuffle=True,
            generator=order_rng,
            device=device,
            shard=(ctx.rank, ctx.world_size),
        )
        bar = Progress(
            batches,
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            enabled=progress,
            unit="batch",
        )
        for x, y in bar:
            if augment is not None:
                x = augment(x, augment_rng)
            lr = learning_rate(config, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp), true_gradient(net):
                out_logits, loss = mode.batch_loss(net, x, y, loss_fn)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step}; lower --lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            mode.after_step(model, shared_rng)
            step += 1
            loss_sum += loss.detach() * len(y)
            correct += (out_logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if bar.enabled and bar.count % 10 == 0:
                bar.set(loss=float(loss_sum) / int(seen), acc=float(correct) / int(seen))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        n_seen = int(ctx.sum(seen))
        test_correct, test_total = _count_correct(model, test_set, config.eval_batch_size, device, ctx)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(ctx.sum(loss_sum)) / n_seen,
            "train_accuracy": int(ctx.sum(correct)) / n_seen,
            "test_accuracy": test_correct / test_total,
            "lr_end": learning_rate(config, step, total_steps),
            "train_seconds": seconds,
            "images_per_second": n_seen / seconds,
            **learned_values(model),
        }
        state = RunState(epoch + 1, [*state.history, record], state.train_seconds + seconds)
        env["kernels"] = backends_used(model)  # fused C / Triton / reference loop, per neuron
        if ctx.is_main:
            save_checkpoint(ckpt_path, model, optimizer, state, config)
            atomic_write_json(
                out / METRICS_FILE, _metrics(state, config, train_set, test_set, env, complete=False)
            )
        log(
            f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.4f}, train acc "
            f"{record['train_accuracy']:.4f}, test acc {record['test_accuracy']:.4f}, "
            f"{record['images_per_second']:.0f} img/s"
        )

    env["kernels"] = backends_used(model)
    metrics = _metrics(state, config, train_set, test_set, env, complete=True)
    if ctx.is_main:
        save_model(out / MODEL_FILE, model, spec)
        atomic_write_json(out / METRICS_FILE, metrics)
    ctx.barrier()
    return metrics


def _metrics(
    state: RunState,
    config: TrainConfig,
    train_set: ArrayDataset,
    test_set: ArrayDataset,
    env: dict[str, Any],
    complete: bool,
) -> dict[str, Any]:
    last = state.history[-1] if state.history else {}
    images = sum(len(train_set) for _ in state.history)
    return {
        "complete": complete,
        "test_accuracy": last.get("test_accuracy"),
        "train_seconds": state.train_seconds,
        "images_per_second": images / state.train_seconds if state.train_seconds else None,
        "epochs": state.epoch,
        "train_samples": len(train_set),
        "test_samples": len(test_set),
        "dataset": config.dataset,
        "dataset_split": train_set.meta.get("split"),
        "model": config.model,
        "neuron": config.neuron,
        "time_steps": config.time_steps,
        "seed": config.seed,
        "environment": env,
        "history": state.history,
    }
