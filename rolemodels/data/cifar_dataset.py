"""CIFAR-10 (noisy training set, clean test set) with CIFAR-5m as the unlabelled pool."""
from __future__ import annotations

import torch

from rolemodels.data import Dataset
from rolemodels.errors import UserError


def load_cifar_dataset(cfg) -> Dataset:
    """The paper's data: the first n_train CIFAR-10 training images in the published order (the
    order of the released noisy-label file), the first n_test test images, and n_pool CIFAR-5m
    images (memory-mapped; `data.pool_root`). Without a pool root, the CIFAR-10 training images
    after the first n_train serve as the pool (their labels kept only for `clean_pool`)."""
    from rolemodels.data.cifar10 import load_cifar10

    if not cfg.root:
        raise UserError("data.name=cifar10 needs data.root=DIR (the cifar-10-batches-py folder or its parent)")
    x_train, y_train, x_test, y_test, names = load_cifar10(cfg.root, download=cfg.download)
    if cfg.n_train > len(y_train):
        raise UserError(f"data.n_train={cfg.n_train:,}, but CIFAR-10 has {len(y_train):,} training images")
    if cfg.pool_root:
        from rolemodels.data.cifar5m import load_cifar5m

        x_pool, y_pool = load_cifar5m(cfg.pool_root, per_class=cfg.pool_per_class or None, limit=cfg.n_pool,
                                      cache_dir=cfg.cache_dir or None)
    else:
        x_pool, y_pool = x_train[cfg.n_train:], y_train[cfg.n_train:]
        if len(y_pool) == 0:
            raise UserError("data.pool_root is not set and no CIFAR-10 training images are left for a pool: "
                            "set data.pool_root=DIR (CIFAR-5m) or a smaller data.n_train")
    n_pool = min(cfg.n_pool, len(y_pool))
    if n_pool < len(y_pool) and isinstance(x_pool, torch.Tensor):
        x_pool, y_pool = x_pool[:n_pool], y_pool[:n_pool]
    return Dataset(name="cifar10", x_train=x_train[:cfg.n_train], y_train=y_train[:cfg.n_train],
                   x_test=x_test[:cfg.n_test], y_test=y_test[:cfg.n_test], x_pool=x_pool, y_pool=y_pool,
                   num_classes=10, class_names=list(names))
