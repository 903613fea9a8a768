"""The run folder: nothing finished may be lost, nothing half-written may be used.

Four pieces, used in this order by a run:

    ensure_writable(run_dir)                  # fail early, with a clear message
    with RunLock(run_dir):                    # one process per run folder
        check_config(run_dir, resolved, force)  # resume only with the same settings
        manifest = Manifest(run_dir)
        if not manifest.is_valid(path):       # finished and intact? else recompute
            atomic_save_torch(path, teacher)  # temp file, fsync, rename
            manifest.record(path)

Every file is written to a `.tmp-...` file in its folder, flushed to disk and
renamed into place, so a reader sees either the old file or the whole new one.
The manifest (`manifest.json`) records the size and SHA-256 of each finished
file; a file without a matching record is treated as unfinished and recomputed.
Under torchrun, rank r > 0 records into its own `manifest.rank<r>.json` (see Manifest).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from rolemodels.errors import RunError, UserError

TEMP_PREFIX = ".tmp-"
MANIFEST_NAME = "manifest.json"
RANK_MANIFEST_GLOB = "manifest.rank*.json"
CONFIG_NAME = "config.json"
LOCK_NAME = ".lock"
HASH_BLOCK = 1 << 20  # checksums stream the file in 1 MiB blocks
LOCK_WRITE_GRACE_S = 2.0  # an unreadable lock younger than this may still be being written

Notice = Callable[[str], None]


def print_notice(line: str) -> None:
    """Default `notice`: one line to stderr."""
    print(line, file=sys.stderr, flush=True)


def _reason(err: BaseException) -> str:
    """One line saying what went wrong, without the file name (the caller names it)."""
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


# ----------------------------------------------------------------------------
# Atomic writes


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable. Not every system can open a folder; then skip."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_temp(folder: Path, name: str) -> tuple[Path, int]:
    """Create `folder/.tmp-<name>.<random>` exclusively; return its path and descriptor.

    Unlike tempfile.mkstemp, the file gets the usual permissions (0o666 less umask).
    """
    while True:
        temp = folder / f"{TEMP_PREFIX}{name[:100]}.{secrets.token_hex(4)}"
        try:
            return temp, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def _atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call `write(f)` on a temporary file next to `path`, fsync it, rename it into place.

    On any failure the temporary file is removed, `path` keeps its old content and
    the error is raised as RunError naming `path` (KeyboardInterrupt passes through).
    """
    path = Path(path)
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp, fd = _open_temp(path.parent, path.name)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        temp = None
        _fsync_folder(path.parent)
    except BaseException as err:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
        if isinstance(err, Exception):
            raise RunError(f"cannot write {path}: {_reason(err)}") from err
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see module docstring)."""
    _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` as UTF-8 to `path` atomically."""
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as JSON (indent 2, keys in their given order) to `path` atomically."""
    _atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode("utf-8")))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save `array` in .npy format (no pickles) to `path` atomically; `path` is used as given."""
    _atomic_write(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def atomic_save_torch(path: str | os.PathLike, obj: Any) -> None:
    """torch.save `obj` (tensors, state dicts, plain containers) to `path` atomically."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def load_torch(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True onto the CPU; failures raise RunError naming `path`."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:
        raise RunError(f"cannot read {path}: {_reason(err)}") from err


def remove_temp_files(run_dir: str | os.PathLike) -> int:
    """Delete `.tmp-*` files left in `run_dir` by a process that was killed mid-write.

    Call it while holding the RunLock. Returns how many were removed.
    """
    removed = 0
    for temp in Path(run_dir).rglob(f"{TEMP_PREFIX}*"):
        if temp.is_file() or temp.is_symlink():
            try:
                temp.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


# ----------------------------------------------------------------------------
# Manifest: size and checksum of every finished file


def file_sha256(path: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex digest) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    block = bytearray(HASH_BLOCK)
    view = memoryview(block)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(block):
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


def _good_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and type(entry.get("size")) is int and isinstance(entry.get("sha256"), str)


class Manifest:
    """`run_dir/manifest.json`: relative path -> {"size": int, "sha256": str} of finished files.

    Paths given to the methods are ordinary paths (absolute, or relative to the
    current folder, e.g. `run_dir / "teachers/teacher3.pt"`) of files inside run_dir.
    Create the Manifest after check_config, which may empty the run folder.

    Several processes (torchrun's ranks, `rank` > 0) share a run folder without sharing a
    file: each file is recorded, checked and forgotten only by the rank that writes it, and
    rank r > 0 saves what it recorded or forgot into its own `manifest.rank<r>.json`. Rank 0's
    Manifest, made while the other ranks wait, folds those files into manifest.json (what a
    killed run recorded), and `absorb_ranks` does so again once every rank has finished.
    """

    def __init__(self, run_dir: str | os.PathLike, notice: Notice = print_notice, rank: int = 0):
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.path = self.run_dir / (MANIFEST_NAME if rank == 0 else f"manifest.rank{rank}.json")
        self.notice = notice
        self._lock = threading.Lock()  # teachers trained side by side record from their own threads
        self.entries: dict[str, dict[str, Any]] = self._load(self.run_dir / MANIFEST_NAME)
        self.changes: dict[str, dict[str, Any] | None] = {}  # rank > 0: its records (None: forgotten)
        if rank == 0:
            self.absorb_ranks()

    def _load(self, path: Path, tombstones: bool = False) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            self.notice(f"rolemodels: {path} is unreadable ({_reason(err)}); "
                        f"treating the files it records in {self.run_dir} as unfinished")
            return {}
        if not isinstance(data, dict):
            data = {}
        return {key: entry for key, entry in data.items() if _good_entry(entry) or (tombstones and entry is None)}

    def absorb_ranks(self) -> None:
        """Rank 0, while no other rank writes: fold every manifest.rank<r>.json into manifest.json."""
        rank_files = sorted(self.run_dir.glob(RANK_MANIFEST_GLOB))
        if not rank_files:
            return
        with self._lock:
            for path in rank_files:  # one writer per file and run, so their keys do not overlap
                for key, entry in self._load(path, tombstones=True).items():
                    if entry is None:
                        self.entries.pop(key, None)
                    else:
                        self.entries[key] = entry
            self._save()
        for path in rank_files:
            path.unlink(missing_ok=True)

    def _save(self) -> None:
        atomic_write_json(self.path, self.entries if self.rank == 0 else self.changes)

    def key(self, path: str | os.PathLike) -> str:
        """The manifest's name for `path`: its path relative to run_dir, with '/'."""
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(self.run_dir))
        if rel == "." or rel == ".." or rel.startswith(".." + os.sep):
            raise RunError(f"{path} is not a file inside the run folder {self.run_dir}")
        return Path(rel).as_posix()

    def __contains__(self, path: str | os.PathLike) -> bool:
        return self.key(path) in self.entries

    def record(self, path: str | os.PathLike) -> dict[str, Any]:
        """Record the size and checksum of a finished file and save the manifest."""
        key = self.key(path)
        try:
            size, sha256 = file_sha256(path)
        except OSError as err:
            raise RunError(f"cannot read {path}: {_reason(err)}") from err
        entry = {"size": size, "sha256": sha256}
        with self._lock:
            self.entries[key] = entry
            self.changes[key] = entry
            self._save()
        return entry

    def forget(self, path: str | os.PathLike) -> None:
        """Drop the record of `path` (the file itself is left alone)."""
        key = self.key(path)
        with self._lock:
            if self.entries.pop(key, None) is not None:
                self.changes[key] = None
                self._save()

    def is_valid(self, path: str | os.PathLike) -> bool:
        """True if `path` exists and matches its record.

        A file that exists without a record, or with a different size or checksum,
        is unfinished or damaged: one notice line, then the file and its record are
        deleted and the answer is False, so the caller recomputes it.
        """
        key = self.key(path)
        entry = self.entries.get(key)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            if entry is not None:
                self.forget(path)
            return False
        except OSError as err:
            raise RunError(f"cannot read {path}: {_reason(err)}") from err

        if entry is None:
            problem = "has no record in manifest.json"
        elif size != entry["size"]:
            problem = f"size {size:,} != {entry['size']:,}"
        else:
            try:
                size, sha256 = file_sha256(path)
            except OSError as err:
                raise RunError(f"cannot read {path}: {_reason(err)}") from err
            if size == entry["size"] and sha256 == entry["sha256"]:
                return True
            problem = f"checksum {sha256[:12]} != {entry['sha256'][:12]}"

        self.notice(f"rolemodels: {key} is corrupt or incomplete ({problem}); recomputing it")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise RunError(f"cannot delete damaged file {path}: {_reason(err)}") from err
        self.forget(path)
        return False


# ----------------------------------------------------------------------------
# RunLock: one process per run folder


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
            message = f"output folder {self.run_dir} is not writable: {_reason(err)}"
            raise UserError(message) from err
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._handle_existing(host)
                continue
            except OSError as err:
                raise RunError(f"cannot create lock {self.path}: {_reason(err)}") from err
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
                  f"since {started}; wait for it or use another --out")
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
            raise RunError(f"cannot remove stale lock {self.path}: {_reason(err)}") from err
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


