"""The one label check: values, range, shape and length, with messages that name the input."""
import numpy as np
import pytest
import torch

from rolemodels.errors import UserError
from rolemodels.labels import check_labels, check_num_classes, check_range, label_values


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([1.0, 2.5]), "label 2.5 at index 1 is not an integer"),
        (np.array([1.0, np.nan]), "label at index 1 is nan"),
        (np.array([np.inf]), "label at index 0 is inf"),
        (np.array([True, False]), "booleans"),
        (np.array(["1", "2"]), "<U1 values"),
        (np.zeros((2, 3), dtype=np.int64), r"shape \(2, 3\); expected a 1-D array"),
        (np.array([2**64 - 1], dtype=np.uint64), "too large"),
    ],
)
def test_check_labels_rejects(values, message):
    with pytest.raises(UserError, match=message):
        check_labels(values, "labels file y.npy")


def test_check_labels_accepts_integral_floats():
    out = check_labels(np.array([0.0, 3.0, 2.0]), "labels", num_classes=4)
    assert out.dtype == np.int64 and out.tolist() == [0, 3, 2]


def test_without_floats_only_integer_dtypes_pass():
    with pytest.raises(UserError, match="^y: holds float32 values; expected integer labels$"):
        check_labels(torch.tensor([0.0, 1.0]), "y", floats=False)
    assert check_labels(np.zeros(0), "y", floats=False).dtype == np.int64  # np.asarray([]) is float64
    out = check_labels(torch.tensor([2, 0], dtype=torch.uint8), "y", 3, floats=False)
    assert out.dtype == np.int64 and out.tolist() == [2, 0]


def test_range_messages_name_the_first_bad_label():
    with pytest.raises(UserError, match=r"^y: label 3 at index 2 is outside \[0, 3\) for 3 classes$"):
        check_labels([0, 1, 3, 4], "y", num_classes=3)
    with pytest.raises(UserError, match=r"^y: label -1 at index 1 is negative; expected \[0, 3\)$"):
        check_labels([0, -1], "y", num_classes=3)
    with pytest.raises(UserError, match=r"^y: label -2 at index 0 is negative; expected labels >= 0$"):
        check_labels([-2], "y")


def test_range_of_a_matrix_names_row_and_column():
    teachers = label_values(np.array([[0, 1], [2, 5]], dtype=np.uint8), "teacher_labels", floats=False)
    assert teachers.dtype == np.int64 and teachers.shape == (2, 2)
    with pytest.raises(UserError, match=r"label 5 at index \(1, 1\) is outside \[0, 3\)"):
        check_range(teachers, "teacher_labels", 3)
    with pytest.raises(UserError, match=r"label 0.5 at index \(0, 1\) is not an integer"):
        label_values(np.array([[0.0, 0.5]]), "teacher_labels")


def test_length_message_names_what_it_is_compared_with():
    with pytest.raises(UserError, match="^y: 2 labels, but the dataset has 3 images$"):
        check_labels([0, 1], "y", expected_length=3)
    with pytest.raises(UserError, match="^y: 9 labels, but x has 10 examples$"):
        check_labels(np.zeros(9, int), "y", expected_length=10, length_of="x", unit="examples")


def test_number_of_classes_must_be_a_positive_integer():
    assert check_num_classes(np.int64(4)) == 4
    for bad, message in [(0, "is 0; expected at least 1"), (2.0, "2.0 is not an integer"),
                         (True, "True is not an integer")]:
        with pytest.raises(UserError, match=message):
            check_labels([0], "y", num_classes=bad)
