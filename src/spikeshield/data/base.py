"""Dataset registry, in-memory datasets and data-root resolution.

One entry point for every dataset: :func:`load_dataset`. Files are looked for under a data
root given by argument, else the ``SPIKESHIELD_DATA`` environment variable, else each
dataset's own default places. Nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikeshield import validate
from spikeshield.data import downsample
from spikeshield.errors import DataError, UsageError
from spikeshield.registry import Registry

SPLITS = ("train", "test")
DATA_ENV = "SPIKESHIELD_DATA"


class ArrayDataset(Dataset[tuple[Tensor, int]]):
    """An in-memory dataset: ``images`` (uint8 scaled by ``1/scale``, or float) and int labels.

    Indexing returns ``(float image, label)`` like any torch dataset; :meth:`batches` yields
    whole float batches without a DataLoader (much faster for small images on a CPU).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        scale: float = 255.0,
        info: DatasetInfo | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.scale = scale
        self.info = info
        self.meta = meta or {}

    def __len__(self) -> int:
        return len(self.labels)

    def to_float(self, images: Tensor) -> Tensor:
        if images.is_floating_point():
            return images
        return images.float().div_(self.scale)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.to_float(self.images[index]), int(self.labels[index])

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All images as floats in [0, 1] and all labels."""
        return self.to_float(self.images), self.labels

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(images, labels)`` float batches, in a seeded random order if ``shuffle``.

        ``shard=(rank, world_size)`` keeps every ``world_size``-th sample of each batch starting
        at ``rank``: the ranks of a data-parallel job then share each global batch between them.
        """
        n = len(self)
        rank, world = shard
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size][rank::world]
            if len(idx) == 0:
                continue
            x = self.images.index_select(0, idx).to(device, non_blocking=True)
            yield self.to_float(x), self.labels.index_select(0, idx).to(device, non_blocking=True)

    def subset(self, count: int, seed: int = 0) -> ArrayDataset:
        """A fixed random subset of ``count`` samples (all of them if count >= len)."""
        if count >= len(self):
            return self
        return self._take(self._order(seed)[:count], subset=count)

    def holdout(self, count: int, seed: int = 0) -> ArrayDataset:
        """The samples that :meth:`subset` ``(count, seed)`` leaves out, in their order here: data
        that a model trained on that subset never saw (a validation set). Empty if count >= len."""
        return self._take(self._order(seed)[count:], holdout_of=count)

    def _order(self, seed: int) -> Tensor:
        return torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))

    def _take(self, idx: Tensor, **note: int) -> ArrayDataset:
        idx = idx.sort().values
        meta = dict(self.meta, **note)
        return ArrayDataset(self.images[idx], self.labels[idx], scale=self.scale, info=self.info, meta=meta)


@dataclass
class DatasetInfo:
    """Static facts about a dataset."""

    name: str
    input_shape: tuple[int, ...]
    """(C, H, W) per frame."""
    num_classes: int
    kind: str = "static"
    """``static`` images or ``events`` (input ``[T, C, H, W]`` per sample)."""
    description: str = ""
    class_names: Sequence[str] = field(default_factory=tuple)
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    """Per-channel (mean, std) of the training images, for in-model normalisation."""


@dataclass
class Location:
    """Where a dataset's files were looked for, and whether it is ready to load."""

    ready: bool
    path: Path | None
    searched: list[Path]
    message: str


class DatasetSource:
    """Base of every registered dataset: ``info``, :meth:`locate` and :meth:`load`."""

    info: DatasetInfo

    def locate(self, root: Path | None) -> Location:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, split: str, root: Path | None, **options: Any) -> ArrayDataset:  # pragma: no cover
        raise NotImplementedError


DATASETS: Registry[DatasetSource] = Registry("dataset")


def register_dataset(source: DatasetSource) -> DatasetSource:
    DATASETS.register(source.info.name, help=source.info.description)(source)
    return source


def data_root(root: str | os.PathLike[str] | None) -> Path | None:
    """The data root: the argument, else ``$SPIKESHIELD_DATA``, else None (dataset defaults)."""
    if root is None:
        root = os.environ.get(DATA_ENV) or None
    return None if root is None else Path(root).expanduser()


def find_file(candidates: Sequence[Path], what: str, dataset: str) -> Path:
    """The first existing path of ``candidates`` (folders aside), or a :class:`DataError` naming
    them all. A FIFO or a broken symbolic link is returned too: reading it is the clear error."""
    for path in candidates:
        if (path.exists() or path.is_symlink()) and not path.is_dir():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise DataError(
        f"{dataset}: {what} not found (looked for {looked}). Pass --data-root or set "
        f"{DATA_ENV} to the folder that holds it."
    )


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    *,
    limit: int | None = None,
    **options: Any,
) -> ArrayDataset:
    """Load a registered dataset split as an in-memory :class:`ArrayDataset`.

    Args:
        name: dataset name (``spikeshield datasets`` lists them).
        split: ``"train"`` or ``"test"``.
        root: data root (default: ``$SPIKESHIELD_DATA``, then the dataset's default places).
        limit: keep a fixed random subset of this many samples.
        options: dataset-specific options; event datasets also take ``frame_size`` and
            ``frame_pool`` (spatial down-sampling, :mod:`spikeshield.data.downsample`).
    """
    source = DATASETS.get(name)
    if split not in SPLITS:
        raise UsageError(f"split must be one of {SPLITS}, got {split!r}")
    if limit is not None:
        validate.positive_int("limit", limit)
    options, frames = downsample.split_options(source.info, options)
    dataset = source.load(split, data_root(root), **options)
    dataset.info = source.info
    dataset = dataset.subset(limit) if limit is not None else dataset
    return downsample.downsample_dataset(dataset, **frames) if frames else dataset


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS.get(name).info


def check_options(dataset: str, options: dict[str, Any], accepted: Sequence[str]) -> None:
    validate.reject_unknown(f"dataset {dataset!r}", options, accepted)


LoaderFn = Callable[..., ArrayDataset]