# ----------------------------------------------------------------------------
# Configuration check and writable folder


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}. Non-dict values (lists included) are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, key))
        else:
            flat[key] = value
    return flat


def config_differences(old: dict, new: dict, ignore: set[str] = frozenset()) -> list[str]:
    """["teachers.epochs 30 -> 40", ...]: the dotted keys whose values differ.

    A key in `ignore` (or below a section in `ignore`) does not count.
    """
    old_flat, new_flat = _flatten(old), _flatten(new)
    show = lambda flat, key: json.dumps(flat[key]) if key in flat else "(unset)"
    ignored = lambda key: any(key == i or key.startswith(i + ".") for i in ignore)
    keys = list(old_flat) + [key for key in new_flat if key not in old_flat]
    return [f"{key} {show(old_flat, key)} -> {show(new_flat, key)}" for key in keys
            if not ignored(key) and (key not in old_flat or key not in new_flat
                                     or old_flat[key] != new_flat[key])]


def _remove_run_contents(run_dir: Path) -> None:
    """Delete everything in run_dir except the lock. Refuses obviously wrong folders."""
    here, cwd = run_dir.resolve(), Path.cwd().resolve()
    if here == cwd or here in cwd.parents or here == Path.home().resolve():
        raise UserError(f"refusing to empty {run_dir}: it is the current, home or root folder; "
                        f"use a separate --out for each run")
    for entry in run_dir.iterdir():
        if entry.name == LOCK_NAME:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            message = f"cannot remove {entry} while starting the run over: {_reason(err)}"
            raise RunError(message) from err


