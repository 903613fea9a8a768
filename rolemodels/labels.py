"""Class labels: the one check that every label array the library takes passes through.

Labels arrive as numpy arrays, torch tensors or lists, from files, the command line or code.
`check_labels` turns them into int64 [N] or refuses them with one line that names the input,
what was wrong and what was expected. Its parts serve arrays of other shapes (a teachers'
uint8 [N, K] matrix): `label_values` checks the values, `check_range` the range [0, C).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rolemodels.errors import UserError


def as_numpy(values: Any) -> np.ndarray:
    """A numpy array, a list or a (CPU or device) torch tensor -> numpy array."""
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def check_num_classes(num_classes: int, minimum: int = 1) -> int:
    """num_classes as an int, refused unless it is an integer >= minimum."""
    if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)):
        raise UserError(f"number of classes {num_classes!r} is not an integer")
    if num_classes < minimum:
        raise UserError(f"number of classes is {num_classes}; expected at least {minimum}")
    return int(num_classes)


def position(shape: tuple[int, ...], flat_index: int) -> str:
    """Where a flat index lies, for a message: "index 1,234" in 1-D, "index (1, 0)" otherwise."""
    if len(shape) == 1:
        return f"index {flat_index:,}"
    return f"index {tuple(int(i) for i in np.unravel_index(flat_index, shape))}"


def label_values(values: Any, source: str, *, floats: bool = True) -> np.ndarray:
    """Class labels of any shape -> int64 of the same shape, refused unless they are integers.

    Integer dtypes are accepted; so are floats holding whole numbers when `floats` is true
    (label files often store labels as float). NaN, inf, fractions, booleans and non-numbers
    are refused. An empty array is accepted whatever its dtype (np.asarray([]) is float64).
    `source` names the input in messages ("labels file x.npy", "y_true").
    """
    try:
        arr = as_numpy(values)
    except (TypeError, ValueError):
        raise UserError(f"{source}: cannot be read as an array of labels") from None
    if arr.dtype.kind == "b":
        raise UserError(f"{source}: holds booleans; expected integer labels")
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not floats and arr.size):
        raise UserError(f"{source}: holds {arr.dtype} values; expected integer labels")
    flat = arr.ravel()
    if arr.dtype.kind == "f":
        nonfinite = np.flatnonzero(~np.isfinite(flat))
        if nonfinite.size:
            i = int(nonfinite[0])
            raise UserError(f"{source}: label at {position(arr.shape, i)} is {flat[i]}; expected integer labels")
        fractional = np.flatnonzero(flat != np.floor(flat))
        if fractional.size:
            i = int(fractional[0])
            raise UserError(f"{source}: label {flat[i]:g} at {position(arr.shape, i)} is not an integer")
        if flat.size and np.abs(flat).max() >= 2.0**62:
            raise UserError(f"{source}: label {flat[np.argmax(np.abs(flat))]:g} is too large for a class index")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise UserError(f"{source}: label {arr.max()} is too large for a class index")
    return arr.astype(np.int64)


def check_range(labels: np.ndarray, source: str, num_classes: int | None = None) -> np.ndarray:
    """labels int64 [...] unchanged, refused unless each is >= 0 and < num_classes (when given)."""
    flat = labels.ravel()
    negative = np.flatnonzero(flat < 0)
    if negative.size:
        i = int(negative[0])
        expected = f"[0, {num_classes})" if num_classes is not None else "labels >= 0"
        raise UserError(f"{source}: label {flat[i]} at {position(labels.shape, i)} is negative; expected {expected}")
    if num_classes is not None:
        too_big = np.flatnonzero(flat >= num_classes)
        if too_big.size:
            i = int(too_big[0])
            raise UserError(f"{source}: label {flat[i]} at {position(labels.shape, i)} is outside "
                            f"[0, {num_classes}) for {num_classes} classes")
    return labels


def check_labels(
    values: Any,
    source: str,
    num_classes: int | None = None,
    expected_length: int | None = None,
    *,
    floats: bool = True,
    length_of: str = "the dataset",
    unit: str = "images",
) -> np.ndarray:
    """Check that `values` is a 1-D array of class labels and return it as int64 [N].

    The values pass `label_values` (whole-number floats only when `floats`) and
    `check_range` (>= 0, and < num_classes when that is given). When expected_length is
    given the length must equal it; the message then reads "{source}: 9 labels, but
    {length_of} has 10 {unit}" ("... but the dataset has 10 images" by default).
    """
    if num_classes is not None:
        num_classes = check_num_classes(num_classes)
    labels = label_values(values, source, floats=floats)
    if labels.ndim != 1:
        raise UserError(f"{source}: shape {tuple(labels.shape)}; expected a 1-D array of labels")
    if expected_length is not None and labels.shape[0] != expected_length:
        raise UserError(f"{source}: {labels.shape[0]:,} labels, but {length_of} has {expected_length:,} {unit}")
    return check_range(labels, source, num_classes)
