"""Reading and writing label files: formats, detection, validation, atomic writes."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolemodels.data.labelfiles import LabelFileWarning, detect_format, read_labels, write_labels
from rolemodels.errors import RunError, UserError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LABELS = np.array([6, 9, 9, 4, 1, 1, 2, 7, 8, 3], dtype=np.int64)


# ----------------------------------------------------------------------------- reading


def test_read_npy_any_integer_dtype(tmp_path):
    np.save(tmp_path / "a.npy", LABELS.astype(np.uint8))
    out = read_labels(tmp_path / "a.npy")
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, LABELS)


def test_read_raw_int64(tmp_path):
    LABELS.astype("<i8").tofile(tmp_path / "a.int64")
    LABELS.astype("<i8").tofile(tmp_path / "a.bin")
    np.testing.assert_array_equal(read_labels(tmp_path / "a.int64"), LABELS)
    np.testing.assert_array_equal(read_labels(tmp_path / "a.bin"), LABELS)


def test_raw_file_named_npy_is_read_as_raw_with_warning(tmp_path):
    # The paper's released noisy_labels.npy is raw int64 bytes despite its name.
    LABELS.astype("<i8").tofile(tmp_path / "noisy_labels.npy")
    with pytest.warns(LabelFileWarning, match="no .npy header"):
        out = read_labels(tmp_path / "noisy_labels.npy")
    np.testing.assert_array_equal(out, LABELS)


def test_raw_size_not_multiple_of_8(tmp_path):
    (tmp_path / "a.int64").write_bytes(LABELS.astype("<i8").tobytes() + b"\x00\x01\x02")
    with pytest.raises(UserError, match=r"a.int64: 83 bytes is not a multiple of 8"):
        read_labels(tmp_path / "a.int64")


def test_read_text_and_csv(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(map(str, LABELS)) + "\n\n")
    (tmp_path / "a.csv").write_text("label\n" + "\n".join(f" {v}.0" for v in LABELS))
    np.testing.assert_array_equal(read_labels(tmp_path / "a.txt"), LABELS)
    np.testing.assert_array_equal(read_labels(tmp_path / "a.csv"), LABELS)


def test_text_with_junk_names_the_line(tmp_path):
    (tmp_path / "a.txt").write_text("1\n2\ncat\n3\n")
    with pytest.raises(UserError, match=r"a.txt: line 3 is 'cat'"):
        read_labels(tmp_path / "a.txt")
    (tmp_path / "nan.txt").write_text("nan\n1\n")  # "nan" is a bad label, not a header line
    with pytest.raises(UserError, match=r"nan.txt: label at index 0 is nan"):
        read_labels(tmp_path / "nan.txt")
    (tmp_path / "b.csv").write_text("0,6\n1,9\n")
    with pytest.raises(UserError, match=r"b.csv: line 1 is '0,6'; expected one integer label per line"):
        read_labels(tmp_path / "b.csv")


def _save_pt(path, obj):
    import torch

    torch.save(obj, path)


def test_read_pt_dict_by_key(tmp_path):
    import torch

    arrays = {
        "clean_label": LABELS,
        "worse_label": torch.tensor((LABELS + 1) % 10),
        "random_label1": LABELS[::-1].copy(),
    }
    _save_pt(tmp_path / "CIFAR-10_human.pt", arrays)
    np.testing.assert_array_equal(read_labels(tmp_path / "CIFAR-10_human.pt", key="clean_label"), LABELS)
    np.testing.assert_array_equal(read_labels(tmp_path / "CIFAR-10_human.pt", key="worse_label"), (LABELS + 1) % 10)
    with pytest.raises(UserError, match="no key 'aggre_label'; available keys: clean_label, worse_label, random_"):
        read_labels(tmp_path / "CIFAR-10_human.pt", key="aggre_label")
    with pytest.raises(UserError, match=r"holds several arrays \(clean_label, worse_label, random_label1\)"):
        read_labels(tmp_path / "CIFAR-10_human.pt")


def test_read_pt_single_tensor_and_pth(tmp_path):
    import torch

    _save_pt(tmp_path / "a.pth", torch.tensor(LABELS))
    np.testing.assert_array_equal(read_labels(tmp_path / "a.pth"), LABELS)
    with pytest.raises(UserError, match="not a dict; key 'x' does not apply"):
        read_labels(tmp_path / "a.pth", key="x")


def test_read_pt_saved_with_numpy_1_names(tmp_path):
    # CIFAR-N's files were saved with numpy 1.x, whose pickles say numpy.core.multiarray._reconstruct.
    buffer = io.BytesIO()
    _save_pt(buffer, {"clean_label": LABELS, "aggre_label": LABELS})
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(tmp_path / "old.pt", "w", zipfile.ZIP_STORED) as out:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
            out.writestr(name, data)
    np.testing.assert_array_equal(read_labels(tmp_path / "old.pt", key="aggre_label"), LABELS)


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ("unpickling ran code",))


def test_read_pt_refuses_arbitrary_objects(tmp_path, capsys):
    _save_pt(tmp_path / "evil.pt", {"labels": _RunsCodeWhenUnpickled()})
    with pytest.raises(UserError, match=r"evil.pt: cannot be read as tensors or arrays: it holds pickled Python "
                                        r"objects, which are refused") as err:
        read_labels(tmp_path / "evil.pt", key="labels")
    assert "unpickling ran code" not in capsys.readouterr().out
    assert "weights_only" not in str(err.value)  # no library advice to load it unsafely


def test_read_npz_by_key(tmp_path):
    np.savez(tmp_path / "a.npz", clean=LABELS, noisy=LABELS[::-1])
    np.testing.assert_array_equal(read_labels(tmp_path / "a.npz", key="noisy"), LABELS[::-1])
    with pytest.raises(UserError, match="available keys: clean, noisy"):
        read_labels(tmp_path / "a.npz", key="other")


def test_content_beats_extension_and_fmt_overrides(tmp_path):
    np.save(tmp_path / "a.npy", LABELS)
    (tmp_path / "a.npy").rename(tmp_path / "labels.dat")
    assert detect_format(tmp_path / "labels.dat") == "npy"
    np.testing.assert_array_equal(read_labels(tmp_path / "labels.dat"), LABELS)
    LABELS.astype("<i8").tofile(tmp_path / "labels.weird")
    with pytest.raises(UserError, match=r"labels.weird: unknown format .weird"):
        read_labels(tmp_path / "labels.weird")
    np.testing.assert_array_equal(read_labels(tmp_path / "labels.weird", fmt="int64"), LABELS)
    with pytest.raises(UserError, match="unknown format 'parquet'"):
        read_labels(tmp_path / "labels.weird", fmt="parquet")


def test_key_on_plain_array_file_is_rejected(tmp_path):
    np.save(tmp_path / "a.npy", LABELS)
    with pytest.raises(UserError, match="a key .'clean_label'. applies only to"):
        read_labels(tmp_path / "a.npy", key="clean_label")


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(UserError, match=r"labels file .*nothere.npy: no such file"):
        read_labels(tmp_path / "nothere.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(UserError, match="empty.npy: is empty"):
        read_labels(tmp_path / "empty.npy")
    with pytest.raises(UserError, match="not a regular file"):
        read_labels(tmp_path)


# ----------------------------------------------------------------------------- checking


def test_length_mismatch_message(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(1001, dtype=np.int64))
    with pytest.raises(UserError, match=r"^labels file .*x.npy: 1,001 labels, but the dataset has 1,000 images$"):
        read_labels(tmp_path / "x.npy", expected_length=1000)


def test_range_check(tmp_path):
    np.save(tmp_path / "x.npy", LABELS)
    with pytest.raises(UserError, match=r"x.npy: label 9 at index 1 is outside \[0, 9\)"):
        read_labels(tmp_path / "x.npy", num_classes=9)
    np.save(tmp_path / "neg.npy", np.array([0, -1]))
    with pytest.raises(UserError, match="label -1 at index 1 is negative"):
        read_labels(tmp_path / "neg.npy")


@pytest.mark.skipif(not (DATA / "cifar10_noisy_labels_authors.int64").exists(), reason="shared data absent")
def test_reads_authors_raw_file():
    labels = read_labels(DATA / "cifar10_noisy_labels_authors.int64", num_classes=10, expected_length=50_000)
    np.testing.assert_array_equal(labels, np.fromfile(DATA / "cifar10_noisy_labels_authors.int64", dtype="<i8"))
    clean = read_labels(DATA / "cifar10_train_labels.npy", num_classes=10, expected_length=50_000)
    assert clean[:10].tolist() == LABELS.tolist()  # the README's first ten


# ----------------------------------------------------------------------------- writing


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 2**40), min_size=1, max_size=50),
    st.sampled_from(["a.npy", "a.txt", "a.csv", "a.int64", "a.bin", "noext"]),
)
def test_write_then_read_round_trips(tmp_path_factory, values, name):
    path = tmp_path_factory.mktemp("w") / name
    labels = np.array(values, dtype=np.int64)
    write_labels(path, labels)
    fmt = "npy" if name == "noext" else None
    np.testing.assert_array_equal(read_labels(path, fmt=fmt), labels)
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary left behind


def test_written_raw_matches_np_fromfile(tmp_path):
    write_labels(tmp_path / "n.int64", LABELS)
    assert (tmp_path / "n.int64").stat().st_size == 8 * LABELS.size
    np.testing.assert_array_equal(np.fromfile(tmp_path / "n.int64", dtype="<i8"), LABELS)


def test_write_errors_leave_nothing(tmp_path):
    with pytest.raises(UserError, match=r"cannot write labels as .pt"):
        write_labels(tmp_path / "n.pt", LABELS)
    with pytest.raises(UserError, match="label 0.5 at index 0 is not an integer"):
        write_labels(tmp_path / "n.npy", np.array([0.5]))
    with pytest.raises(UserError, match="folder .*missing does not exist"):
        write_labels(tmp_path / "missing" / "n.npy", LABELS)
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_keeps_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "n.npy"
    write_labels(path, LABELS)
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(RunError, match=r"cannot write .*n\.npy: disk full"):  # one line naming the file
        write_labels(path, LABELS[::-1])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["n.npy"]
