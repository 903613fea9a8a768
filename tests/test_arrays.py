"""`load_arrays`: bring-your-own data from one .npz."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fabricate import arrays_npz

from rolemodels.data import Dataset
from rolemodels.data.arrays import load_arrays
from rolemodels.errors import UserError


def test_load_arrays_float_features(tmp_path):
    path = tmp_path / "blobs.npz"
    arrays = arrays_npz(path, shape=(5,), num_classes=3, dtype=np.float64)
    data = load_arrays(path)
    assert isinstance(data, Dataset) and data.name == "blobs"
    assert data.x_train.dtype == torch.float32 and data.x_train.shape == (12, 5)
    assert data.x_pool.shape == (9, 5) and data.x_test.shape == (6, 5)
    assert data.y_train.dtype == data.y_test.dtype == data.y_pool.dtype == torch.int64
    assert data.num_classes == 3 and data.class_names == ["0", "1", "2"]
    np.testing.assert_allclose(data.x_test.numpy(), arrays["x_test"].astype(np.float32))
    np.testing.assert_array_equal(data.y_pool.numpy(), arrays["y_pool"])


def test_load_arrays_uint8_images_pool_without_labels_and_names(tmp_path):
    path = tmp_path / "imgs.npz"
    names = np.array(["cat", "dog", "emu", "fox"])
    arrays_npz(path, shape=(8, 8, 3), num_classes=4, dtype=np.uint8, y_pool=None, class_names=names,
               y_train=np.array([0, 1, 2, 1, 0, 1, 2, 0, 1, 2, 0, 1], dtype=np.uint8))
    data = load_arrays(path, num_classes=4)
    assert data.x_train.dtype == torch.uint8 and data.input_shape == (8, 8, 3)
    assert data.y_pool is None and data.num_classes == 4
    assert data.class_names == ["cat", "dog", "emu", "fox"]
    assert data.y_train.dtype == torch.int64


def test_num_classes_comes_from_train_and_test(tmp_path):
    path = tmp_path / "a.npz"
    arrays_npz(path, num_classes=3, y_test=np.array([0, 1, 2, 3, 3, 0]))
    assert load_arrays(path).num_classes == 4
    with pytest.raises(UserError, match=r"y_test has label 3, expected labels in \[0, 3\)"):
        load_arrays(path, num_classes=3)


def _error(tmp_path, **overrides) -> str:
    path = tmp_path / "bad.npz"
    arrays_npz(path, **overrides)
    with pytest.raises(UserError) as err:
        load_arrays(path)
    assert str(path) in str(err.value)
    return str(err.value)


def test_missing_keys_are_listed(tmp_path):
    message = _error(tmp_path, y_train=None, x_test=None)
    assert "missing y_train, x_test (found x_pool, x_train, y_pool, y_test)" in message


def test_missing_pool_explains_why_it_is_needed(tmp_path):
    message = _error(tmp_path, x_pool=None, y_pool=None)
    assert "missing x_pool" in message and "distillation needs an unlabelled pool" in message


def test_invalid_arrays_are_rejected(tmp_path):
    assert "9 labels in y_train but 12 examples in x_train" in _error(tmp_path, y_train=np.zeros(9, dtype=int))
    assert "3 labels in y_pool but 9 examples in x_pool" in _error(tmp_path, y_pool=np.zeros(3, dtype=int))
    assert "y_test is float64 (6,), expected integer labels" in _error(tmp_path, y_test=np.zeros(6))
    assert "y_train has label -1, expected labels >= 0" in _error(tmp_path, y_train=np.full(12, -1))
    assert "x_test is empty" in _error(tmp_path, x_test=np.zeros((0, 5), np.float32), y_test=np.zeros(0, int))
    assert "x_pool has examples of shape (4,), but x_train's are (5,)" in _error(
        tmp_path, x_pool=np.zeros((9, 4), np.float32))
    assert "x_train is int32, expected uint8 images or float features" in _error(
        tmp_path, x_train=np.zeros((12, 5), np.int32))
    assert "x_pool is uint8 but x_train is float32" in _error(tmp_path, x_pool=np.zeros((9, 5), np.uint8))
    assert "class_names is" in _error(tmp_path, class_names=np.array(["a", "b"]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_rejected(tmp_path, bad):
    x = np.zeros((6, 5), dtype=np.float32)
    x[4, 2] = bad
    assert "x_test has 1 NaN or infinite values (first at example 4)" in _error(tmp_path, x_test=x)


def test_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_arrays(tmp_path / "absent.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(UserError, match="a single array, expected an .npz"):
        load_arrays(tmp_path / "single.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(UserError, match="not a readable .npz"):
        load_arrays(tmp_path / "junk.npz")
