"""Training configuration: every choice of a run, validated up front, saved as ``config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from spikeshield import schema, validate
from spikeshield.errors import DataError, SpikeshieldError, UsageError

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant")
LOSSES = ("ce", "mse")
DEVICES = ("auto", "cpu", "cuda")
#: with a cosine schedule over one MNIST epoch, Adam at 1e-3 reached 97.2 %, 3e-3 98.3 %
DEFAULT_LR = {"adam": 3e-3, "sgd": 0.1}


@dataclass
class TrainConfig:
    """All settings of one training run (the CLI's ``train`` flags map one to one)."""

    dataset: str = "digits"
    model: str = "cnn"
    neuron: str = "lif"
    neuron_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    time_steps: int = 4
    encoder: str = "direct"
    readout: str = "mean"
    voters: int = 10
    normalize: bool = True
    """Normalise inputs inside the model with the dataset's mean/std (attacks see [0, 1] pixels)."""
    loss: str | None = None
    """``ce`` or ``mse``; default ``ce`` for the mean readout, ``mse`` for voting."""
    epochs: int = 1
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: str = "adam"
    lr: float | None = None
    """Learning rate; default 3e-3 for Adam, 0.1 for SGD (resolved and recorded at creation)."""
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    seed: int = 0
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    limit_train: int | None = None
    limit_test: int | None = None
    device: str = "auto"
    amp: bool = False
    """Mixed precision (bfloat16 autocast) on CUDA; ignored on CPU."""
    augment: list[str] = field(default_factory=list)
    """Training-batch augmentations, e.g. ``["crop:4", "flip", "cutout:16"]`` (see
    ``spikeshield.data.augment``); a comma-separated string is accepted too."""
    mode: str = "bptt"
    """Training mode (``spikeshield.training.modes``): ``bptt`` (default) or a registered one."""
    mode_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lr is None and self.optimizer in DEFAULT_LR:
            self.lr = DEFAULT_LR[self.optimizer]
        if isinstance(self.augment, str):
            self.augment = [s.strip() for s in self.augment.split(",") if s.strip()]
        self.validate()

    @property
    def loss_name(self) -> str:
        return self.loss or ("mse" if self.readout == "voting" else "ce")

    def validate(self) -> None:
        for name in ("time_steps", "epochs", "batch_size", "eval_batch_size", "voters"):
            validate.positive_int(name, getattr(self, name))
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) is not None:
                validate.positive_int(name, getattr(self, name))
        validate.non_negative_int("seed", self.seed)
        validate.positive("lr", self.lr)
        validate.in_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        validate.non_negative("weight_decay", self.weight_decay)
        choices = {
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "device": DEVICES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UsageError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.loss is not None and self.loss not in LOSSES:
            raise UsageError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("neuron_options", "model_options", "dataset_options", "mode_options"):
            if not isinstance(getattr(self, name), dict):
                raise UsageError(f"{name} must be a mapping")
        if not isinstance(self.augment, list):
            raise UsageError(
                f"augment must be a list of specs such as ['crop:4', 'flip'], got {self.augment!r}"
            )
        from spikeshield.data.augment import build_augmentation

        build_augmentation(self.augment)  # raises a UsageError naming a bad spec
        from spikeshield.training.modes import build_training_mode

        build_training_mode(self.mode, self.mode_options)  # unknown mode or option: a UsageError

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        validate.reject_unknown("training", data, (f.name for f in fields(cls)))
        return cls(**data)

    @classmethod
    def from_file(cls, data: Any, where: str, *, error: type[SpikeshieldError] = DataError) -> TrainConfig:
        """The config saved in a file (``config.json``'s ``train``, a checkpoint's run state).

        Stricter than :meth:`from_dict`: every field's type is checked as the schema of the
        dataclass says (no string for a number, no comma-separated ``augment``).

        Raises:
            error: one line naming ``where`` and the first bad or unknown setting.
        """
        data = schema.convert(data, dict[str, Any], where, error=error)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise error(f"{where}: unknown setting(s) {', '.join(unknown)}")
        return schema.convert(data, cls, where, error=error)
