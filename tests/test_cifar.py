"""CIFAR-10 pickle batches and the CIFAR-5m pool, on tiny files fabricated in the published formats."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
import urllib.error

import numpy as np
import pytest
import torch
from fabricate import (
    CIFAR_NAMES,
    cifar_batch,
    npz_member_compression,
    py2_pickle,
    write_cifar5m_classes,
    write_cifar5m_parts,
    write_cifar10,
)

from rolemodels.data import cifar5m, cifar10
from rolemodels.data.cifar5m import ConcatPool, load_cifar5m
from rolemodels.data.cifar10 import load_cifar10, read_batch
from rolemodels.errors import UserError

# --------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("py2", [True, False])
@pytest.mark.parametrize("point_at_folder", [False, True])
def test_load_cifar10_reads_batches_in_order(tmp_path, py2, point_at_folder):
    x_train, y_train, x_test, y_test = write_cifar10(str(tmp_path), per_batch=4, n_test=3, py2=py2)
    root = tmp_path / "cifar-10-batches-py" if point_at_folder else tmp_path
    xt, yt, xs, ys, names = load_cifar10(root)
    assert xt.shape == (20, 32, 32, 3) and xt.dtype == torch.uint8
    assert yt.dtype == ys.dtype == torch.int64 and xs.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(xt.numpy(), x_train)  # data_batch_1 .. 5, in that order
    np.testing.assert_array_equal(yt.numpy(), y_train)
    np.testing.assert_array_equal(xs.numpy(), x_test)
    np.testing.assert_array_equal(ys.numpy(), y_test)
    assert names == CIFAR_NAMES


def test_read_batch_unpacks_channel_planes(tmp_path):
    # b'data' row: 1024 red values (row-major 32x32), then 1024 green, then 1024 blue
    data = np.zeros((2, 3072), dtype=np.uint8)
    data[1, 0] = 11  # red of pixel (0, 0)
    data[1, 1] = 12  # red of pixel (0, 1)
    data[1, 32] = 13  # red of pixel (1, 0)
    data[1, 1024] = 21  # green of pixel (0, 0)
    data[1, 2048 + 32 * 31 + 31] = 39  # blue of pixel (31, 31)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_pickle({b"data": data, b"labels": [0, 9]}))
    x, y = read_batch(str(path))
    assert x.shape == (2, 32, 32, 3) and x.flags.c_contiguous
    assert (x[1, 0, 0, 0], x[1, 0, 1, 0], x[1, 1, 0, 0], x[1, 0, 0, 1], x[1, 31, 31, 2]) == (11, 12, 13, 21, 39)
    assert x.sum() == 11 + 12 + 13 + 21 + 39 and y.tolist() == [0, 9]


def _write_batch(tmp_path, obj) -> str:
    write_cifar10(str(tmp_path), per_batch=3, n_test=2)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(obj if isinstance(obj, bytes) else py2_pickle(obj))
    return str(path)


def _load_error(tmp_path) -> str:
    with pytest.raises(UserError) as err:
        load_cifar10(tmp_path)
    return str(err.value)


def test_load_cifar10_rejects_mismatched_and_malformed_batches(tmp_path):
    x = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    _write_batch(tmp_path, cifar_batch(x, [1, 2]))
    assert "cifar-10-batches-py/data_batch_3: 2 labels but 3 images" in _load_error(tmp_path)
    _write_batch(tmp_path, cifar_batch(x, [1, 2, 10]))
    assert "expected 0..9" in _load_error(tmp_path)
    _write_batch(tmp_path, {b"data": np.zeros((3, 3000), dtype=np.uint8), b"labels": [1, 2, 3]})
    assert "uint8 array of shape (3, 3000), expected uint8 [n, 3072]" in _load_error(tmp_path)
    _write_batch(tmp_path, {b"data": np.zeros((3, 3072), dtype=np.float32), b"labels": [1, 2, 3]})
    assert "float32" in _load_error(tmp_path)
    _write_batch(tmp_path, {b"labels": [1, 2, 3]})
    assert "no b'data' entry" in _load_error(tmp_path)
    _write_batch(tmp_path, [1, 2, 3])
    assert "holds a list, expected a dict" in _load_error(tmp_path)


def test_load_cifar10_rejects_truncated_and_missing_files(tmp_path):
    path = _write_batch(tmp_path, cifar_batch(np.zeros((3, 32, 32, 3), dtype=np.uint8), [1, 2, 3]))
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[: len(raw) // 2])
    assert "data_batch_3: truncated or damaged pickle" in _load_error(tmp_path)
    os.remove(path)
    assert "missing data_batch_3" in _load_error(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "batches.meta")
    assert "missing data_batch_3, batches.meta" in _load_error(tmp_path)
    with pytest.raises(UserError, match="no cifar-10-batches-py/ folder"):
        load_cifar10(tmp_path / "elsewhere")


@pytest.mark.parametrize(
    "payload",
    [
        b"cos\nsystem\n(S'touch {marker}'\ntR.",
        b"cbuiltins\neval\n(S'open(\"{marker}\", \"w\")'\ntR.",
        b"cnumpy\nload\n(S'{marker}'\ntR.",
    ],
)
def test_malicious_pickle_runs_nothing(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = _write_batch(tmp_path, payload.replace(b"{marker}", str(marker).encode()))
    message = _load_error(tmp_path)
    assert "data_batch_3: not a CIFAR-10 pickle (refusing to load" in message
    assert not marker.exists()
    with pytest.raises(UserError):
        read_batch(path)


def test_restricted_unpickler_still_reads_py3_numpy_pickles(tmp_path):
    path = tmp_path / "b"
    array = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    for protocol in (2, 4, 5):
        path.write_bytes(pickle.dumps({"data": array, "labels": np.array([3, 4])}, protocol=protocol))
        x, y = read_batch(str(path))
        assert x.shape == (2, 32, 32, 3) and y.tolist() == [3, 4]


def _tarball(path, members: dict[str, bytes], symlink: str | None = None) -> bytes:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return open(path, "rb").read()


def _serve(monkeypatch, payload: bytes | None):
    def fake_urlopen(url, timeout=None):
        if payload is None:
            raise urllib.error.URLError("Network is unreachable")
        return io.BytesIO(payload)

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)


def test_cifar10_download_verifies_and_extracts(monkeypatch, tmp_path):
    write_cifar10(str(tmp_path / "src"), per_batch=2, n_test=2)
    folder = tmp_path / "src" / "cifar-10-batches-py"
    members = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in folder.iterdir()}
    payload = _tarball(tmp_path / "a.tar.gz", members)
    _serve(monkeypatch, payload)
    with pytest.raises(UserError, match="md5 .* expected c58f30108f718f92721af3b95e74349a"):
        load_cifar10(tmp_path / "dl", download=True)
    monkeypatch.setattr(cifar10, "MD5", cifar10.md5_of(str(tmp_path / "a.tar.gz")))
    x_train, *_ = load_cifar10(tmp_path / "dl", download=True)
    assert x_train.shape == (10, 32, 32, 3)
    assert sorted(os.listdir(tmp_path / "dl")) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


@pytest.mark.parametrize("bad", ["../escape", "/abs/path", "elsewhere/file", "symlink"])
def test_cifar10_download_refuses_unsafe_archives(monkeypatch, tmp_path, bad):
    members = {"cifar-10-batches-py/batches.meta": b"x"}
    if bad != "symlink":
        members[bad] = b"evil"
    payload = _tarball(tmp_path / "a.tar.gz", members, symlink="cifar-10-batches-py/link" if bad == "symlink" else None)
    _serve(monkeypatch, payload)
    monkeypatch.setattr(cifar10, "MD5", cifar10.md5_of(str(tmp_path / "a.tar.gz")))
    with pytest.raises(UserError, match="archive .*(unexpected member|not a regular file)"):
        load_cifar10(tmp_path / "dl", download=True)
    assert not (tmp_path / "escape").exists()
    assert sorted(os.listdir(tmp_path / "dl")) == ["cifar-10-python.tar.gz"]


def test_cifar10_download_without_network(monkeypatch, tmp_path):
    _serve(monkeypatch, None)
    with pytest.raises(UserError, match="download failed .*cs.toronto.edu.*Network is unreachable"):
        load_cifar10(tmp_path, download=True)


REAL_CIFAR = os.environ.get("ROLEMODELS_CIFAR10", "")
SHARED_LABELS = "/work/shared/data/cifar10_train_labels.npy"


@pytest.mark.skipif(not (REAL_CIFAR and os.path.exists(SHARED_LABELS)), reason="set ROLEMODELS_CIFAR10 to the real data")
def test_real_cifar10_order_matches_reference_labels():
    x_train, y_train, x_test, y_test, names = load_cifar10(REAL_CIFAR)
    assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(y_train.numpy(), np.load(SHARED_LABELS))
    assert y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]


# --------------------------------------------------------------------------- CIFAR-5m: ConcatPool


def test_concat_pool_gathers_across_parts():
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (5, 1, 7)]
    whole = np.concatenate(parts)
    pool = ConcatPool(parts)
    assert len(pool) == 13 and pool.shape == (13, 32, 32, 3) and pool.dtype == torch.uint8
    idx = np.array([12, 0, 5, 5, 3, 6, 11, 4, 0])
    for index in (idx, torch.from_numpy(idx), idx.tolist()):
        got = pool[index]
        assert isinstance(got, torch.Tensor) and got.dtype == torch.uint8
        np.testing.assert_array_equal(got.numpy(), whole[idx])
    np.testing.assert_array_equal(pool[5].numpy(), whole[5])
    np.testing.assert_array_equal(pool[-1].numpy(), whole[12])
    np.testing.assert_array_equal(pool[torch.tensor(7)].numpy(), whole[7])
    np.testing.assert_array_equal(pool[3:9].numpy(), whole[3:9])
    assert pool[np.array([], dtype=np.int64)].shape == (0, 32, 32, 3)
    with pytest.raises(IndexError, match="index 13 is out of range for a pool of 13"):
        pool[np.array([0, 13])]
    with pytest.raises(TypeError):
        pool[np.array([0.5])]


# --------------------------------------------------------------------------- CIFAR-5m: parts layout


def test_cifar5m_stored_parts_are_mapped_in_place(tmp_path):
    x, y = write_cifar5m_parts(str(tmp_path), [4, 3, 2, 3, 1, 5])
    assert npz_member_compression(str(tmp_path / "part0.npz")) == 0  # np.savez stores
    pool, labels = load_cifar5m(tmp_path)
    assert len(pool) == 18 and labels.dtype == torch.int64
    np.testing.assert_array_equal(labels.numpy(), y)
    assert all(isinstance(p, np.memmap) for p in pool.parts)
    np.testing.assert_array_equal(pool[np.arange(18)].numpy(), x)
    assert not any(name.endswith(".X.npy") for name in os.listdir(tmp_path))  # nothing extracted


def test_cifar5m_compressed_parts_extract_once(tmp_path):
    x, y = write_cifar5m_parts(str(tmp_path), [3, 2, 4, 1, 1, 2], compressed=True, prefix="cifar5m_part")
    pool, labels = load_cifar5m(tmp_path)
    np.testing.assert_array_equal(pool[np.arange(13)].numpy(), x)
    np.testing.assert_array_equal(labels.numpy(), y)
    cached = tmp_path / "cifar5m_part2.X.npy"
    assert cached.exists() and all(isinstance(p, np.memmap) for p in pool.parts)
    stamp = cached.stat().st_mtime_ns
    pool2, _ = load_cifar5m(tmp_path)
    assert cached.stat().st_mtime_ns == stamp  # reused, not extracted again
    np.testing.assert_array_equal(pool2[np.array([12, 0])].numpy(), x[[12, 0]])


def test_cifar5m_read_only_folder_uses_cache_dir(monkeypatch, tmp_path):
    x, _ = write_cifar5m_parts(str(tmp_path / "data"), [2] * 6, compressed=True)
    real_stream = cifar5m._stream_to_npy

    def read_only_beside(src, target, shape, path):
        if os.path.dirname(target) == str(tmp_path / "data"):
            raise PermissionError(13, "Read-only file system")
        real_stream(src, target, shape, path)

    monkeypatch.setattr(cifar5m, "_stream_to_npy", read_only_beside)
    with pytest.raises(UserError, match=r"cannot write the extracted images .*set data.cache_dir"):
        load_cifar5m(tmp_path / "data")
    pool, _ = load_cifar5m(tmp_path / "data", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(pool[np.arange(12)].numpy(), x)
    assert sorted(os.listdir(tmp_path / "cache")) == [f"part{i}.X.npy" for i in range(6)]


def test_cifar5m_limit_and_missing_parts(tmp_path):
    x, y = write_cifar5m_parts(str(tmp_path), [4, 3])  # only part0 and part1
    pool, labels = load_cifar5m(tmp_path, limit=6)
    assert len(pool) == 6 and len(pool.parts) == 2
    np.testing.assert_array_equal(pool[np.arange(6)].numpy(), x[:6])
    np.testing.assert_array_equal(labels.numpy(), y[:6])
    assert len(load_cifar5m(tmp_path, limit=2)[0].parts) == 1
    with pytest.raises(UserError, match="missing part2.npz, part3.npz, part4.npz, part5.npz"):
        load_cifar5m(tmp_path)
    with pytest.raises(UserError, match="per_class applies to the class0.npy"):
        load_cifar5m(tmp_path, per_class=2)


@pytest.mark.parametrize("compressed", [False, True])
def test_cifar5m_rejects_bad_parts(tmp_path, compressed):
    save = np.savez_compressed if compressed else np.savez
    write_cifar5m_parts(str(tmp_path), [2] * 6, compressed=compressed)

    def error(**arrays) -> str:
        save(tmp_path / "part3.npz", **arrays)
        with pytest.raises(UserError) as err:
            load_cifar5m(tmp_path)
        assert "part3.npz" in str(err.value)
        return str(err.value)

    good = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    assert "X is float32 (2, 32, 32, 3), expected uint8" in error(X=good.astype(np.float32), Y=np.zeros(2))
    assert "X is uint8 (2, 3, 32, 32)" in error(X=good.transpose(0, 3, 1, 2).copy(), Y=np.zeros(2))
    assert "no array X (found images, Y)" in error(images=good, Y=np.zeros(2))
    assert "no array Y" in error(X=good)
    assert "3 labels in Y but 2 images in X" in error(X=good, Y=np.zeros(3, dtype=np.int64))
    assert "expected 0..9" in error(X=good, Y=np.array([0, 10]))
    raw = (tmp_path / "part0.npz").read_bytes()
    (tmp_path / "part3.npz").write_bytes(raw[: len(raw) - 40])
    with pytest.raises(UserError, match="part3.npz: not a readable .npz"):
        load_cifar5m(tmp_path)


def test_cifar5m_truncated_extraction_leaves_no_cache(tmp_path):
    write_cifar5m_parts(str(tmp_path), [2] * 6, compressed=True)

    class Short:
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def read(self, n=-1):
            return self.data.read(n)

    with pytest.raises(UserError, match="truncated: X ends 100 bytes early"):
        cifar5m._stream_to_npy(Short(b"\x00" * (2 * 3072 - 100)), str(tmp_path / "t.npy"), (2, 32, 32, 3), "p")
    assert not any(name.startswith("t.npy") for name in os.listdir(tmp_path))


# --------------------------------------------------------------------------- CIFAR-5m: per-class layout


def test_cifar5m_class_layout(tmp_path):
    counts = [3, 4, 2, 5, 3, 3, 4, 2, 6, 3]
    arrays = write_cifar5m_classes(str(tmp_path), counts)
    pool, labels = load_cifar5m(tmp_path)
    assert len(pool) == sum(counts) and labels.tolist() == sum(([c] * n for c, n in enumerate(counts)), [])
    np.testing.assert_array_equal(pool[np.arange(len(pool))].numpy(), np.concatenate(arrays))
    pool, labels = load_cifar5m(tmp_path, per_class=2)
    assert len(pool) == 20 and torch.bincount(labels).tolist() == [2] * 10
    np.testing.assert_array_equal(pool[np.array([2, 3])].numpy(), arrays[1][:2])
    pool, labels = load_cifar5m(tmp_path, limit=13)  # 2 each for classes 0..2, 1 for the rest
    assert torch.bincount(labels).tolist() == [2, 2, 2] + [1] * 7
    with pytest.raises(UserError, match=r"class2.npy: 2 images, but 3 per class were asked for"):
        load_cifar5m(tmp_path, per_class=3)


def test_cifar5m_class_layout_errors(tmp_path):
    write_cifar5m_classes(str(tmp_path), [2] * 10)
    np.save(tmp_path / "class4.npy", np.zeros((2, 32, 32), dtype=np.uint8))
    with pytest.raises(UserError, match=r"class4.npy: uint8 \(2, 32, 32\), expected uint8 \[n, 32, 32, 3\]"):
        load_cifar5m(tmp_path)
    raw = (tmp_path / "class0.npy").read_bytes()
    (tmp_path / "class4.npy").write_bytes(raw[:-10])
    with pytest.raises(UserError, match="class4.npy: not a readable .npy array, or truncated"):
        load_cifar5m(tmp_path)
    os.remove(tmp_path / "class4.npy")
    os.remove(tmp_path / "class7.npy")
    with pytest.raises(UserError, match="missing class4.npy, class7.npy"):
        load_cifar5m(tmp_path)
    with pytest.raises(UserError, match="found neither"):
        load_cifar5m(tmp_path / "..")
