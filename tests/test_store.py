"""The run folder: atomic writes, manifest, lock, configuration check, writable folder."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from rolemodels import store
from rolemodels.errors import RunError, UserError
from rolemodels.store import (Manifest, RunLock, atomic_save_npy, atomic_save_torch,
                              atomic_write_bytes, atomic_write_json, atomic_write_text,
                              check_config, ensure_writable, load_torch, remove_temp_files)


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
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == {"teachers/teacher0.pt": entry}

    again, notices = make_manifest(tmp_path)
    assert path in again
    assert again.is_valid(path)
    assert notices == [] and path.exists()


def test_manifest_streams_large_files(tmp_path):
    data = os.urandom(store.HASH_BLOCK * 2 + 12345)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert store.file_sha256(path) == (len(data), hashlib.sha256(data).hexdigest())


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
    assert json.loads((tmp_path / "manifest.json").read_text()) == {}


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
    assert "b.pt" not in json.loads((tmp_path / "manifest.json").read_text())  # rank 1 never writes it
    assert (tmp_path / "manifest.rank1.json").exists()
    restarted = Manifest(tmp_path)  # rank 0 after a restart folds rank 1's records in
    assert restarted.is_valid(files["a.pt"]) and restarted.is_valid(files["b.pt"])
    assert files["c.pt"] not in restarted
    assert not (tmp_path / "manifest.rank1.json").exists()
    assert set(json.loads((tmp_path / "manifest.json").read_text())) == {"a.pt", "b.pt"}


def test_manifest_unreadable_file_means_nothing_is_trusted(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    manifest, notices = make_manifest(tmp_path)
    assert manifest.entries == {}
    assert len(notices) == 1 and "manifest.json is unreadable" in notices[0]


def test_manifest_refuses_paths_outside_the_run(tmp_path):
    manifest, _ = make_manifest(tmp_path / "run")
    with pytest.raises(RunError, match="not a file inside the run folder"):
        manifest.record(tmp_path / "elsewhere.pt")


# ----------------------------------------------------------------------------
# RunLock


def write_lock(run_dir, pid, host=None, started="2024-01-01T00:00:00+00:00"):
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": host or socket.gethostname(), "started": started}
    (run_dir / ".lock").write_text(json.dumps(info))


def test_lock_is_written_and_released(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir) as lock:
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert "started" in info
    assert not (run_dir / ".lock").exists()


def test_lock_is_released_after_an_exception(tmp_path):
    with pytest.raises(ValueError):
        with RunLock(tmp_path):
            raise ValueError("boom")
    assert not (tmp_path / ".lock").exists()


def test_second_lock_in_the_same_process_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(UserError) as info:
            with RunLock(tmp_path):
                pass
        assert (tmp_path / ".lock").exists()  # the refused one did not remove ours
    message = str(info.value)
    assert message.startswith(f"run folder {tmp_path} is in use by process {os.getpid()} "
                              f"on {socket.gethostname()} since ")
    assert message.endswith("; wait for it or use another --out")


def test_lock_of_a_live_process_is_refused(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_lock(tmp_path, sleeper.pid)
        with pytest.raises(UserError, match=f"in use by process {sleeper.pid} on "):
            RunLock(tmp_path).acquire()
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid no longer exists
    write_lock(tmp_path, dead.pid)
    notices = []
    with RunLock(tmp_path, notice=notices.append):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert notices == [f"rolemodels: taking over stale lock of dead process {dead.pid}"]
    assert temp_files(tmp_path) == []


def test_unreadable_lock_is_taken_over_after_a_grace_period(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "LOCK_WRITE_GRACE_S", 0.2)
    (tmp_path / ".lock").write_text("")  # as if its owner died between create and write
    notices = []
    with RunLock(tmp_path, notice=notices.append):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert notices == [f"rolemodels: taking over unreadable lock {tmp_path / '.lock'}"]


def test_lock_of_another_host_is_refused_unless_old_enough(tmp_path):
    write_lock(tmp_path, 12345, host="other-machine", started="2020-01-01T00:00:00+00:00")
    with pytest.raises(UserError, match="in use by process 12345 on other-machine since 2020"):
        RunLock(tmp_path).acquire()
    with pytest.raises(UserError):
        RunLock(tmp_path, stale_after=10 * 365 * 86400.0).acquire()
    notices = []
    with RunLock(tmp_path, stale_after=3600, notice=notices.append):
        assert json.loads((tmp_path / ".lock").read_text())["host"] == socket.gethostname()
    assert len(notices) == 1
    assert "taking over stale lock of process 12345 on other-machine" in notices[0]


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    with RunLock(tmp_path):
        write_lock(tmp_path, 999_999, host="other-machine")  # someone took it over
    assert json.loads((tmp_path / ".lock").read_text())["host"] == "other-machine"


def test_remove_stale_puts_back_a_lock_that_changed(tmp_path):
    write_lock(tmp_path, 1, host="h")
    stale_text = (tmp_path / ".lock").read_text()
    write_lock(tmp_path, 2, host="h")  # a fresh lock took its place meanwhile
    fresh_text = (tmp_path / ".lock").read_text()
    RunLock(tmp_path)._remove_stale(stale_text)
    assert (tmp_path / ".lock").read_text() == fresh_text
    assert temp_files(tmp_path) == []


# ----------------------------------------------------------------------------
# check_config


CONFIG = {"teachers": {"epochs": 30, "k": 5}, "noise": {"rate": 0.2}, "run": {"quiet": False}}


def changed(**sections):
    new = json.loads(json.dumps(CONFIG))
    for section, values in sections.items():
        new.setdefault(section, {}).update(values)
    return new


def test_check_config_writes_then_accepts_the_same_config(tmp_path):
    check_config(tmp_path, CONFIG, force=False)
    assert json.loads((tmp_path / "config.json").read_text()) == CONFIG
    check_config(tmp_path, json.loads(json.dumps(CONFIG)), force=False)


def test_check_config_lists_differing_keys(tmp_path):
    run_dir = tmp_path / "runs" / "x"
    check_config(run_dir, CONFIG, force=False)
    new = changed(teachers={"epochs": 40}, noise={"rate": 0.3})
    with pytest.raises(UserError) as info:
        check_config(run_dir, new, force=False)
    assert str(info.value) == (
        f"run folder {run_dir} was made with a different configuration: "
        "teachers.epochs 30 -> 40, noise.rate 0.2 -> 0.3; "
        "use --force to start it over, or another --out")
    assert json.loads((run_dir / "config.json").read_text()) == CONFIG  # untouched


def test_check_config_shows_added_and_removed_keys(tmp_path):
    check_config(tmp_path, CONFIG, force=False)
    new = changed(data={"name": "cifar10"})
    del new["teachers"]["k"]
    expected = r'teachers.k 5 -> \(unset\), data.name \(unset\) -> "cifar10"'
    with pytest.raises(UserError, match=expected):
        check_config(tmp_path, new, force=False)


def test_check_config_treats_a_key_added_later_at_its_default_as_unchanged(tmp_path):
    """A folder made before a key existed resumes when the key keeps its default, not otherwise."""
    check_config(tmp_path, CONFIG, force=False)
    defaults = changed(students={"pool_size": 0})
    check_config(tmp_path, changed(students={"pool_size": 0}), force=False, defaults=defaults)
    with pytest.raises(UserError, match="students.pool_size 0 -> 5000"):
        check_config(tmp_path, changed(students={"pool_size": 5000}), force=False, defaults=defaults)
    with pytest.raises(UserError, match="students.pool_size"):  # without defaults: a difference, as before
        check_config(tmp_path, changed(students={"pool_size": 0}), force=False)


def test_check_config_ignores_keys_that_do_not_affect_results(tmp_path):
    check_config(tmp_path, CONFIG, force=False)
    (tmp_path / "teacher0.pt").write_bytes(b"finished")
    new = changed(run={"quiet": True})
    check_config(tmp_path, new, force=False, ignore={"run.quiet"})
    assert json.loads((tmp_path / "config.json").read_text())["run"]["quiet"] is True
    assert (tmp_path / "teacher0.pt").exists()
    with pytest.raises(UserError, match="run.quiet true -> false"):
        check_config(tmp_path, CONFIG, force=False)


def test_check_config_force_starts_over_but_keeps_the_lock(tmp_path):
    check_config(tmp_path, CONFIG, force=False)
    (tmp_path / "teachers").mkdir()
    (tmp_path / "teachers" / "teacher0.pt").write_bytes(b"old result")
    (tmp_path / "manifest.json").write_text("{}")
    new = changed(teachers={"epochs": 40})
    notices = []
    with RunLock(tmp_path):
        check_config(tmp_path, new, force=True, notice=notices.append)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "config.json"]
    assert json.loads((tmp_path / "config.json").read_text()) == new
    assert len(notices) == 1 and "--force" in notices[0]


def test_check_config_force_on_a_folder_without_config_deletes_nothing(tmp_path):
    (tmp_path / "precious.txt").write_text("not ours")
    check_config(tmp_path, CONFIG, force=True)
    assert (tmp_path / "precious.txt").read_text() == "not ours"


def test_check_config_normalizes_values_like_json(tmp_path):
    config = {"data": {"path": tmp_path / "x.npy", "shape": (3, 4)}}
    check_config(tmp_path, config, force=False)
    check_config(tmp_path, config, force=False)  # tuple vs list, Path vs str: same


def test_check_config_unreadable_config_json(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2")
    with pytest.raises(UserError, match="unreadable config.json.*--force"):
        check_config(tmp_path, CONFIG, force=False)


# ----------------------------------------------------------------------------
# ensure_writable


def test_ensure_writable_creates_nested_folders(tmp_path):
    run_dir = tmp_path / "runs" / "deep" / "x"
    ensure_writable(run_dir)
    assert run_dir.is_dir() and list(run_dir.iterdir()) == []


def test_ensure_writable_under_a_regular_file(tmp_path):
    (tmp_path / "some_file").write_text("")
    run_dir = tmp_path / "some_file" / "sub"
    with pytest.raises(UserError) as info:
        ensure_writable(run_dir)
    assert str(info.value) == f"output folder {run_dir} is not writable: Not a directory"


def test_ensure_writable_when_the_folder_is_a_file(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(UserError, match="out is not writable: a file with that name exists"):
        ensure_writable(tmp_path / "out")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write to read-only folders")
def test_ensure_writable_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UserError, match="ro is not writable: Permission denied"):
            ensure_writable(folder)
    finally:
        folder.chmod(0o755)
