"""CIFAR-10 (Krizhevsky 2009): 32×32 colour images, 10 classes, 50,000 train / 10,000 test.

Two formats are read:

- ``cifar-10-batches-py/`` — the original Python release that users elsewhere have:
  ``data_batch_1`` … ``data_batch_5`` and ``test_batch``, each a (Python 2) pickle of a dict with
  ``data`` (uint8 ``[10000, 3072]``, the red, green then blue 32×32 planes) and ``labels``.
  Pickles can run arbitrary code when loaded, so they are read with an unpickler that builds
  nothing but dicts, lists, strings, numbers and numpy arrays/dtypes, and refuses everything
  else (no code runs, whatever the file holds).
- ``cifar10-jpeg.tar.gz`` — a tar.gz of ``train/<class>/NNNN.jpg`` and ``test/<class>/NNNN.jpg``
  (label = class name's index in the usual alphabetical CIFAR-10 order). Decoding the 60,000
  JPEGs needs Pillow (``pip install 'spikeshield[images]'``) and takes ~15–25 s on one core, so
  it is done once and the uint8 arrays are cached under ``cache_dir()`` (the cache is rebuilt
  when the archive changes).

Looked for under ``<root>/cifar-10-batches-py``, ``<root>/CIFAR10/cifar-10-batches-py``,
``<root>/cifar10/cifar-10-batches-py``, ``<root>`` (pickles), then
``<root>/CIFAR10/cifar10-jpeg.tar.gz``, ``<root>/cifar10/cifar10-jpeg.tar.gz``,
``<root>/cifar10-jpeg.tar.gz`` (JPEG). Option ``format``: ``auto`` (pickles if present, else
the JPEG archive), ``pickle`` or ``jpeg``.
"""

from __future__ import annotations

import io
import pickle
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeshield.data.archive import iter_members
from spikeshield.data.base import (
    DATA_ENV,
    ArrayDataset,
    DatasetInfo,
    DatasetSource,
    Location,
    check_options,
    register_dataset,
)
from spikeshield.data.cache import Arrays, cached_arrays
from spikeshield.errors import DataError, UsageError
from spikeshield.io import read_regular

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PICKLE_FOLDER = "cifar-10-batches-py"
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
MEMBER = re.compile(r"(?:^|/)(train|test)/([a-z]+)/([^/]+\.jpe?g)$", re.IGNORECASE)
FORMATS = ("auto", "pickle", "jpeg")
DECODER_VERSION = 1
IMAGE_SHAPE = (3, 32, 32)
MAX_JPEG_BYTES = 1 << 20
"""A 32×32 JPEG is about 1 kB (at most 1,124 bytes in the 60,000-image archive); 1 MiB leaves
room for any metadata a converter adds."""
MAX_BATCH_BYTES = 64 << 20
"""A ``cifar-10-batches-py`` file holds 10,000 images (31 MB)."""


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asked for something other than plain data and numpy arrays."""


class SafeArrayUnpickler(pickle.Unpickler):
    """An unpickler for pickles of plain data and numpy arrays, and nothing else.

    Pickle's only way to run code is to name a callable (``find_class``) and call it; here
    the only names that resolve are numpy's array reconstructor, ``numpy.ndarray`` and
    ``numpy.dtype`` (which build arrays from raw bytes and call nothing else). Any other name,
    and any persistent id, raises :class:`RefusedPickle` (a :class:`pickle.UnpicklingError`).
    """

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise RefusedPickle(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return np.ndarray if name == "ndarray" else np.dtype

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("refusing a persistent id")


def safe_load_pickle(data: bytes, where: str) -> Any:
    """Unpickle ``data`` with :class:`SafeArrayUnpickler` (Python 2 strings read as bytes)."""
    try:
        return SafeArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except RefusedPickle as exc:
        raise DataError(f"{where}: {exc}; not a CIFAR-10 batch file (nothing in it was run)") from None
    except Exception as exc:  # a damaged pickle can fail in many ways; all mean "unreadable"
        raise DataError(
            f"{where}: not a readable pickle ({type(exc).__name__}: {exc}); the file is truncated or corrupt"
        ) from None


def _get(batch: dict[Any, Any], key: str) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    return None


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 3, 32, 32]`` uint8 and int64 labels of one ``cifar-10-batches-py`` file."""
    batch = safe_load_pickle(read_regular(path, "CIFAR-10 batch file", max_bytes=MAX_BATCH_BYTES), str(path))
    if not isinstance(batch, dict):
        raise DataError(f"{path}: holds a {type(batch).__name__}, expected a dict with 'data' and 'labels'")
    images, labels = _get(batch, "data"), _get(batch, "labels")
    if images is None or labels is None:
        raise DataError(f"{path}: no 'data' and 'labels' entries; not a CIFAR-10 batch file")
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 2
        or images.shape[1] != 3072
    ):
        shape = getattr(images, "shape", None)
        raise DataError(
            f"{path}: 'data' must be a uint8 [N, 3072] array, got {type(images).__name__} {shape}"
        )
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(type(v) is int for v in labels):
        raise DataError(f"{path}: 'labels' is not a list of integers")
    if len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels")
    bad = next((v for v in labels if not 0 <= v < len(CLASSES)), None)
    if bad is not None:
        raise DataError(f"{path}: labels outside 0..9 ({bad} found)")
    return images.reshape(-1, *IMAGE_SHAPE).copy(), np.array(labels, dtype=np.int64)


