"""Training presets: a published protocol as named training settings, resolved per dataset.

A preset is a function ``(dataset, argument) -> settings`` returning
:class:`~spikeshield.training.TrainConfig` fields; settings given explicitly (flags, experiment
files) override it, and the run records the resolved values, never the preset's name alone.
Named in experiment files as ``[train] preset = "plif"`` and on the command line as
``spikeshield train --preset plif``; ``NAME:ARG`` passes an argument (``plif:4``: T = 4).

>>> from spikeshield.training.presets import preset_settings
>>> preset_settings("plif:4", "cifar10")["time_steps"]
4
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spikeshield import validate
from spikeshield.errors import UsageError
from spikeshield.registry import Registry

Preset = Callable[[str, str], dict[str, Any]]
PRESETS: Registry[Preset] = Registry("training preset")

PLIF_TIME_STEPS = {"nmnist": 10, "dvs-gesture": 20, "cifar10-dvs": 20}
"""T of the PLIF protocol for event data (8 for every static dataset)."""


@PRESETS.register("plif")
def plif(dataset: str, argument: str) -> dict[str, Any]:
    """The PLIF protocol (Fang et al., ICCV 2021), the one KLIF (Jiang & Zhang 2024) is compared on.

    The ``plifnet`` of the dataset's shape (the Gesture net has 5 pooling blocks), 10 voting
    neurons per class with MSE on their firing rate, Adam lr 1e-3 with a cosine schedule,
    batch 16; T = 8 for static images, 10 for N-MNIST, 20 for DVS128 Gesture and CIFAR10-DVS;
    random crop (4) and flip on CIFAR-10. ``plif:T`` sets T (the few-time-step variants:
    ``plif:2``, ``plif:4``). Not set here: epochs (the paper trains up to 1024 with a cosine
    period of 64 epochs) and the neuron's options — the paper's neurons use the arctan
    surrogate (α = 2), hard reset to 0, V_th = 1, τ₀ = 2 and a detached reset.
    """
    from spikeshield.data import dataset_info

    info = dataset_info(dataset)
    if argument:
        try:
            steps = validate.positive_int("plif:T", int(argument))
        except ValueError:
            raise UsageError(f"preset plif:T takes a whole number of time steps, got {argument!r}") from None
    else:
        steps = PLIF_TIME_STEPS.get(dataset, 10 if info.kind == "events" else 8)
    settings: dict[str, Any] = {
        "model": "plifnet",
        "readout": "voting",
        "voters": 10,
        "loss": "mse",
        "optimizer": "adam",
        "lr": 1e-3,
        "schedule": "cosine",
        "batch_size": 16,
        "time_steps": steps,
    }
    if dataset == "dvs-gesture":
        settings["model_options"] = {"blocks": 5}
    if dataset == "cifar10":
        settings["augment"] = ["crop:4", "flip"]
    return settings


def preset_settings(spec: str, dataset: str) -> dict[str, Any]:
    """The settings of preset ``spec`` (``NAME`` or ``NAME:ARG``) for ``dataset``.

    Raises:
        UsageError: an unknown preset or dataset, or a bad argument.
    """
    if not isinstance(spec, str):
        raise UsageError(f"preset must be a name such as 'plif' or 'plif:4', got {spec!r}")
    name, _, argument = spec.partition(":")
    return PRESETS.get(name)(dataset, argument.strip())


def with_preset(spec: str | None, dataset: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` on top of preset ``spec``'s (None: ``settings`` alone); ``model_options`` and
    ``dataset_options`` are merged key by key, the explicit ones winning. The preset's
    ``model_options`` are dropped when ``settings`` picks another model than the preset's."""
    if spec is None:
        return dict(settings)
    base = preset_settings(spec, dataset)
    if settings.get("model", base.get("model")) != base.get("model"):
        base.pop("model_options", None)
    merged = {**base, **settings}
    for key in ("model_options", "dataset_options"):
        if key in base and key in settings:
            merged[key] = {**base[key], **settings[key]}
    return merged
