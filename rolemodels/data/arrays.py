"""Any dataset given as arrays in one `.npz`: bring your own data.

Keys: `x_train`, `y_train`, `x_test`, `y_test`, `x_pool` (the unlabelled pool that
distillation needs) and optionally `y_pool` (the pool's true labels, for the clean-pool
reference) and `class_names` (strings). Inputs are uint8 images of any shape or float
features; they are not normalised here.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np
import torch

from rolemodels.data import Dataset
from rolemodels.errors import UserError
from rolemodels.runtime.files import reason

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def load_arrays(path: str | os.PathLike, num_classes: int | None = None) -> Dataset:
    """Load a Dataset from an `.npz` of arrays.

    x_*: uint8 [N, ...] kept as uint8, or float [N, ...] returned as float32 (NaN and inf
    rejected); every x_* shares the shape after N. y_*: integers [N] in [0, C), where C is
    `num_classes` or else max label + 1 over train and test. Sets must not be empty.
    """
    path = os.fspath(path)
    arrays = _read_npz(path)
    missing = [k for k in (*REQUIRED, "x_pool") if k not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)) or "nothing"
        hint = ""
        if missing == ["x_pool"]:
            hint = (
                "; distillation needs an unlabelled pool: add x_pool (images or features the "
                "teachers label and the student learns from, same shape as x_train)"
            )
        raise UserError(f"arrays file {path}: missing {', '.join(missing)} (found {found}){hint}")

    xs = {k: _inputs(path, k, arrays[k]) for k in ("x_train", "x_test", "x_pool")}
    shape = xs["x_train"].shape[1:]
    for key, x in xs.items():
        if x.shape[1:] != shape:
            raise UserError(
                f"arrays file {path}: {key} has examples of shape {x.shape[1:]}, but x_train's are {shape}"
            )
        if xs["x_train"].dtype != x.dtype:
            raise UserError(
                f"arrays file {path}: {key} is {x.dtype} but x_train is {xs['x_train'].dtype}; use one type"
            )

    label_keys = ["y_train", "y_test"] + (["y_pool"] if "y_pool" in arrays else [])
    ys = {k: _labels(path, k, arrays[k], len(xs["x" + k[1:]])) for k in label_keys}
    observed = max(int(ys[k].max()) for k in ("y_train", "y_test")) + 1
    if num_classes is None:
        num_classes = observed
    elif num_classes < 1:
        raise UserError(f"arrays file {path}: num_classes={num_classes}, expected a positive number")
    for key, y in ys.items():
        if y.max() >= num_classes:
            raise UserError(
                f"arrays file {path}: {key} has label {int(y.max())}, expected labels in [0, {num_classes})"
            )

    class_names = [str(c) for c in range(num_classes)]
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or len(names) != num_classes or names.dtype.kind not in "US":
            raise UserError(
                f"arrays file {path}: class_names is {names.dtype} {names.shape}, expected {num_classes} strings"
            )
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    return Dataset(
        name=os.path.splitext(os.path.basename(path))[0],
        x_train=torch.from_numpy(xs["x_train"]),
        y_train=torch.from_numpy(ys["y_train"]),
        x_test=torch.from_numpy(xs["x_test"]),
        y_test=torch.from_numpy(ys["y_test"]),
        x_pool=torch.from_numpy(xs["x_pool"]),
        y_pool=torch.from_numpy(ys["y_pool"]) if "y_pool" in ys else None,
        num_classes=num_classes,
        class_names=class_names,
    )


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"arrays file {path}: not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"arrays file {path}: not a readable .npz ({reason(err)})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise UserError(f"arrays file {path}: a single array, expected an .npz with named arrays")
    try:
        with loaded:
            return {k: loaded[k] for k in loaded.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"arrays file {path}: damaged or truncated .npz ({reason(err)})") from None


def _inputs(path: str, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim < 2:
        raise UserError(f"arrays file {path}: {key} has shape {x.shape}, expected [N, ...] with N examples")
    if len(x) == 0:
        raise UserError(f"arrays file {path}: {key} is empty, expected at least one example")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"arrays file {path}: {key} is {x.dtype}, expected uint8 images or float features")
    bad = ~np.isfinite(x)
    if not bad.any() and x.dtype.itemsize > 4:  # finite as given, but models compute in float32
        too_large = np.abs(x) > np.finfo(np.float32).max
        if too_large.any():
            first = np.unravel_index(int(np.argmax(too_large)), x.shape)
            raise UserError(f"arrays file {path}: {key} has {int(too_large.sum()):,} values beyond float32's range "
                            f"(|x| > 3.4e38, first at example {first[0]}); rescale the inputs")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), x.shape)
        raise UserError(
            f"arrays file {path}: {key} has {int(bad.sum()):,} NaN or infinite values "
            f"(first at example {first[0]}); expected finite numbers"
        )
    return x


def _labels(path: str, key: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_):
        raise UserError(f"arrays file {path}: {key} is {y.dtype} {y.shape}, expected integer labels [N]")
    if len(y) != n:
        x_key = "x" + key[1:]
        raise UserError(f"arrays file {path}: {len(y):,} labels in {key} but {n:,} examples in {x_key}")
    if y.min() < 0:
        raise UserError(f"arrays file {path}: {key} has label {int(y.min())}, expected labels >= 0")
    return y.astype(np.int64)