def decode_jpeg_archive(path: Path) -> Arrays:
    """Decode every ``train|test/<class>/*.jpg`` of the archive (sorted by class, then name)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError(
            f"{path}: decoding the CIFAR-10 JPEG archive needs Pillow (pip install 'spikeshield[images]')"
        ) from None
    found: dict[str, list[tuple[tuple[int, str], np.ndarray]]] = {"train": [], "test": []}
    for name, data in iter_members(path, MEMBER, MAX_JPEG_BYTES):
        match = MEMBER.search(name)
        assert match is not None
        split, cls = match.group(1).lower(), match.group(2).lower()
        if cls not in CLASSES:
            raise DataError(f"{path}: member {name} is in unknown class folder {cls!r}")
        try:
            with warnings.catch_warnings():  # the size is checked below, before decoding
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data), formats=["JPEG"])
            if image.size != (32, 32):  # from the header: nothing decoded yet
                raise DataError(f"{path}: member {name} is {image.size[0]}×{image.size[1]}, expected 32×32")
            pixels = np.asarray(image.convert("RGB"))
        except DataError:
            raise
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            OSError,
            ValueError,
            SyntaxError,
        ) as exc:
            raise DataError(f"{path}: member {name} is not a readable JPEG ({exc})") from None
        found[split].append(((CLASSES.index(cls), match.group(3)), pixels))
    arrays: Arrays = {}
    for split, items in found.items():
        if not items:
            raise DataError(f"{path}: no {split}/<class>/*.jpg members; not the CIFAR-10 JPEG archive")
        items.sort(key=lambda item: item[0])
        arrays[f"{split}_x"] = np.stack([pixels for _, pixels in items]).transpose(0, 3, 1, 2).copy()
        arrays[f"{split}_y"] = np.array([key[0] for key, _ in items], dtype=np.int64)
    return arrays


class CIFAR10(DatasetSource):
    info = DatasetInfo(
        name="cifar10",
        input_shape=IMAGE_SHAPE,
        num_classes=10,
        description="CIFAR-10, 50k/10k, from cifar-10-batches-py pickles or the JPEG tar.gz (cached)",
        class_names=CLASSES,
        normalize=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    )

    @staticmethod
    def pickle_dirs(root: Path) -> list[Path]:
        return [
            root / PICKLE_FOLDER,
            root / "CIFAR10" / PICKLE_FOLDER,
            root / "cifar10" / PICKLE_FOLDER,
            root,
        ]

    @staticmethod
    def jpeg_paths(root: Path) -> list[Path]:
        return [root / "CIFAR10" / JPEG_ARCHIVE, root / "cifar10" / JPEG_ARCHIVE, root / JPEG_ARCHIVE]

    def locate(self, root: Path | None, format: str = "auto") -> Location:
        if root is None:
            return Location(False, None, [], f"no data root: pass --data-root or set {DATA_ENV}")
        searched: list[Path] = []
        if format in ("auto", "pickle"):
            searched += self.pickle_dirs(root)
            for folder in self.pickle_dirs(root):
                if all((folder / f).is_file() for names in BATCHES.values() for f in names):
                    return Location(True, folder, searched, "cifar-10-batches-py pickles (pickle)")
        if format in ("auto", "jpeg"):
            searched += self.jpeg_paths(root)
            for path in self.jpeg_paths(root):
                if path.is_file():
                    return Location(True, path, searched, "JPEG archive (jpeg)")
        return Location(False, None, searched, "cifar-10-batches-py files or cifar10-jpeg.tar.gz not found")

    def load(self, split: str, root: Path | None, **options: Any) -> ArrayDataset:
        check_options("cifar10", options, ("format",))
        fmt = options.get("format", "auto")
        if fmt not in FORMATS:
            raise UsageError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        location = self.locate(root, fmt)
        if not location.ready:
            looked = ", ".join(str(p) for p in location.searched) or "nowhere (no data root)"
            raise DataError(
                f"cifar10: {location.message} (looked in {looked}). Pass --data-root or set {DATA_ENV} "
                "to the folder that holds it."
            )
        assert location.path is not None
        start = time.perf_counter()
        meta: dict[str, Any] = {"source": str(location.path), "split": "official"}
        if location.message.endswith("(pickle)"):
            parts = [read_cifar_batch(location.path / name) for name in BATCHES[split]]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            meta.update(format="pickle", cached=False)
        else:
            arrays, cache_info = cached_arrays(
                "cifar10-jpeg",
                DECODER_VERSION,
                {},
                [location.path],
                lambda: decode_jpeg_archive(location.path),  # type: ignore[arg-type]
                required=("train_x", "train_y", "test_x", "test_y"),
                keys=(f"{split}_x", f"{split}_y"),
            )
            images, labels = arrays[f"{split}_x"], arrays[f"{split}_y"]
            meta.update(format="jpeg", **cache_info)
        meta["load_seconds"] = time.perf_counter() - start
        return ArrayDataset(torch.from_numpy(images), torch.from_numpy(labels), scale=255.0, meta=meta)


register_dataset(CIFAR10())
