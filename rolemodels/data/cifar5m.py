"""CIFAR-5m, the unlabelled pool: about 5 million 32x32 images, memory-mapped, never loaded whole.

Two layouts are read:
- the published `part0.npz` .. `part5.npz` (also accepted as `cifar5m_part0.npz` ..), each
  with `X` uint8 [n, 32, 32, 3] and `Y` labels [n]. A part stored uncompressed is mapped
  in place; a compressed part has its `X` streamed once to `part<i>.X.npy` beside it (or
  in `cache_dir` when that folder is read-only) and mapped from there.
- per-class `class0.npy` .. `class9.npy`, each uint8 [n_c, 32, 32, 3]; the label is the
  class index; `per_class` keeps the first `per_class` images of each class.
The images come back as a `ConcatPool`, which gathers a batch of indices into a uint8
tensor reading only those images.
"""
from __future__ import annotations

import errno
import os
import struct
import zipfile

import numpy as np
import torch

from rolemodels.errors import UserError
from rolemodels.runtime.files import reason

NUM_PARTS = 6
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
_COPY_CHUNK = 1 << 24  # 16 MiB: extraction streams in chunks this size


class ConcatPool:
    """Several uint8 [n_i, 32, 32, 3] arrays (memory maps) seen as one uint8 [N, 32, 32, 3].

    `pool[indices]` (an int64 tensor, array or list) returns a uint8 tensor
    [len(indices), 32, 32, 3] in the order asked; indices are sorted internally so each
    part is read front to back with one vectorised gather. `pool[i]` returns one image
    and `pool[a:b]` a slice, both as tensors.
    """

    def __init__(self, parts: list[np.ndarray]):
        if not parts:
            raise ValueError("ConcatPool needs at least one part")
        tail = parts[0].shape[1:]
        for p in parts:
            if p.shape[1:] != tail or p.dtype != parts[0].dtype:
                raise ValueError(f"ConcatPool parts disagree: {p.dtype}{p.shape} vs {parts[0].dtype}{parts[0].shape}")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in parts])  # int64[P + 1]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.parts[0].shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(np.empty(0, dtype=self.parts[0].dtype)).dtype

    def __repr__(self) -> str:
        return f"ConcatPool({len(self.parts)} parts, shape={self.shape})"

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.ndim == 0):
            return self[np.asarray([int(index)])][0]
        if isinstance(index, slice):
            return self[np.arange(*index.indices(len(self)))]
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        idx = np.asarray(index)
        if idx.dtype == bool or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise TypeError(f"ConcatPool indices must be integers, got {idx.dtype}")
        return torch.from_numpy(self.gather(idx.astype(np.int64).reshape(-1)))

    def gather(self, idx: np.ndarray) -> np.ndarray:
        """int64[k] indices (negative counts from the end) -> uint8[k, 32, 32, 3] copy."""
        n = len(self)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)][0]
            raise IndexError(f"index {bad} is out of range for a pool of {n:,} images")
        out = np.empty((len(idx), *self.parts[0].shape[1:]), dtype=self.parts[0].dtype)
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        bounds = np.searchsorted(sorted_idx, self.offsets)  # where each part's run starts
        for p, part in enumerate(self.parts):
            lo, hi = bounds[p], bounds[p + 1]
            if lo < hi:
                out[order[lo:hi]] = part[sorted_idx[lo:hi] - self.offsets[p]]
        return out


