"""A practitioner's own files for `rolemodels distill`: read, and refused in one line when they cannot work.

    data = read_user_data(InputFiles(data="mine.npz"))                     # x_train, y_train, x_pool[, x_test, y_test]
    data = read_user_data(InputFiles(x_train="x.npy", y_train="y.npy", x_pool="pool.npy"))

Every check runs before anything is written: shapes, labels (integers in [0, C), or strings,
which become the class names), NaN or inf anywhere, a pool that repeats training rows, and too
few labelled examples of a class. A pool in a .npy file is memory-mapped, never loaded whole.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from rolemodels.data.cifar5m import ConcatPool
from rolemodels.errors import UserError

MIN_PER_CLASS = 5  # fewer labelled examples of a class cannot teach it, nor say which of its labels are wrong
CHECK_CHUNK = 65536  # pool rows checked at a time
ARRAYS = ("x_train", "y_train", "x_pool", "x_test", "y_test", "class_names")


@dataclass
class InputFiles:
    """Where the arrays are: an .npz holding them by name, and/or one .npy file each (which wins)."""

    data: str = ""  # .npz with x_train, y_train, x_pool and optionally x_test, y_test, class_names
    x_train: str = ""
    y_train: str = ""
    x_pool: str = ""
    x_test: str = ""
    y_test: str = ""
    class_names: str = ""  # .npy of C strings naming the integer labels 0..C-1


@dataclass
class UserData:
    """x_*: float32 or uint8 [n, ...] (the pool perhaps memory-mapped); y_*: int64 in [0, C);
    classes: the name of each class, str or int (the labels as the files gave them)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_pool: torch.Tensor | ConcatPool
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    classes: list

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def read_user_data(files: InputFiles) -> UserData:
    """The arrays `files` names, checked (module docstring); UserError naming the file otherwise."""
    arrays, where = _read_arrays(files)
    for name in ("x_train", "y_train", "x_pool"):
        if name not in arrays:
            raise UserError(f"{where.get('data', 'inputs')}: no {name}; distill needs x_train, y_train (the noisy "
                            f"labels) and x_pool (unlabelled inputs), as arrays of an .npz or --{name.replace('_', '-')}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        have, lack = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise UserError(f"{where[have]}: {have} without {lack}; give both or neither")
    inputs = {name: _inputs(where[name], name, arrays[name]) for name in ("x_train", "x_pool", "x_test") if name in arrays}
    shape, kind = inputs["x_train"].shape[1:], inputs["x_train"].dtype
    for name, x in inputs.items():
        if x.shape[1:] != shape:
            raise UserError(f"{where[name]}: {name} has examples of shape {list(x.shape[1:])}, but x_train's are "
                            f"{list(shape)}")
        if x.dtype != kind:
            raise UserError(f"{where[name]}: {name} is {x.dtype} but x_train is {kind}; use one type")
    y_train, classes = _encode(where["y_train"], "y_train", arrays["y_train"], len(inputs["x_train"]),
                               _class_names(where, arrays))
    y_test = None
    if "y_test" in arrays:
        y_test, _ = _encode(where["y_test"], "y_test", arrays["y_test"], len(inputs["x_test"]), classes)
    check_class_counts(where["y_train"], y_train, classes)
    for name, x in inputs.items():
        check_finite(where[name], name, x)
    check_pool_is_new(where["x_pool"], inputs["x_pool"], inputs["x_train"])
    tensor = lambda x: torch.from_numpy(np.ascontiguousarray(x))
    pool = inputs["x_pool"]
    return UserData(tensor(inputs["x_train"]), torch.from_numpy(y_train),
                    ConcatPool([pool]) if isinstance(pool, np.memmap) else tensor(pool),
                    tensor(inputs["x_test"]) if "x_test" in inputs else None,
                    torch.from_numpy(y_test) if y_test is not None else None, classes)


# ---------------------------------------------------------------------------------------------
# Reading


def _read_arrays(files: InputFiles) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays by name, and the file each came from."""
    arrays, where = {}, {}
    if files.data:
        for name, array in _read_npz(files.data).items():
            if name in ARRAYS:
                arrays[name], where[name] = array, files.data
        where["data"] = files.data
    for field in fields(InputFiles):
        path = getattr(files, field.name)
        if field.name != "data" and path:
            arrays[field.name], where[field.name] = _read_npy(path, memory_map=field.name == "x_pool"), path
    return arrays, where


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as loaded:
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise UserError(f"{path}: a single array, expected an .npz with named arrays (x_train, y_train, x_pool)")
            return {name: loaded[name] for name in loaded.files}
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except AttributeError:  # np.load gave a plain array, which is no context manager
        raise UserError(f"{path}: a single array, expected an .npz with named arrays (x_train, y_train, x_pool)") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"{path}: not a readable .npz ({' '.join(str(err).split())})") from None


def _read_npy(path: str, memory_map: bool) -> np.ndarray:
    if Path(path).suffix == ".npz":
        raise UserError(f"{path}: an .npz; give it as --data, or one .npy file per array")
    try:
        array = np.load(path, mmap_mode="r" if memory_map else None, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"{path}: not a readable .npy ({' '.join(str(err).split())})") from None
    if not isinstance(array, np.ndarray):
        raise UserError(f"{path}: not a single array (.npy)")
    return array


def _inputs(path: str, name: str, x: np.ndarray) -> np.ndarray:
    """Inputs [n, ...] as uint8 or float32 (a memory map stays one when it is already either)."""
    if x.ndim < 2:
        raise UserError(f"{path}: {name} has shape {list(x.shape)}, expected [N, ...]: one row per example")
    if len(x) == 0:
        raise UserError(f"{path}: {name} is empty, expected at least one example")
    if x.dtype == np.uint8 or (x.dtype == np.float32 and isinstance(x, np.memmap)):
        return x
    if x.dtype == np.bool_ or x.dtype.kind not in "iuf":
        raise UserError(f"{path}: {name} is {x.dtype}, expected numbers (uint8 images or numeric features)")
    return np.asarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Labels


def _class_names(where: dict[str, str], arrays: dict[str, np.ndarray]) -> list | None:
    if "class_names" not in arrays:
        return None
    names = arrays["class_names"]
    if names.ndim != 1 or names.dtype.kind not in "US" or len(names) < 2:
        raise UserError(f"{where['class_names']}: class_names is {names.dtype} {list(names.shape)}, expected at "
                        f"least 2 strings")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _encode(path: str, name: str, y: np.ndarray, n: int, classes: list | None) -> tuple[np.ndarray, list]:
    """Labels -> int64 [n] in [0, C) and the class names: integers as they are (C from class_names,
    else the largest label + 1), strings by their sorted values (or the given classes)."""
    if y.ndim != 1:
        raise UserError(f"{path}: {name} has shape {list(y.shape)}, expected labels [N]")
    if len(y) != n:
        x_name = "x" + name[1:]
        raise UserError(f"{path}: {len(y):,} labels in {name}, but {n:,} examples in {x_name}")
    if y.dtype.kind in "US":
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in y.tolist()]
        known = classes if classes is not None else sorted(set(values))
        index = {c: i for i, c in enumerate(known)}
        unknown = sorted({v for v in values if v not in index})
        if unknown:
            raise UserError(f"{path}: {name} has label {unknown[0]!r}, which is not a class of y_train "
                            f"({', '.join(map(repr, known[:10]))}{', ...' if len(known) > 10 else ''})")
        return np.array([index[v] for v in values], dtype=np.int64), list(known)
    if y.dtype == np.bool_ or y.dtype.kind not in "iu":
        raise UserError(f"{path}: {name} is {y.dtype}, expected integer labels or strings")
    labels = y.astype(np.int64)
    limit = len(classes) if classes is not None else int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= limit:
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise UserError(f"{path}: {name} has label {bad}, expected labels in [0, {limit - 1}]"
                        + (" (one per class name)" if classes is not None else ""))
    return labels, list(classes) if classes is not None else list(range(limit))


def check_class_counts(path: str, labels: np.ndarray, classes: list) -> None:
    """Refuse a class with fewer than MIN_PER_CLASS labelled examples. labels: int64 [n] in [0, C)."""
    counts = np.bincount(labels, minlength=len(classes))
    if len(classes) < 2:
        raise UserError(f"{path}: every label is {classes[0]!r}; a classifier needs at least 2 classes")
    rare = np.flatnonzero(counts < MIN_PER_CLASS)
    if len(rare):
        c = int(rare[0])
        raise UserError(f"{path}: class {classes[c]!r} has {counts[c]} labelled example(s) ({len(rare)} class(es) "
                        f"have fewer than {MIN_PER_CLASS}); each class needs at least {MIN_PER_CLASS}: merge or drop "
                        f"rare classes")


# ---------------------------------------------------------------------------------------------
# Values


def check_finite(path: str, name: str, x: np.ndarray) -> None:
    """Refuse NaN or inf anywhere in float inputs, checked CHECK_CHUNK rows at a time."""
    if x.dtype.kind != "f":
        return
    for first in range(0, len(x), CHECK_CHUNK):
        bad = ~np.isfinite(np.asarray(x[first:first + CHECK_CHUNK]))
        if bad.any():
            row = first + int(np.argmax(bad.reshape(len(bad), -1).any(1)))
            raise UserError(f"{path}: {name} has NaN or infinite values (first in example {row:,}); expected finite "
                            f"numbers")


def row_hashes(x: np.ndarray, chunk: int = CHECK_CHUNK) -> np.ndarray:
    """A 64-bit hash of each row's bytes: uint64 [N] (equal rows, equal hashes; rare collisions)."""
    out = np.empty(len(x), dtype=np.uint64)
    weights = None
    for first in range(0, len(x), chunk):
        rows = np.ascontiguousarray(x[first:first + chunk]).reshape(min(chunk, len(x) - first), -1).view(np.uint8)
        pad = (-rows.shape[1]) % 8
        words = np.pad(rows, ((0, 0), (0, pad))).view(np.uint64)
        if weights is None:  # odd 64-bit multipliers, the same for every chunk
            weights = np.random.default_rng(0).integers(0, 2**63, words.shape[1], dtype=np.uint64) * 2 + 1
        with np.errstate(over="ignore"):
            out[first:first + len(rows)] = (words * weights).sum(1, dtype=np.uint64)
    return out


def check_pool_is_new(path: str, x_pool: np.ndarray, x_train: np.ndarray) -> None:
    """Refuse a pool with rows equal to training rows: the teachers memorised those labels, so a
    student would learn the noise there (and the diagnostics would count it as agreement)."""
    train = row_hashes(x_train)
    pool = row_hashes(x_pool)
    candidates = np.flatnonzero(np.isin(pool, train))
    if not len(candidates):
        return
    order = np.argsort(train, kind="stable")
    repeats = []
    for i in candidates:  # hashes agree: compare the rows themselves
        j = order[np.searchsorted(train[order], pool[i])]
        if np.array_equal(np.asarray(x_pool[i]), np.asarray(x_train[j])):
            repeats.append((int(i), int(j)))
    if repeats:
        i, j = repeats[0]
        raise UserError(f"{path}: {len(repeats):,} pool row(s) repeat training rows (first: pool row {i:,} is "
                        f"training row {j:,}); the pool must hold inputs the teachers were not trained on")
