"""The manifest: a finished file is reused only while its size and checksum match."""
from __future__ import annotations

import errno
import hashlib
import json
import os

import numpy as np
import pytest
import torch

from rolemodels.errors import RunError
from rolemodels.runtime import files
from rolemodels.runtime.files import atomic_save_npy, atomic_save_torch, atomic_write_bytes
from rolemodels.runtime.manifest import FORMAT, FORMAT_KEY, Manifest, is_run_folder


def records(run_dir) -> dict:
    """manifest.json's records, checking it carries the format marker that tells our folders apart."""
    data = json.loads((run_dir / "manifest.json").read_text())
    assert data.pop(FORMAT_KEY) == FORMAT
    return data


def temp_files(folder):
    return sorted(p.name for p in folder.rglob(".tmp-*"))


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))



# ----------------------------------------------------------------------------
# Manifest


def make_manifest(run_dir):
    notices = []
    return Manifest(run_dir, notice=notices.append), notices


def test_manifest_records_and_validates_across_instances(tmp_path):
    manifest, notices = make_manifest(tmp_path)
    path = tmp_path / "teachers" / "teacher0.pt"
    atomic_save_torch(path, {"w": torch.arange(10.0)})
    entry = manifest.record(path)
    assert entry == {"size": path.stat().st_size,
                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    on_disk = records(tmp_path)
    assert on_disk == {"teachers/teacher0.pt": entry}

    again, notices = make_manifest(tmp_path)
    assert path in again
    assert again.is_valid(path)
    assert notices == [] and path.exists()


def test_manifest_streams_large_files(tmp_path):
    data = os.urandom(files.HASH_BLOCK * 2 + 12345)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert files.file_sha256(path) == (len(data), hashlib.sha256(data).hexdigest())


def test_manifest_detects_truncation(tmp_path):
    manifest, notices = make_manifest(tmp_path)
    path = tmp_path / "teachers" / "teacher3.pt"
    atomic_write_bytes(path, bytes(1_428_992))
    manifest.record(path)
    with open(path, "r+b") as f:
        f.truncate(1_204)

    assert not manifest.is_valid(path)
    assert notices == ["rolemodels: teachers/teacher3.pt is corrupt or incomplete "
                       "(size 1,204 != 1,428,992); recomputing it"]
    assert not path.exists()
    assert path not in manifest
    assert records(tmp_path) == {}


def test_manifest_detects_a_flipped_byte(tmp_path):
    manifest, notices = make_manifest(tmp_path)
    path = tmp_path / "pool_labels.npy"
    atomic_save_npy(path, np.arange(100, dtype=np.uint8))
    manifest.record(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))

    assert not manifest.is_valid(path)
    assert len(notices) == 1
    assert notices[0].startswith("rolemodels: pool_labels.npy is corrupt or incomplete (checksum ")
    assert not path.exists() and path not in Manifest(tmp_path, notice=notices.append)


def test_manifest_file_without_record_is_unfinished(tmp_path):
    manifest, notices = make_manifest(tmp_path)
    path = tmp_path / "student.pt"
    path.write_bytes(b"written but never recorded")
    assert not manifest.is_valid(path)
    assert notices == ["rolemodels: student.pt is corrupt or incomplete "
                       "(has no record in manifest.json); recomputing it"]
    assert not path.exists()


def test_manifest_missing_file_is_quietly_invalid_and_forgotten(tmp_path):
    manifest, notices = make_manifest(tmp_path)
    path = tmp_path / "a.bin"
    atomic_write_bytes(path, b"abc")
    manifest.record(path)
    path.unlink()
    assert not manifest.is_valid(path)
    assert notices == [] and path not in manifest


def test_manifest_forget(tmp_path):
    manifest, _ = make_manifest(tmp_path)
    path = tmp_path / "a.bin"
    atomic_write_bytes(path, b"abc")
    manifest.record(path)
    manifest.forget(path)
    manifest.forget(path)  # twice is fine
    assert path.exists() and path not in Manifest(tmp_path)


def test_rank_manifests_are_folded_into_the_main_one(tmp_path):
    files = {name: tmp_path / name for name in ("a.pt", "b.pt", "c.pt")}
    for name, path in files.items():
        atomic_write_bytes(path, name.encode())
    main = Manifest(tmp_path)
    main.record(files["a.pt"])
    main.record(files["c.pt"])
    other = Manifest(tmp_path, rank=1)  # rank 1 records b and forgets c (it retrained it, say)
    other.record(files["b.pt"])
    other.forget(files["c.pt"])
    assert "b.pt" not in records(tmp_path)  # rank 1 never writes it
    assert (tmp_path / "manifest.rank1.json").exists()
    restarted = Manifest(tmp_path)  # rank 0 after a restart folds rank 1's records in
    assert restarted.is_valid(files["a.pt"]) and restarted.is_valid(files["b.pt"])
    assert files["c.pt"] not in restarted
    assert not (tmp_path / "manifest.rank1.json").exists()
    assert set(records(tmp_path)) == {"a.pt", "b.pt"}


def test_manifest_unreadable_file_means_nothing_is_trusted(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    manifest, notices = make_manifest(tmp_path)
    assert manifest.entries == {}
    assert len(notices) == 1 and "manifest.json is unreadable" in notices[0]


def test_manifest_refuses_paths_outside_the_run(tmp_path):
    manifest, _ = make_manifest(tmp_path / "run")
    with pytest.raises(RunError, match="not a file inside the run folder"):
        manifest.record(tmp_path / "elsewhere.pt")




def test_a_folder_is_ours_only_with_our_manifest(tmp_path):
    assert not is_run_folder(tmp_path)  # no manifest at all
    (tmp_path / "manifest.json").write_text("{}")
    assert not is_run_folder(tmp_path)  # somebody's empty JSON
    (tmp_path / "manifest.json").write_text('{"thesis.tex": "mine"}')
    assert not is_run_folder(tmp_path)
    (tmp_path / "manifest.json").write_text('{"a.pt": {"size": 3, "sha256": "ab"}}')
    assert is_run_folder(tmp_path)  # a folder made before the marker: records only
    (tmp_path / "manifest.json").unlink()
    Manifest(tmp_path).mark()
    assert is_run_folder(tmp_path) and records(tmp_path) == {}