def _fill_missing(old: dict, defaults: dict) -> dict:
    """`old` with the keys it lacks taken from `defaults`, section by section."""
    filled = dict(old)
    for key, value in defaults.items():
        if key not in filled:
            filled[key] = value
        elif isinstance(value, dict) and isinstance(filled[key], dict):
            filled[key] = _fill_missing(filled[key], value)
    return filled


def check_config(run_dir: str | os.PathLike, resolved: dict, force: bool,
                 ignore: set[str] = frozenset(), notice: Notice = print_notice,
                 defaults: dict | None = None) -> None:
    """Make sure the run folder belongs to this configuration; write config.json.

    resolved: nested dict, section -> key -> value (JSON-serializable; tuples and
    paths are compared as JSON would store them). If run_dir/config.json exists and
    differs outside `ignore` (dotted keys or sections), raise UserError listing the
    differences. force=True starts the run over whenever config.json exists: all
    previous files except the lock are deleted. `defaults` (same layout): a key that a run
    folder's config.json lacks counts as its default value there, so a folder made before a
    key was added still resumes when the key is left at its default.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_NAME
    new = json.loads(json.dumps(resolved, default=str))  # as it will read back from disk
    try:
        old_text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old_text = None
    except OSError as err:
        raise UserError(f"cannot read {config_path}: {_reason(err)}") from err

    if old_text is not None and force:
        notice(f"rolemodels: --force: deleting the previous results in {run_dir}")
        _remove_run_contents(run_dir)
    elif old_text is not None:
        try:
            old = json.loads(old_text)
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            raise UserError(f"run folder {run_dir} has an unreadable {CONFIG_NAME} "
                            f"({_reason(err)}); use --force to start it over, "
                            f"or another --out") from err
        if defaults is not None:
            old = _fill_missing(old, json.loads(json.dumps(defaults, default=str)))
        diffs = config_differences(old, new, ignore)
        if diffs:
            listed = ", ".join(diffs[:12])
            if len(diffs) > 12:
                listed += f", and {len(diffs) - 12} more"
            raise UserError(f"run folder {run_dir} was made with a different configuration: "
                            f"{listed}; use --force to start it over, or another --out")
        if old == new:
            return
    atomic_write_json(config_path, new)


def ensure_writable(run_dir: str | os.PathLike) -> None:
    """Create run_dir and check a file can be made there; else UserError naming it."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe, fd = _open_temp(run_dir, "writable")
        os.close(fd)
        os.unlink(probe)
    except FileExistsError as err:  # mkdir: a file has that name
        raise UserError(f"output folder {run_dir} is not writable: "
                        f"a file with that name exists") from err
    except OSError as err:
        raise UserError(f"output folder {run_dir} is not writable: {_reason(err)}") from err
