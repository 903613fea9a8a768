"""One process per run folder: the lock, and when it is taken over."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import pytest

from rolemodels.errors import UserError
from rolemodels.runtime import lock
from rolemodels.runtime.lock import RunLock


def temp_files(folder):
    return sorted(p.name for p in folder.rglob(".tmp-*"))


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))



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
    assert "; wait for it or use another --out" in message and message.endswith(f"delete {tmp_path / '.lock'})")


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
    monkeypatch.setattr(lock, "LOCK_WRITE_GRACE_S", 0.2)
    (tmp_path / ".lock").write_text("")  # as if its owner died between create and write
    notices = []
    with RunLock(tmp_path, notice=notices.append):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert notices == [f"rolemodels: taking over unreadable lock {tmp_path / '.lock'}"]


def test_lock_of_another_host_is_refused_unless_old_enough(tmp_path):
    write_lock(tmp_path, 12345, host="other-machine", started="2020-01-01T00:00:00+00:00")
    with pytest.raises(UserError, match="in use by process 12345 on other-machine since 2020") as err:
        RunLock(tmp_path).acquire()
    assert str(err.value).endswith(f"delete {tmp_path / '.lock'})")  # says how to clear a lock nobody holds
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


