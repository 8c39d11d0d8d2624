"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28×28 grey images of 10 kinds of clothing,
60,000 train / 10,000 test, in MNIST's IDX format and file names.

Looked for under the data root (``<root>/FashionMNIST/raw``, ``<root>/FashionMNIST``,
``<root>/fashion-mnist``, ``<root>/fashion_mnist``, ``<root>``), then in
``/usr/share/datasets/fashion-mnist``, where Debian's package ``dataset-fashion-mnist`` puts
the four gz files (``apt-get install dataset-fashion-mnist``), so no root is needed there.
"""

from __future__ import annotations

from pathlib import Path

from spikeshield.data.base import DatasetInfo, register_dataset
from spikeshield.data.mnist import IDXImageSource

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class FashionMNIST(IDXImageSource):
    info = DatasetInfo(
        name="fashion-mnist",
        input_shape=(1, 28, 28),
        num_classes=10,
        description="Fashion-MNIST, 60k/10k, IDX gz files (also Debian's dataset-fashion-mnist folder)",
        class_names=CLASSES,
        normalize=((0.2860,), (0.3530,)),
    )
    folders = ("FashionMNIST/raw", "FashionMNIST", "fashion-mnist", "fashion_mnist")
    default_roots = (DEBIAN_FOLDER,)

    def candidate_dirs(self, root: Path | None) -> list[Path]:
        dirs = super().candidate_dirs(root)
        if root is not None:  # the Debian folder holds the files directly
            dirs.append(DEBIAN_FOLDER)
        return dirs if root is not None else [DEBIAN_FOLDER]


register_dataset(FashionMNIST())
