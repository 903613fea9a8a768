"""Datasets: each source returns a `Dataset` of tensors in the layout the pipeline uses."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rolemodels.errors import UserError


@dataclass
class Dataset:
    """Labelled train and test sets plus an unlabelled pool, all from one distribution.

    x_*: float32 [N, ...] (already normalised) or uint8 images [N, H, W, C] / [N, H, W];
    y_*: int64 [N]. `y_pool` holds the pool's true labels when known (used only for the
    `clean_pool` reference, never for distillation); None otherwise.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_pool: torch.Tensor
    y_pool: torch.Tensor | None
    num_classes: int
    class_names: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_dataset(cfg, progress=None) -> Dataset:
    """The dataset a `DataConfig` names. Sources are imported only when asked for."""
    if cfg.name == "mnist1d":
        from rolemodels.data.mnist1d import load_mnist1d

        return load_mnist1d(cfg.n_train, cfg.n_test, cfg.n_pool, cfg.seed, cfg.generator, cfg.cache_dir, progress)
    if cfg.name == "fashion-mnist":
        from rolemodels.data.fashion_mnist import load_fashion_mnist

        data = load_fashion_mnist(cfg.root or None, n_train=cfg.n_train, n_pool=cfg.n_pool, seed=cfg.seed,
                                  download=cfg.download)
        return _limit_test(data, cfg.n_test)
    if cfg.name == "cifar10":
        from rolemodels.data.cifar_dataset import load_cifar_dataset

        return load_cifar_dataset(cfg)
    if cfg.name == "arrays":
        from rolemodels.data.arrays import load_arrays
        from rolemodels.errors import UserError

        if not cfg.path:
            raise UserError("data.name=arrays needs data.path=FILE.npz (x_train, y_train, x_test, y_test, x_pool)")
        return load_arrays(cfg.path)
    from rolemodels.errors import UserError

    raise UserError(f"unknown dataset {cfg.name!r}: choose mnist1d, fashion-mnist, cifar10 or arrays")


def _limit_test(data: Dataset, n_test: int) -> Dataset:
    """Keep the first n_test test examples (the sources' own test sets are fixed)."""
    if n_test < len(data.y_test):
        data.x_test, data.y_test = data.x_test[:n_test], data.y_test[:n_test]
    return data


def check_dataset(data: Dataset) -> None:
    """Refuse data the pipeline cannot use, naming what is wrong."""
    for part in ("train", "test", "pool"):
        x = getattr(data, f"x_{part}")
        if len(x) == 0:
            raise UserError(f"dataset {data.name}: the {part} set is empty")
    for part in ("train", "test"):
        x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        if len(x) != len(y):
            raise UserError(f"dataset {data.name}: {len(x):,} {part} inputs but {len(y):,} labels")
        if y.min() < 0 or y.max() >= data.num_classes:
            raise UserError(f"dataset {data.name}: {part} labels must be in [0, {data.num_classes}), "
                            f"found {int(y.min())}..{int(y.max())}")
    if data.x_train.is_floating_point() and not torch.isfinite(data.x_train).all():
        raise UserError(f"dataset {data.name}: the training inputs contain NaN or inf")
