"""BPTT training: :func:`train` a :class:`TrainConfig` into a run folder."""

from spikeshield.training.checkpoint import load_model_weights, load_tensors, save_model, save_tensors
from spikeshield.training.config import TrainConfig
from spikeshield.training.evaluate import accuracy, predict, resolve_device
from spikeshield.training.trainer import build_model_for, train

__all__ = [
    "TrainConfig",
    "accuracy",
    "build_model_for",
    "load_model_weights",
    "load_tensors",
    "predict",
    "resolve_device",
    "save_model",
    "save_tensors",
    "train",
]
