"""Fashion-MNIST from its four IDX files (plain or .gz).

The 60,000 training images are split with a seeded permutation into `n_train` labelled
images and `n_pool` unlabelled pool images; the 10,000 t10k images are the test set.
Images stay uint8 [N, 28, 28, 1]; normalisation happens inside the model.
"""
from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import torch

from rolemodels.data import Dataset
from rolemodels.data.cifar10 import download_file
from rolemodels.data.idx import read_idx
from rolemodels.errors import UserError

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
DOWNLOAD_ROOT = os.path.join("~", ".cache", "rolemodels", "fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# md5 of each file's *decompressed* content, so a re-compressed copy still checks out
CONTENT_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
MIRRORS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
]
CLASS_NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_fashion_mnist(
    root: str | None = None,
    n_train: int = 10000,
    n_pool: int = 50000,
    seed: int = 0,
    download: bool = False,
) -> Dataset:
    """Load Fashion-MNIST as a Dataset.

    x_train uint8[n_train, 28, 28, 1], x_pool uint8[n_pool, 28, 28, 1] (disjoint, drawn
    from the training files by `np.random.default_rng(seed).permutation`), x_test
    uint8[10000, 28, 28, 1]; y_* int64. `y_pool` holds the pool's true labels (for the
    clean-pool reference only). `root` defaults to the Debian package's folder when it
    exists; `download=True` fetches missing files (into `root`, or ~/.cache/rolemodels).
    """
    if n_train < 1 or n_pool < 1:
        raise UserError(f"Fashion-MNIST: n_train={n_train} and n_pool={n_pool}, expected both >= 1")
    root = _resolve_root(root, download)
    paths = {key: _find(root, name) for key, name in FILES.items()}
    missing = [FILES[k] for k, p in paths.items() if p is None]
    if missing and download:
        _download(root, missing)
        paths = {key: _find(root, name) for key, name in FILES.items()}
        missing = [FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise UserError(
            f"Fashion-MNIST folder {root}: missing {', '.join(m + '(.gz)' for m in missing)}; "
            f"set data.download=true to fetch them"
        )

    x_all, y_all = _pair(paths["train_images"], paths["train_labels"])
    x_test, y_test = _pair(paths["test_images"], paths["test_labels"])
    if n_train + n_pool > len(x_all):
        raise UserError(
            f"Fashion-MNIST: n_train + n_pool = {n_train + n_pool:,} but "
            f"{os.path.basename(paths['train_images'])} has only {len(x_all):,} images"
        )
    order = np.random.default_rng(seed).permutation(len(x_all))
    train, pool = order[:n_train], order[n_train : n_train + n_pool]
    return Dataset(
        name="fashion-mnist",
        x_train=torch.from_numpy(x_all[train]),
        y_train=torch.from_numpy(y_all[train]),
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(y_test),
        x_pool=torch.from_numpy(x_all[pool]),
        y_pool=torch.from_numpy(y_all[pool]),
        num_classes=len(CLASS_NAMES),
        class_names=list(CLASS_NAMES),
    )


def _resolve_root(root: str | None, download: bool) -> str:
    if root is not None:
        return os.path.expanduser(os.fspath(root))
    if os.path.isdir(DEFAULT_ROOT):
        return DEFAULT_ROOT
    if download:
        return os.path.expanduser(DOWNLOAD_ROOT)
    raise UserError(
        f"Fashion-MNIST: no root given and {DEFAULT_ROOT} does not exist; pass the folder with "
        f"the four IDX files, install the Debian package dataset-fashion-mnist, or set data.download=true"
    )


def _find(root: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    return None


def _pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one (images, labels) pair -> (uint8[N, 28, 28, 1], int64[N])."""
    x = read_idx(images_path)
    y = read_idx(labels_path)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise UserError(
            f"Fashion-MNIST file {images_path}: {x.dtype} array of shape {x.shape}, expected uint8 [N, 28, 28]"
        )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"Fashion-MNIST file {labels_path}: {y.dtype} array of shape {y.shape}, expected integers [N]")
    if len(y) != len(x):
        raise UserError(
            f"Fashion-MNIST: {os.path.basename(labels_path)} has {len(y):,} labels but "
            f"{os.path.basename(images_path)} has {len(x):,} images"
        )
    if len(y) and (y.min() < 0 or y.max() >= len(CLASS_NAMES)):
        raise UserError(f"Fashion-MNIST file {labels_path}: labels range over [{y.min()}, {y.max()}], expected 0..9")
    return x[..., None], y.astype(np.int64)


def _download(root: str, names: list[str]) -> None:
    os.makedirs(root, exist_ok=True)
    for name in names:
        dest = os.path.join(root, name + ".gz")
        download_file([m + name + ".gz" for m in MIRRORS], dest, f"Fashion-MNIST {name}")
        try:
            with gzip.open(dest, "rb") as f:
                digest = hashlib.md5(f.read()).hexdigest()
        except (OSError, EOFError) as err:
            os.remove(dest)
            raise UserError(f"Fashion-MNIST {dest}: downloaded file is not valid gzip ({err})") from None
        if digest != CONTENT_MD5[name]:
            os.remove(dest)
            raise UserError(f"Fashion-MNIST {dest}: content md5 {digest}, expected {CONTENT_MD5[name]}")
