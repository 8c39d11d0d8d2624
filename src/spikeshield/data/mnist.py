"""MNIST from the original IDX files (the layout torchvision uses: ``<root>/MNIST/raw/*.gz``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from spikeshield.data.base import (
    DATA_ENV,
    ArrayDataset,
    DatasetInfo,
    DatasetSource,
    Location,
    check_options,
    find_file,
    register_dataset,
)
from spikeshield.data.idx import UNSIGNED_BYTE, read_idx
from spikeshield.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IDXImageSource(DatasetSource):
    """A dataset stored as four IDX files (MNIST's format), found under a data root."""

    folders: tuple[str, ...] = ()
    default_roots: tuple[Path, ...] = ()

    def candidate_dirs(self, root: Path | None) -> list[Path]:
        roots = [root] if root is not None else list(self.default_roots)
        dirs: list[Path] = []
        for r in roots:
            dirs += [r / f for f in self.folders] + [r]
        return dirs

    def candidates(self, root: Path | None, stem: str) -> list[Path]:
        return [d / f"{stem}{ext}" for d in self.candidate_dirs(root) for ext in (".gz", "")]

    def locate(self, root: Path | None) -> Location:
        searched = self.candidate_dirs(root)
        if not searched:
            return Location(False, None, [], f"no data root: pass --data-root or set {DATA_ENV}")
        for d in searched:
            if all((d / f"{s}.gz").is_file() or (d / s).is_file() for stems in FILES.values() for s in stems):
                return Location(True, d, searched, "all four IDX files present")
        return Location(False, None, searched, "IDX files not found")

    def load(self, split: str, root: Path | None, **options: Any) -> ArrayDataset:
        check_options(self.info.name, options, ())
        name = self.info.name
        if root is None and not self.default_roots:
            raise DataError(f"{name}: no data root given; pass --data-root or set {DATA_ENV}")
        image_stem, label_stem = FILES[split]
        image_path = find_file(self.candidates(root, image_stem), f"{split} images ({image_stem}.gz)", name)
        label_path = find_file(self.candidates(root, label_stem), f"{split} labels ({label_stem}.gz)", name)
        images = read_idx(image_path, expected_dims=3, element_type=UNSIGNED_BYTE)
        labels = read_idx(label_path, expected_dims=1, element_type=UNSIGNED_BYTE)
        if images.shape[1:] != self.info.input_shape[1:]:
            raise DataError(
                f"{image_path}: images are {images.shape[1:]}, expected {self.info.input_shape[1:]}"
            )
        if len(images) != len(labels):
            raise DataError(
                f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= self.info.num_classes):
            raise DataError(f"{label_path}: labels outside 0..{self.info.num_classes - 1}")
        x = torch.from_numpy(images.copy()).unsqueeze(1)
        y = torch.from_numpy(labels.astype("int64"))
        meta = {"files": [str(image_path), str(label_path)], "split": "official"}
        return ArrayDataset(x, y, scale=255.0, meta=meta)


class MNIST(IDXImageSource):
    info = DatasetInfo(
        name="mnist",
        input_shape=(1, 28, 28),
        num_classes=10,
        description="MNIST handwritten digits, 60k/10k, from the IDX gz files",
        class_names=tuple(str(i) for i in range(10)),
        normalize=((0.1307,), (0.3081,)),
    )
    folders = ("MNIST/raw", "MNIST", "mnist")


register_dataset(MNIST())
