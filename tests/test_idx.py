"""IDX reader and the Fashion-MNIST loader, on tiny fabricated files (and the real ones if installed)."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.error

import numpy as np
import pytest
import torch
from fabricate import idx_bytes, write_fashion_mnist, write_idx

from rolemodels.data import Dataset, fashion_mnist
from rolemodels.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from rolemodels.data.idx import read_idx
from rolemodels.errors import UserError

# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_every_type(tmp_path, dtype, gz):
    rng = np.random.default_rng(1)
    if dtype in ("f4", "f8"):
        array = rng.normal(size=(3, 4, 2)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(3, 4, 2), endpoint=True).astype(dtype)
    out = read_idx(write_idx(str(tmp_path / "a.idx"), array, gz=gz))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (3, 4, 2)
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 0  # writable, so torch.from_numpy does not warn


def test_read_idx_decodes_big_endian_by_hand(tmp_path):
    # int16 type 0x0B, 1 dimension of size 2: values 0x0102 and -2
    raw = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])
    (tmp_path / "a").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), np.array([258, -2], dtype=np.int16))


def test_read_idx_detects_gzip_by_magic_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "looks-plain-idx1-ubyte"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


def _bad(tmp_path, raw: bytes, *, gz: bool = False) -> str:
    path = tmp_path / "bad-idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(UserError) as err:
        read_idx(path)
    assert str(path) in str(err.value)
    return str(err.value)


def test_read_idx_rejects_bad_headers(tmp_path):
    good = idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    assert "expected 00 00" in _bad(tmp_path, b"\x01" + good[1:])
    assert "unknown type code 0x07" in _bad(tmp_path, good[:2] + b"\x07" + good[3:])
    assert "0 dimensions" in _bad(tmp_path, bytes([0, 0, 8, 0]))
    assert "too short" in _bad(tmp_path, b"\x00\x00")
    assert "header declares 2 dimensions" in _bad(tmp_path, good[:9])


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_wrong_payload_length(tmp_path, gz):
    good = idx_bytes(np.zeros((2, 3), dtype=np.int32))
    message = _bad(tmp_path, good[:-1], gz=gz)
    assert "truncated" in message and "24 payload bytes, found 23" in message
    assert "trailing bytes" in _bad(tmp_path, good + b"\x00", gz=gz)


def test_read_idx_rejects_damaged_gzip_and_missing_file(tmp_path):
    compressed = gzip.compress(idx_bytes(np.zeros((50, 50), dtype=np.uint8)))
    assert "gzip data is damaged or truncated" in _bad(tmp_path, compressed[: len(compressed) // 2])
    with pytest.raises(UserError, match="not found"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_splits_and_layout(tmp_path, gz):
    x_train, y_train, x_test, y_test = write_fashion_mnist(str(tmp_path), n_train=60, n_test=20, gz=gz)
    data = load_fashion_mnist(str(tmp_path), n_train=25, n_pool=30, seed=3)
    assert isinstance(data, Dataset) and data.name == "fashion-mnist"
    assert data.x_train.shape == (25, 28, 28, 1) and data.x_train.dtype == torch.uint8
    assert data.x_pool.shape == (30, 28, 28, 1) and data.x_test.shape == (20, 28, 28, 1)
    assert data.y_train.dtype == data.y_test.dtype == data.y_pool.dtype == torch.int64
    assert data.num_classes == 10 and data.class_names == CLASS_NAMES
    assert data.input_shape == (28, 28, 1)
    np.testing.assert_array_equal(data.x_test[..., 0].numpy(), x_test)
    np.testing.assert_array_equal(data.y_test.numpy(), y_test)
    # each labelled / pool image is a distinct training image, with its own label
    flat = x_train.reshape(60, -1)
    lookup = {row.tobytes(): i for i, row in enumerate(flat)}
    train_ids = [lookup[r.tobytes()] for r in data.x_train.reshape(25, -1).numpy()]
    pool_ids = [lookup[r.tobytes()] for r in data.x_pool.reshape(30, -1).numpy()]
    assert len(set(train_ids) | set(pool_ids)) == 55
    np.testing.assert_array_equal(data.y_train.numpy(), y_train[train_ids])
    np.testing.assert_array_equal(data.y_pool.numpy(), y_train[pool_ids])
    # the split is the seeded permutation, and depends on the seed
    order = np.random.default_rng(3).permutation(60)
    assert train_ids == list(order[:25]) and pool_ids == list(order[25:55])
    other = load_fashion_mnist(str(tmp_path), n_train=25, n_pool=30, seed=4)
    assert not torch.equal(other.y_train, data.y_train) or not torch.equal(other.x_train, data.x_train)


def test_load_fashion_mnist_rejects_bad_sizes_and_files(tmp_path):
    write_fashion_mnist(str(tmp_path), n_train=40, n_test=10)
    with pytest.raises(UserError, match=r"n_train \+ n_pool = 41 but train-images-idx3-ubyte.gz has only 40"):
        load_fashion_mnist(str(tmp_path), n_train=20, n_pool=21)
    with pytest.raises(UserError, match="expected both >= 1"):
        load_fashion_mnist(str(tmp_path), n_train=0, n_pool=10)
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.zeros(9, dtype=np.uint8), gz=True)
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz has 9 labels but t10k-images-idx3-ubyte.gz has 10"):
        load_fashion_mnist(str(tmp_path), n_train=10, n_pool=10)
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.full(10, 10, dtype=np.uint8), gz=True)
    with pytest.raises(UserError, match=r"labels range over \[10, 10\], expected 0..9"):
        load_fashion_mnist(str(tmp_path), n_train=10, n_pool=10)
    write_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz"), np.zeros((10, 32, 32), dtype=np.uint8), gz=True)
    with pytest.raises(UserError, match=r"expected uint8 \[N, 28, 28\]"):
        load_fashion_mnist(str(tmp_path), n_train=10, n_pool=10)
    os.remove(tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(UserError, match=r"missing t10k-images-idx3-ubyte\(.gz\)"):
        load_fashion_mnist(str(tmp_path), n_train=10, n_pool=10)


def test_load_fashion_mnist_without_root(monkeypatch, tmp_path):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", str(tmp_path / "absent"))
    with pytest.raises(UserError, match="no root given"):
        load_fashion_mnist(None)
    write_fashion_mnist(str(tmp_path / "present"), n_train=12, n_test=4)
    monkeypatch.setattr(fashion_mnist, "DEFAULT_ROOT", str(tmp_path / "present"))
    assert len(load_fashion_mnist(None, n_train=5, n_pool=7).x_pool) == 7


def _serve(monkeypatch, files: dict[str, bytes] | None):
    """Replace urlopen: serve `files` by name, or fail as without network when None."""
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        if files is None:
            raise urllib.error.URLError("Temporary failure in name resolution")
        return io.BytesIO(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    return calls


def test_fashion_mnist_download_only_when_asked_and_fails_clearly(monkeypatch, tmp_path):
    calls = _serve(monkeypatch, None)
    with pytest.raises(UserError, match="missing"):
        load_fashion_mnist(str(tmp_path), n_train=5, n_pool=5)
    assert calls == []  # never downloads unless asked
    with pytest.raises(UserError, match="download failed.*fashion-mnist.s3-website.*Temporary failure"):
        load_fashion_mnist(str(tmp_path), n_train=5, n_pool=5, download=True)
    assert len(calls) == 2  # both mirrors tried
    assert not any(name.endswith(".part") for name in os.listdir(tmp_path))


def test_fashion_mnist_download_checks_content(monkeypatch, tmp_path):
    source = tmp_path / "source"
    write_fashion_mnist(str(source), n_train=12, n_test=4)
    files = {p.name: p.read_bytes() for p in source.iterdir()}
    _serve(monkeypatch, files)
    with pytest.raises(UserError, match="content md5"):  # fabricated files are not the real ones
        load_fashion_mnist(str(tmp_path / "dl"), n_train=5, n_pool=5, download=True)
    content_md5 = {name[:-3]: hashlib.md5(gzip.decompress(raw)).hexdigest() for name, raw in files.items()}
    monkeypatch.setattr(fashion_mnist, "CONTENT_MD5", content_md5)
    data = load_fashion_mnist(str(tmp_path / "dl"), n_train=5, n_pool=5, download=True)
    assert data.x_train.shape == (5, 28, 28, 1)


REAL_ROOT = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(REAL_ROOT), reason="real Fashion-MNIST (Debian dataset-fashion-mnist) not installed")
def test_real_fashion_mnist_files():
    data = load_fashion_mnist(REAL_ROOT)
    assert data.x_train.shape == (10000, 28, 28, 1) and data.x_pool.shape == (50000, 28, 28, 1)
    assert data.x_test.shape == (10000, 28, 28, 1)
    assert torch.bincount(data.y_test, minlength=10).tolist() == [1000] * 10
    assert torch.bincount(torch.cat([data.y_train, data.y_pool]), minlength=10).tolist() == [6000] * 10
    assert 0 < data.x_test.float().mean() < 255
