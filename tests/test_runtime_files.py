"""Atomic writes: the old file or the whole new one, never half of one; checksums."""
from __future__ import annotations

import errno
import json
import os
import socket

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rolemodels.errors import RunError
from rolemodels.runtime.files import (
    atomic_save_npy,
    atomic_save_torch,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_torch,
    remove_temp_files,
)


def temp_files(folder):
    return sorted(p.name for p in folder.rglob(".tmp-*"))


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))



# ----------------------------------------------------------------------------
# Atomic writes


def test_atomic_writes_round_trip_and_leave_no_temp_files(tmp_path):
    atomic_write_bytes(tmp_path / "a/b/raw.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "note.txt", "héllo\n")
    atomic_write_json(tmp_path / "r.json", {"z": 1, "a": [1, 2]})
    atomic_save_npy(tmp_path / "labels.npy", np.arange(5, dtype=np.uint8))
    atomic_save_torch(tmp_path / "w.pt", {"weight": torch.ones(2, 3)})

    assert (tmp_path / "a/b/raw.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "héllo\n"
    text = (tmp_path / "r.json").read_text()
    assert text.index('"z"') < text.index('"a"')  # given order, not sorted
    assert '\n  "z": 1' in text  # indent 2
    assert json.loads(text) == {"z": 1, "a": [1, 2]}
    labels = np.load(tmp_path / "labels.npy")
    assert labels.dtype == np.uint8 and labels.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(load_torch(tmp_path / "w.pt")["weight"], torch.ones(2, 3))
    assert temp_files(tmp_path) == []


def test_atomic_write_replaces_existing_file_with_normal_permissions(tmp_path):
    path = tmp_path / "x.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_failed_write_keeps_old_content_and_removes_temp(tmp_path, monkeypatch, where):
    path = tmp_path / "teachers" / "teacher3.pt"
    atomic_write_bytes(path, b"old content")
    monkeypatch.setattr(os, where, enospc)
    with pytest.raises(RunError) as info:
        atomic_write_bytes(path, b"new content that does not fit")
    monkeypatch.undo()
    message = str(info.value)
    assert message == f"cannot write {path}: No space left on device"
    assert "\n" not in message
    assert path.read_bytes() == b"old content"
    assert temp_files(tmp_path) == []


def test_disk_full_in_the_middle_of_a_save(tmp_path, monkeypatch):
    path = tmp_path / "pool_labels.npy"
    atomic_save_npy(path, np.zeros(3, dtype=np.uint8))

    def half_save(f, array, allow_pickle):
        f.write(b"\x93NUMPY partial")
        enospc()

    monkeypatch.setattr(np, "save", half_save)
    with pytest.raises(RunError, match="pool_labels.npy: No space left on device"):
        atomic_save_npy(path, np.ones(1000, dtype=np.uint8))
    monkeypatch.undo()
    assert np.load(path).tolist() == [0, 0, 0]
    assert temp_files(tmp_path) == []


def test_unserializable_json_is_a_run_error_and_keeps_old_file(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises(RunError, match="cannot write .*results.json: .*not JSON serializable"):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert temp_files(tmp_path) == []


def test_keyboard_interrupt_passes_through_and_cleans_up(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(tmp_path / "x.txt", "data")
    monkeypatch.undo()
    assert not (tmp_path / "x.txt").exists()
    assert temp_files(tmp_path) == []


def test_parent_that_cannot_be_created_is_a_run_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunError, match="cannot write .*file/sub/x.txt"):
        atomic_write_text(tmp_path / "file" / "sub" / "x.txt", "data")


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=3000))
def test_atomic_write_bytes_round_trips_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "blob"
    atomic_write_bytes(path, data)
    assert path.read_bytes() == data


def test_load_torch_refuses_pickled_objects_and_missing_files(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": socket.socket}, path)  # arbitrary Python object, not weights
    with pytest.raises(RunError, match="cannot read .*evil.pt"):
        load_torch(path)
    with pytest.raises(RunError, match="cannot read .*missing.pt"):
        load_torch(tmp_path / "missing.pt")


def test_remove_temp_files(tmp_path):
    (tmp_path / "teachers").mkdir()
    (tmp_path / "teachers" / ".tmp-teacher0.pt.abcd").write_bytes(b"half")
    (tmp_path / "teacher1.pt").write_bytes(b"done")
    assert remove_temp_files(tmp_path) == 1
    assert temp_files(tmp_path) == [] and (tmp_path / "teacher1.pt").exists()




@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_an_atomic_write_never_replaces_a_device_or_a_folder(tmp_path):
    """Renaming a temporary file onto /dev/null (as root) would replace the device with a file."""
    with pytest.raises(RunError, match="/dev/null: it is not a regular file"):
        atomic_write_bytes("/dev/null", b"x")
    assert not os.path.isfile("/dev/null")
    (tmp_path / "folder").mkdir()
    with pytest.raises(RunError, match="it is a folder"):
        atomic_write_text(tmp_path / "folder", "x")
    assert (tmp_path / "folder").is_dir()
