"""Write tiny data files in the exact published formats, for tests that cannot download.

Each writer returns the arrays it wrote (in the layout the loaders return), so a test
can compare what it reads back.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zipfile

import numpy as np

# --------------------------------------------------------------------------- IDX (Fashion-MNIST)

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: 00 00, type code, ndim, big-endian uint32 sizes, big-endian values."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: str, array: np.ndarray, gz: bool = False) -> str:
    data = idx_bytes(array)
    with open(path, "wb") as f:
        f.write(gzip.compress(data) if gz else data)
    return path


def write_fashion_mnist(root: str, n_train: int = 60, n_test: int = 20, gz: bool = True, seed: int = 0):
    """The four Fashion-MNIST files with random images; returns (x_train, y_train, x_test, y_test)
    with x uint8 [N, 28, 28] and y uint8 [N] as stored."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    y_train = rng.integers(0, 10, n_train).astype(np.uint8)
    x_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    y_test = rng.integers(0, 10, n_test).astype(np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(os.path.join(root, "train-images-idx3-ubyte" + suffix), x_train, gz)
    write_idx(os.path.join(root, "train-labels-idx1-ubyte" + suffix), y_train, gz)
    write_idx(os.path.join(root, "t10k-images-idx3-ubyte" + suffix), x_test, gz)
    write_idx(os.path.join(root, "t10k-labels-idx1-ubyte" + suffix), y_test, gz)
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------- CIFAR-10 pickles

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 `str` (BINSTRING opcodes), as the real CIFAR files do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    """Protocol 2 the way Python 2 + numpy 1.x wrote it: bytes as str, `numpy.core.multiarray`."""
    buf = io.BytesIO()
    _Python2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_batch(x: np.ndarray, y: np.ndarray, label: bytes = b"training batch 1 of 5") -> dict:
    """A batch dict as published: x uint8 [n, 32, 32, 3] -> b'data' uint8 [n, 3072] planar."""
    data = np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), 3072))
    names = [f"image_{i:05d}.png".encode() for i in range(len(x))]
    return {b"batch_label": label, b"labels": [int(v) for v in y], b"data": data, b"filenames": names}


def write_cifar10(root: str, per_batch: int = 6, n_test: int = 5, seed: int = 0, py2: bool = True):
    """`root/cifar-10-batches-py/` with five training batches, a test batch and batches.meta.
    Returns (x_train uint8 [5*per_batch, 32, 32, 3], y_train int64, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    dump = py2_pickle if py2 else (lambda obj: pickle.dumps(obj, protocol=2))
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch)
        xs.append(x)
        ys.append(y)
        with open(os.path.join(folder, f"data_batch_{i}"), "wb") as f:
            f.write(dump(cifar_batch(x, y, f"training batch {i} of 5".encode())))
    x_test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, n_test)
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        f.write(dump(cifar_batch(x_test, y_test, b"testing batch 1 of 1")))
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        f.write(dump(meta))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64), x_test, y_test.astype(np.int64)


# --------------------------------------------------------------------------- CIFAR-5m


def write_cifar5m_parts(root: str, sizes: list[int], compressed: bool = False, seed: int = 0,
                        prefix: str = "part"):
    """`part0.npz` .. with X uint8 [n, 32, 32, 3] and Y uint8 labels (np.savez or
    np.savez_compressed). Returns (X concatenated, Y concatenated as int64)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    xs, ys = [], []
    for i, n in enumerate(sizes):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        save(os.path.join(root, f"{prefix}{i}.npz"), X=x, Y=y)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def write_cifar5m_classes(root: str, counts: list[int], seed: int = 0) -> list[np.ndarray]:
    """`class0.npy` .. `class9.npy`, uint8 [n_c, 32, 32, 3] each; returns the arrays."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    arrays = []
    for c, n in enumerate(counts):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        np.save(os.path.join(root, f"class{c}.npy"), x)
        arrays.append(x)
    return arrays


def npz_member_compression(path: str, member: str = "X.npy") -> int:
    with zipfile.ZipFile(path) as zf:
        return zf.getinfo(member).compress_type


# --------------------------------------------------------------------------- arrays


def arrays_npz(path: str, n_train: int = 12, n_test: int = 6, n_pool: int = 9, shape=(5,),
               num_classes: int = 3, dtype=np.float32, seed: int = 0, **overrides) -> dict:
    """An arrays `.npz` for `load_arrays`; `overrides` replace (value) or drop (None) keys."""
    rng = np.random.default_rng(seed)

    def inputs(n):
        if dtype == np.uint8:
            return rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        return rng.normal(size=(n, *shape)).astype(dtype)

    def labels(n):
        y = rng.integers(0, num_classes, n)
        y[: min(n, num_classes)] = np.arange(min(n, num_classes))  # every class appears
        return y

    arrays = {"x_train": inputs(n_train), "y_train": labels(n_train), "x_test": inputs(n_test),
              "y_test": labels(n_test), "x_pool": inputs(n_pool), "y_pool": labels(n_pool)}
    for key, value in overrides.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return arrays
