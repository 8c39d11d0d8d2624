"""Clean evaluation of a classifier on an in-memory dataset, one batch graph at a time."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from spikeshield.data.base import ArrayDataset
from spikeshield.preserve import preserved


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    from spikeshield.errors import UsageError

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: ArrayDataset,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    transform: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Predicted classes and true labels over the whole dataset, in eval mode.

    ``transform`` (e.g. a corruption) is applied to each input batch first. The model is left
    exactly as it was (every module's mode, parameters and buffers), also on an error.
    """
    preds, labels = [], []
    with preserved(model):
        model.eval()
        for x, y in dataset.batches(batch_size, device=device):
            if transform is not None:
                x = transform(x)
            preds.append(model(x).argmax(1).cpu())
            labels.append(y.cpu())
    return torch.cat(preds), torch.cat(labels)


def accuracy(
    model: nn.Module,
    dataset: ArrayDataset,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    transform: Callable[[Tensor], Tensor] | None = None,
) -> float:
    """Fraction (0–1) of ``dataset`` that ``model`` classifies correctly (after ``transform``)."""
    pred, y = predict(model, dataset, batch_size, device, transform)
    return int((pred == y).sum()) / len(y) if len(y) else float("nan")