def load_cifar5m(
    root: str | os.PathLike,
    per_class: int | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[ConcatPool, torch.Tensor]:
    """Open CIFAR-5m at `root` -> (images ConcatPool uint8[N, 32, 32, 3], labels int64[N]).

    `per_class` (per-class layout only) keeps the first `per_class` images of every class.
    `limit` keeps at most `limit` images: the first ones for the parts layout (parts past
    the limit need not exist), an equal share of each class for the per-class layout.
    When both layouts are present the parts are used, unless `per_class` is given.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise UserError(
            f"CIFAR-5m: {root} is not a folder (expected part0.npz .. part5.npz or class0.npy .. class9.npy)"
        )
    if limit is not None and limit < 1:
        raise UserError(f"CIFAR-5m: limit={limit}, expected a positive number of images")
    if per_class is not None and per_class < 1:
        raise UserError(f"CIFAR-5m: per_class={per_class}, expected a positive number of images")
    parts = [_find_part(root, i) for i in range(NUM_PARTS)]
    has_classes = os.path.isfile(os.path.join(root, "class0.npy"))
    if has_classes and (per_class is not None or not any(parts)):
        return _load_classes(root, per_class, limit)
    if per_class is not None:
        raise UserError(
            f"CIFAR-5m {root}: per_class applies to the class0.npy .. class9.npy layout, which is not there"
        )
    if not any(parts):
        raise UserError(f"CIFAR-5m {root}: found neither part0.npz .. part5.npz nor class0.npy .. class9.npy")
    cache = os.fspath(cache_dir) if cache_dir is not None else None
    return _load_parts(root, parts, limit, cache)


# --------------------------------------------------------------------------- parts layout


def _find_part(root: str, i: int) -> str | None:
    for name in (f"part{i}.npz", f"cifar5m_part{i}.npz"):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            return path
    return None


def _load_parts(root: str, parts: list[str | None], limit: int | None, cache_dir: str | None):
    images, labels, total = [], [], 0
    for path in parts:
        if limit is not None and total >= limit:
            break
        if path is None:
            missing = [f"part{j}.npz" for j, p in enumerate(parts) if p is None]
            raise UserError(
                f"CIFAR-5m {root}: missing {', '.join(missing)} (expected part0.npz .. part{NUM_PARTS - 1}.npz; "
                f"a smaller `limit` needs only the first parts)"
            )
        x = part_images(path, cache_dir)
        y = _part_labels(path, len(x))
        if limit is not None and total + len(x) > limit:
            x, y = x[: limit - total], y[: limit - total]
        images.append(x)
        labels.append(y)
        total += len(x)
    return ConcatPool(images), torch.from_numpy(np.concatenate(labels))


def part_images(path: str, cache_dir: str | None = None) -> np.ndarray:
    """The `X` array of one part as a read-only memory map uint8[n, 32, 32, 3]."""
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo("X.npy")
            except KeyError:
                names = ", ".join(n.removesuffix(".npy") for n in zf.namelist())
                raise UserError(f"CIFAR-5m {path}: no array X (found {names}); expected X and Y") from None
            if info.compress_type == zipfile.ZIP_STORED:
                return _map_stored(path, info)
            return _extracted(path, zf, info, cache_dir)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        if isinstance(err, OSError) and err.errno == errno.ENOENT:
            raise UserError(f"CIFAR-5m {path}: not found") from None
        raise UserError(f"CIFAR-5m {path}: not a readable .npz ({reason(err)})") from None


def _check_header(path: str, shape, fortran: bool, dtype) -> tuple[int, ...]:
    if dtype != np.uint8 or len(shape) != 4 or tuple(shape[1:]) != IMAGE_SHAPE or fortran:
        order = " (Fortran order)" if fortran else ""
        raise UserError(f"CIFAR-5m {path}: X is {dtype} {tuple(shape)}{order}, expected uint8 [n, 32, 32, 3]")
    return tuple(shape)


def _read_npy_header(fp):
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)
    raise ValueError(f".npy format version {version} is not supported")


def _map_stored(path: str, info: zipfile.ZipInfo) -> np.ndarray:
    """Map an uncompressed zip member in place: find its data after the local header."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise UserError(f"CIFAR-5m {path}: damaged zip entry for X")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        member_start = info.header_offset + 30 + name_len + extra_len
        f.seek(member_start)
        try:
            shape, fortran, dtype = _read_npy_header(f)
        except ValueError as err:
            raise UserError(f"CIFAR-5m {path}: X is not a valid .npy array ({reason(err)})") from None
        shape = _check_header(path, shape, fortran, dtype)
        offset = f.tell()
    payload = int(np.prod(shape, dtype=np.int64))
    if info.file_size != offset - member_start + payload or os.path.getsize(path) < offset + payload:
        raise UserError(
            f"CIFAR-5m {path}: X declares shape {shape} ({payload:,} bytes) but its zip entry holds "
            f"{info.file_size - (offset - member_start):,} bytes (truncated or damaged)"
        )
    if shape[0] == 0:
        return np.zeros(shape, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=shape)


def _extracted(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, cache_dir: str | None) -> np.ndarray:
    """Memory map of a compressed part's X, extracting it once to `<stem>.X.npy`."""
    with zf.open(info) as src:
        try:
            shape, fortran, dtype = _read_npy_header(src)
        except ValueError as err:
            raise UserError(f"CIFAR-5m {path}: X is not a valid .npy array ({reason(err)})") from None
        shape = _check_header(path, shape, fortran, dtype)
        stem = os.path.basename(path).removesuffix(".npz")
        folders = [os.path.dirname(os.path.abspath(path))] + ([cache_dir] if cache_dir else [])
        for folder in folders:  # already extracted?
            cached = _open_cached(os.path.join(folder, f"{stem}.X.npy"), shape)
            if cached is not None:
                return cached
        for folder in folders:
            target = os.path.join(folder, f"{stem}.X.npy")
            try:
                _stream_to_npy(src, target, shape, path)
            except PermissionError:
                continue
            except OSError as err:
                if err.errno in (errno.EROFS, errno.EACCES):
                    continue
                raise
            return np.load(target, mmap_mode="r")
    hint = "" if cache_dir else "; set data.cache_dir to extract them elsewhere"
    raise UserError(f"CIFAR-5m {path}: cannot write the extracted images to {', '.join(folders)} (read-only){hint}")


def _open_cached(target: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if not os.path.isfile(target):
        return None
    try:
        x = np.load(target, mmap_mode="r")
    except (ValueError, OSError):
        return None
    return x if x.dtype == np.uint8 and x.shape == shape else None


def _stream_to_npy(src, target: str, shape: tuple[int, ...], path: str) -> None:
    """Copy the payload of `src` into a new .npy at `target`, 16 MiB at a time, atomically."""
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = f"{target}.{os.getpid()}.part"
    remaining = int(np.prod(shape, dtype=np.int64))
    try:
        with open(tmp, "wb") as out:
            header = {"descr": "|u1", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(out, header)
            while remaining:
                chunk = src.read(min(remaining, _COPY_CHUNK))
                if not chunk:
                    raise UserError(f"CIFAR-5m {path}: truncated: X ends {remaining:,} bytes early")
                out.write(chunk)
                remaining -= len(chunk)
            if src.read(1):
                raise UserError(f"CIFAR-5m {path}: X has more bytes than its shape {shape} needs")
        os.replace(tmp, target)
    except (zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"CIFAR-5m {path}: damaged compressed data in X ({reason(err)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _part_labels(path: str, n: int) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "Y" not in npz.files:
                raise UserError(f"CIFAR-5m {path}: no array Y (found {', '.join(npz.files)}); expected X and Y")
            y = npz["Y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"CIFAR-5m {path}: cannot read Y ({reason(err)})") from None
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"CIFAR-5m {path}: Y is {y.dtype} {y.shape}, expected integer labels [n]")
    if len(y) != n:
        raise UserError(f"CIFAR-5m {path}: {len(y):,} labels in Y but {n:,} images in X")
    if n and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise UserError(f"CIFAR-5m {path}: labels range over [{y.min()}, {y.max()}], expected 0..9")
    return y.astype(np.int64)


# --------------------------------------------------------------------------- per-class layout


def _load_classes(root: str, per_class: int | None, limit: int | None):
    paths = [os.path.join(root, f"class{c}.npy") for c in range(NUM_CLASSES)]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise UserError(f"CIFAR-5m {root}: missing {', '.join(missing)} (expected class0.npy .. class9.npy)")
    arrays = []
    for path in paths:
        try:
            x = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as err:
            raise UserError(f"CIFAR-5m {path}: not a readable .npy array, or truncated ({reason(err)})") from None
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
            raise UserError(f"CIFAR-5m {path}: {x.dtype} {x.shape}, expected uint8 [n, 32, 32, 3]")
        arrays.append(x)
    counts = [per_class if per_class is not None else len(x) for x in arrays]
    if limit is not None:  # an equal share per class, the remainder to the lowest classes
        share = [limit // NUM_CLASSES + (c < limit % NUM_CLASSES) for c in range(NUM_CLASSES)]
        counts = [min(k, s) for k, s in zip(counts, share)]
    for c, (x, k) in enumerate(zip(arrays, counts)):
        if len(x) < k:
            raise UserError(f"CIFAR-5m {paths[c]}: {len(x):,} images, but {k:,} per class were asked for")
    kept = [(x[:k], c) for c, (x, k) in enumerate(zip(arrays, counts)) if k > 0]
    labels = np.concatenate([np.full(len(x), c, dtype=np.int64) for x, c in kept])
    return ConcatPool([x for x, _ in kept]), torch.from_numpy(labels)
