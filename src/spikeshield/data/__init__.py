"""Datasets behind one entry point, :func:`load_dataset`; nothing is ever downloaded.

>>> from spikeshield.data import load_dataset
>>> train = load_dataset("digits", "train")
>>> x, y = train.tensors()      # float images in [0, 1], int64 labels
"""

from spikeshield.data import (  # noqa: F401  (importing registers the datasets)
    cifar10,
    cifar10_dvs,
    digits,
    dvs_gesture,
    fashion_mnist,
    mnist,
    nmnist,
)
from spikeshield.data.base import (
    DATA_ENV,
    DATASETS,
    ArrayDataset,
    DatasetInfo,
    DatasetSource,
    Location,
    data_root,
    dataset_info,
    load_dataset,
    register_dataset,
)
from spikeshield.io import cache_dir  # the cache (datasets and kernels) lives in io

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "ArrayDataset",
    "DatasetInfo",
    "DatasetSource",
    "Location",
    "cache_dir",
    "data_root",
    "dataset_info",
    "load_dataset",
    "register_dataset",
]
