"""One process per run folder: `run_dir/.lock`, taken over only when its owner is gone."""
from __future__ import annotations

import datetime
import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from rolemodels.errors import RunError, UserError
from rolemodels.runtime.files import TEMP_PREFIX, Notice, print_notice, reason

LOCK_NAME = ".lock"
LOCK_WRITE_GRACE_S = 2.0  # an unreadable lock younger than this may still be being written


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows; assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _lock_age_s(info: dict[str, Any], lock_path: Path) -> float:
    """Seconds since the lock was taken: from its "started" field, else the file's mtime."""
    try:
        started = datetime.datetime.fromisoformat(info["started"])
        if started.tzinfo is not None:
            return time.time() - started.timestamp()
    except (KeyError, TypeError, ValueError):
        pass
    return time.time() - lock_path.stat().st_mtime


class RunLock:
    """Context manager holding `run_dir/.lock` (JSON: pid, host, started, token).

    A lock held by a live process on this host, or by any process on another host,
    is refused with UserError. A lock of a dead process on this host, or an
    unreadable one, is taken over with a notice; so is another host's lock older
    than `stale_after` seconds (None: never).
    """

    def __init__(self, run_dir: str | os.PathLike, stale_after: float | None = None,
                 notice: Notice = print_notice):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.stale_after = stale_after
        self.notice = notice
        self._text: str | None = None  # what we wrote, while we hold the lock

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def acquire(self) -> None:
        host = socket.gethostname()
        text = json.dumps({
            "pid": os.getpid(),
            "host": host,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "token": secrets.token_hex(8),
        }) + "\n"
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            message = f"output folder {self.run_dir} is not writable: {reason(err)}"
            raise UserError(message) from err
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._handle_existing(host)
                continue
            except OSError as err:
                raise RunError(f"cannot create lock {self.path}: {reason(err)}") from err
            try:
                os.write(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            self._text = text
            return
        raise RunError(f"cannot take the lock {self.path}: other processes keep taking it")

    def _handle_existing(self, host: str) -> None:
        """Refuse (UserError), wait, or clear the existing lock so acquire can try again."""
        try:
            stale_text = self.path.read_text(encoding="utf-8")
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:  # released meanwhile
            return
        try:
            info = json.loads(stale_text)
            pid, lock_host, started = int(info["pid"]), str(info["host"]), info["started"]
            if pid <= 0:
                raise ValueError(f"bad pid {pid}")
        except (ValueError, TypeError, KeyError):
            if age < LOCK_WRITE_GRACE_S:  # perhaps its owner is writing it right now
                time.sleep(0.05)
                return
            self.notice(f"rolemodels: taking over unreadable lock {self.path}")
            self._remove_stale(stale_text)
            return

        in_use = (f"run folder {self.run_dir} is in use by process {pid} on {lock_host} "
                  f"since {started}; wait for it or use another --out (if no run uses it any more, e.g. that "
                  f"process ended and its id was reused, or it ran on a machine that stopped, delete {self.path})")
        if lock_host == host:
            if _pid_alive(pid):
                raise UserError(in_use)
            self.notice(f"rolemodels: taking over stale lock of dead process {pid}")
        else:
            if self.stale_after is None or _lock_age_s(info, self.path) < self.stale_after:
                raise UserError(in_use)
            self.notice(f"rolemodels: taking over stale lock of process {pid} on {lock_host}, "
                        f"held since {started}")
        self._remove_stale(stale_text)

    def _remove_stale(self, stale_text: str) -> None:
        """Remove the lock, but only if it still holds `stale_text`.

        Two processes may both find the same stale lock; the first replaces it with
        its own. Moving the lock aside first and checking what was moved keeps the
        second one from deleting the first one's fresh lock.
        """
        aside = self.path.with_name(f"{TEMP_PREFIX}lock-aside.{secrets.token_hex(4)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        except OSError as err:
            raise RunError(f"cannot remove stale lock {self.path}: {reason(err)}") from err
        try:
            if aside.read_text(encoding="utf-8") != stale_text:  # someone's fresh lock: put it back
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    pass
        finally:
            aside.unlink()

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if self._text is None:
            return
        try:
            if self.path.read_text(encoding="utf-8") == self._text:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            self._text = None
